//! Why a reconcile failed, one variant per step that can fail, so the failure
//! counter is labelled by what failed (`metric_label`) and the log says it.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The generated Secrets (Redis password, admin token) could not be read.
    #[error("reading the generated secrets failed: {0}")]
    ReadSecrets(#[source] kube::Error),
    /// The API server refused an object (`kind/name`).
    #[error("applying {object} failed: {source:#}")]
    Apply {
        object: String,
        source: anyhow::Error,
    },
    /// The chat Deployment could not be read back.
    #[error("reading the chat Deployment failed: {0}")]
    ReadDeployment(#[source] kube::Error),
    /// The status subresource could not be written.
    #[error("writing the status failed: {0}")]
    WriteStatus(#[source] kube::Error),
}

impl Error {
    /// Every value of [`Error::metric_label`], for series that exist from the start.
    pub const METRIC_LABELS: [&str; 4] =
        ["read_secrets", "apply", "read_deployment", "write_status"];

    /// The `error` label of `chatscale_operator_reconcile_failures_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::ReadSecrets(_) => "read_secrets",
            Self::Apply { .. } => "apply",
            Self::ReadDeployment(_) => "read_deployment",
            Self::WriteStatus(_) => "write_status",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> kube::Error {
        kube::Error::LinesCodecMaxLineLengthExceeded
    }

    #[test]
    fn every_variant_has_its_own_listed_label() {
        let errors = [
            Error::ReadSecrets(refused()),
            Error::Apply {
                object: "Deployment/team-chat".into(),
                source: anyhow::anyhow!("forbidden"),
            },
            Error::ReadDeployment(refused()),
            Error::WriteStatus(refused()),
        ];
        let labels: Vec<&str> = errors.iter().map(Error::metric_label).collect();
        assert_eq!(labels, Error::METRIC_LABELS);
    }

    #[test]
    fn an_apply_failure_names_the_object_and_the_cause() {
        let error = Error::Apply {
            object: "Deployment/team-chat".into(),
            source: anyhow::anyhow!("forbidden").context("patch"),
        };
        assert_eq!(
            error.to_string(),
            "applying Deployment/team-chat failed: patch: forbidden"
        );
    }
}
