//! One reconcile of one ChatCluster: read the generated secrets, build every
//! desired object, apply them, and write the status. An invalid spec that got
//! past the schema makes the cluster Degraded (with an Event), not a crash loop.

use std::{sync::Arc, time::Duration};

use k8s_openapi::{api::apps::v1::Deployment, jiff::Timestamp};
use kube::{
    Api, Client, ResourceExt,
    runtime::{
        controller::Action,
        events::{Recorder, Reporter},
    },
};
use prometheus::{IntCounter, IntCounterVec, Opts};

use super::{
    Error,
    apply::{self, FIELD_MANAGER},
    events::{self, Reason},
    secrets,
    status::{self, Observed},
};
use crate::{
    api::ChatCluster,
    resources::{self, names},
};

/// Look again this often even when nothing changes.
const RESYNC: Duration = Duration::from_secs(300);

pub struct Metrics {
    pub reconciles: IntCounter,
    /// Failed reconciles, by what failed (`error`: [`Error::metric_label`]).
    pub failures: IntCounterVec,
}

impl Metrics {
    /// The counters, unregistered. The failure counter has a zero series per
    /// label, so its rates exist before the first failure.
    pub fn new() -> Self {
        let failures = IntCounterVec::new(
            Opts::new(
                "chatscale_operator_reconcile_failures_total",
                "Reconciles that failed, by what failed",
            ),
            &["error"],
        )
        .unwrap();
        for label in Error::METRIC_LABELS {
            failures.with_label_values(&[label]);
        }
        Self {
            reconciles: IntCounter::new("chatscale_operator_reconciles_total", "Reconciles run")
                .unwrap(),
            failures,
        }
    }

    /// Counts a failed reconcile under its label.
    pub fn failed(&self, error: &Error) {
        self.failures
            .with_label_values(&[error.metric_label()])
            .inc();
    }

    pub fn register(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.reconciles.clone()))?;
        registry.register(Box::new(self.failures.clone()))
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

pub struct Context {
    client: Client,
    recorder: Recorder,
    pub metrics: Metrics,
    /// Consecutive failed reconciles per ChatCluster (namespace/name), for backoff.
    failures: std::sync::Mutex<std::collections::HashMap<String, u32>>,
}

impl Context {
    pub fn new(client: Client) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            failures: Default::default(),
            client,
            metrics: Metrics::new(),
        }
    }

    /// Counts a failed reconcile of `cc`; returns how many in a row.
    pub fn failed(&self, cc: &ChatCluster) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let count = failures.entry(key(cc)).or_default();
        *count += 1;
        *count
    }

    fn succeeded(&self, cc: &ChatCluster) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key(cc));
    }

    async fn event(&self, cc: &ChatCluster, reason: Reason, note: String) {
        events::publish(&self.recorder, cc, reason, note).await;
    }
}

pub async fn reconcile(cc: Arc<ChatCluster>, context: Arc<Context>) -> Result<Action, Error> {
    context.metrics.reconciles.inc();
    let client = &context.client;
    // The schema's rules first (no I/O); then the builders, which refuse what
    // the schema cannot express (e.g. openai without a key) whatever the
    // generated values are.
    let objects = match cc.validate_cel() {
        Err(invalid) => Err(invalid.to_string()),
        Ok(()) => {
            let generated = secrets::generated(client, &cc)
                .await
                .map_err(Error::ReadSecrets)?;
            resources::desired(&cc, &generated).map_err(|e| e.to_string())
        }
    };
    let objects = match objects {
        Ok(objects) => objects,
        Err(invalid) => {
            context
                .event(&cc, Reason::InvalidSpec, invalid.clone())
                .await;
            write_status(client, &cc, Observed::Invalid(&invalid)).await?;
            return Ok(Action::await_change());
        }
    };
    let first = deployment(client, &cc).await?.is_none();
    for object in &objects {
        if let Err(source) = apply::apply(client, object).await {
            let error = Error::Apply {
                object: format!(
                    "{}/{}",
                    object.types.as_ref().map_or("?", |t| t.kind.as_str()),
                    object.name_any()
                ),
                source,
            };
            context
                .event(&cc, Reason::ApplyFailed, error.to_string())
                .await;
            return Err(error);
        }
    }
    if first {
        let note = format!("created {} objects", objects.len());
        context.event(&cc, Reason::Created, note).await;
    }
    let current = deployment(client, &cc).await?;
    write_status(client, &cc, Observed::Applied(current.as_ref())).await?;
    context.succeeded(&cc);
    Ok(Action::requeue(RESYNC))
}

fn key(cc: &ChatCluster) -> String {
    format!("{}/{}", cc.namespace().unwrap_or_default(), cc.name_any())
}

async fn deployment(client: &Client, cc: &ChatCluster) -> Result<Option<Deployment>, Error> {
    let namespace = names::namespace(cc);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    deployments
        .get_opt(&names::chat(cc))
        .await
        .map_err(Error::ReadDeployment)
}

async fn write_status(
    client: &Client,
    cc: &ChatCluster,
    observed: Observed<'_>,
) -> Result<(), Error> {
    let status = status::status(cc, observed, Timestamp::now());
    apply::apply_status(client, cc, FIELD_MANAGER, status)
        .await
        .map_err(Error::WriteStatus)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Encoder, TextEncoder};

    fn exposition(registry: &prometheus::Registry) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn failures_are_counted_by_what_failed() {
        let registry = prometheus::Registry::new();
        let metrics = Metrics::new();
        metrics.register(&registry).unwrap();
        let before = exposition(&registry);
        assert!(
            before.contains("chatscale_operator_reconcile_failures_total{error=\"apply\"} 0"),
            "{before}"
        );
        metrics.failed(&Error::Apply {
            object: "Deployment/team-chat".into(),
            source: anyhow::anyhow!("forbidden"),
        });
        let after = exposition(&registry);
        assert!(
            after.contains("chatscale_operator_reconcile_failures_total{error=\"apply\"} 1"),
            "{after}"
        );
        assert!(
            after.contains("chatscale_operator_reconcile_failures_total{error=\"write_status\"} 0"),
            "{after}"
        );
    }
}
