//! The `ChatCluster` custom resource (`chatscale.dev/v1alpha1`): what users
//! write, with defaults that make a manifest of a name and a host a working
//! cluster, and schema validation (including CEL rules) that the API server
//! enforces and tests can run locally with `validate_cel`.

mod spec;
mod status;

pub use spec::*;
pub use status::*;
