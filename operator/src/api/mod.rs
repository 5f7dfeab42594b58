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
    /// A name and a host: the smallest manifest that works.
    pub const MINIMAL: &str = "apiVersion: chatscale.dev/v1alpha1\nkind: ChatCluster\nmetadata: {name: team, namespace: apps, uid: \"1234\"}\nspec: {routing: {host: chat.example.com}}\n";

    /// The ChatCluster a YAML manifest describes; panics if it does not parse.
    pub fn cluster(yaml: &str) -> super::ChatCluster {
        serde_saphyr::from_str(yaml).expect("test manifest parses")
    }

    /// [`MINIMAL`] with `extra` (YAML flow mapping entries) added at the start of `spec`.
    pub fn with_spec(extra: &str) -> super::ChatCluster {
        cluster(&MINIMAL.replace("spec: {", &format!("spec: {{{extra}, ")))
    }
}
