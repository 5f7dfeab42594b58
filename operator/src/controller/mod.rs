//! The controller: watches ChatClusters and the objects they own, and runs
//! `reconcile` whenever one changes (and every few minutes), so deleted or
//! edited objects come back. Observe, decide (pure builders and status),
//! act (server-side apply, status subresource, Events).

mod apply;
mod reconcile;
mod secrets;
mod status;

pub use apply::{APPLIED_KINDS, FIELD_MANAGER};
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
    runtime::{Controller, controller::Action, watcher},
};

use crate::api::ChatCluster;

/// Retry a failed reconcile after this long.
const RETRY: Duration = Duration::from_secs(10);

/// Runs until `shutdown` completes.
pub async fn run(
    client: Client,
    context: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let owned =
        watcher::Config::default().labels("app.kubernetes.io/managed-by=chatscale-operator");
    Controller::new(
        Api::<ChatCluster>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<Deployment>::all(client.clone()), owned.clone())
    .owns(Api::<StatefulSet>::all(client.clone()), owned.clone())
    .owns(Api::<Service>::all(client.clone()), owned.clone())
    .owns(Api::<Secret>::all(client.clone()), owned.clone())
    .owns(Api::<Ingress>::all(client.clone()), owned.clone())
    .owns(
        Api::<PodDisruptionBudget>::all(client.clone()),
        owned.clone(),
    )
    .owns(Api::<NetworkPolicy>::all(client.clone()), owned)
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

fn error_policy(_: Arc<ChatCluster>, error: &reconcile::Error, context: Arc<Context>) -> Action {
    context.metrics.failures.inc();
    tracing::warn!(%error, "will retry");
    Action::requeue(RETRY)
}
