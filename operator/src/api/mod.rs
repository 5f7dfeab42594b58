//! The `ChatCluster` custom resource (`chatscale.dev/v1alpha1`): what users
//! write, with defaults that make a manifest of a name and a host a working
//! cluster, and schema validation (including CEL rules) that the API server
//! enforces and tests can run locally with `validate_cel`.

mod spec;
mod status;

pub use spec::*;
pub use status::*;

/// Test manifests for the builders' unit tests.
#[cfg(test)]
pub(crate) mod testing {
    /// The ChatCluster a YAML manifest describes; panics if it does not parse.
    pub fn cluster(yaml: &str) -> super::ChatCluster {
        serde_saphyr::from_str(yaml).expect("test manifest parses")
    }
}
