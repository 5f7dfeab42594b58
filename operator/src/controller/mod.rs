//! The controller: watches ChatClusters and the objects they own, and runs
//! `reconcile` whenever one changes (and every few minutes), so deleted or
//! edited objects come back. Observe, decide (pure builders and status),
//! act (server-side apply, status subresource, Events).

mod apply;
mod error;
pub(crate) mod events;
mod reconcile;
pub(crate) mod secrets;
mod status;

pub use apply::{APPLIED_KINDS, FIELD_MANAGER, apply_status};
pub use error::Error;
pub use events::Reason;
pub use reconcile::{Context, reconcile};

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    core::v1::{Secret, Service},
    networking::v1::{Ingress, NetworkPolicy},
    policy::v1::PodDisruptionBudget,
};
use kube::{
    Api, Client,
    api::ListParams,
    runtime::{Controller, controller::Action, watcher},
};

use crate::{api::ChatCluster, resources::httproute::HTTPRoute};

/// A failed reconcile is retried after 5 s, doubling per consecutive failure up to 5 minutes.
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(5u64.saturating_mul(1 << failures.min(7).saturating_sub(1)))
        .min(Duration::from_secs(300))
}

/// The API of `K` in `namespace`, or across all namespaces when `None`
/// (`chatscale-operator run --watch-namespace`).
pub fn scoped<K>(client: Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(namespace) => Api::namespaced(client, namespace),
        None => Api::all(client),
    }
}

/// Runs until `shutdown` completes, watching only `namespace` when given.
pub async fn run_in(
    client: Client,
    context: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let ns = namespace.as_deref();
    let owned =
        watcher::Config::default().labels("app.kubernetes.io/managed-by=chatscale-operator");
    let mut controller = Controller::new(
        scoped::<ChatCluster>(client.clone(), ns),
        watcher::Config::default(),
    )
    .owns(scoped::<Deployment>(client.clone(), ns), owned.clone())
    .owns(scoped::<StatefulSet>(client.clone(), ns), owned.clone())
    .owns(scoped::<Service>(client.clone(), ns), owned.clone())
    .owns(scoped::<Secret>(client.clone(), ns), owned.clone())
    .owns(scoped::<Ingress>(client.clone(), ns), owned.clone())
    .owns(
        scoped::<PodDisruptionBudget>(client.clone(), ns),
        owned.clone(),
    )
    .owns(scoped::<NetworkPolicy>(client.clone(), ns), owned.clone());
    // HTTPRoutes only where the Gateway API is installed: watching a kind the
    // API server does not serve would fail over and over.
    let routes = scoped::<HTTPRoute>(client.clone(), ns);
    match routes.list(&ListParams::default().limit(1)).await {
        Ok(_) => controller = controller.owns(routes, owned),
        Err(error) => tracing::info!(
            %error,
            "the Gateway API is not served here: HTTPRoutes are applied but not watched"
        ),
    }
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(name = object.name, "reconciled"),
                Err(error) => tracing::warn!(%error, "reconcile failed"),
            }
        })
        .await;
}

fn error_policy(cc: Arc<ChatCluster>, error: &Error, context: Arc<Context>) -> Action {
    context.metrics.failed(error);
    let failures = context.failed(&cc);
    let delay = backoff(failures);
    tracing::warn!(
        %error,
        kind = error.metric_label(),
        failures,
        ?delay,
        "reconcile failed; will retry"
    );
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_five_minutes() {
        let delays: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert!(backoff(100) <= Duration::from_secs(300));
    }
}
