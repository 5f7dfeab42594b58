//! The autoscaler loop against Kubernetes, per ChatCluster every
//! `intervalSeconds`: observe (the cluster's pods, their `/metrics`, Redis
//! ops/s), decide (the pure policy), act (scale up at once; scale down only
//! through the drain orchestration), and report (status under its own field
//! manager, Events). Only the leader runs it. The per-cluster logic is in
//! [`super::control`]; this file is its Kubernetes side.

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use k8s_openapi::{
    api::core::v1::{Pod, Secret},
    jiff::Timestamp,
};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    runtime::events::{Recorder, Reporter},
};
use serde_json::json;

pub use super::control::{Autoscaler, Metrics};
use super::{
    admin_client::AdminClient,
    collect::{self, Target},
    control::Cluster,
    control::Timing,
    decide::Decision,
    drain::{DELETION_COST, Workload},
    status::AutoscalerStatus,
};
use crate::{
    api::ChatCluster,
    controller::{
        apply_status,
        events::{self, Reason},
        secrets,
    },
    resources::names,
};

/// The autoscaler's own field manager for status fields it owns.
pub const FIELD_MANAGER: &str = "chatscale-autoscaler";
const DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";

/// Runs forever: one pass over the ChatClusters of `namespace` (all when
/// `None`) per second, each cluster at its own interval. Drains run in the
/// background (see [`Autoscaler`]), so one cluster's drain does not hold up
/// the others.
pub async fn run_in(client: Client, metrics: Metrics, namespace: Option<String>) {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        },
    );
    let mut state: HashMap<String, (Autoscaler, u64)> = HashMap::new();
    let chatclusters =
        crate::controller::scoped::<ChatCluster>(client.clone(), namespace.as_deref());
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let clusters = match chatclusters.list(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(error) => {
                tracing::warn!(%error, "autoscaler could not list ChatClusters");
                continue;
            }
        };
        let now = Timestamp::now().as_second().max(0) as u64;
        let key =
            |cc: &ChatCluster| format!("{}/{}", cc.namespace().unwrap_or_default(), cc.name_any());
        let enabled: Vec<&ChatCluster> = clusters
            .iter()
            .filter(|cc| cc.spec.autoscaling.enabled)
            .collect();
        // Forget clusters that were deleted or stopped autoscaling.
        state.retain(|k, _| enabled.iter().any(|cc| key(cc) == *k));
        for cc in enabled {
            let (autoscaler, last) = state.entry(key(cc)).or_default();
            if *last != 0 && now < *last + cc.spec.autoscaling.interval_seconds.max(1) as u64 {
                continue;
            }
            *last = now;
            if let Err(error) = step(&client, &recorder, &metrics, cc, autoscaler, now).await {
                tracing::warn!(%error, cluster = cc.name_any(), "autoscaler step failed");
            }
        }
    }
}

/// One evaluation of one ChatCluster.
pub async fn step(
    client: &Client,
    recorder: &Recorder,
    metrics: &Metrics,
    cc: &ChatCluster,
    autoscaler: &mut Autoscaler,
    now: u64,
) -> anyhow::Result<Decision> {
    let cluster: Arc<dyn Cluster> = Arc::new(KubeCluster::new(
        client.clone(),
        recorder.clone(),
        cc.clone(),
    ));
    let timing = Timing {
        drain_timeout: Duration::from_secs(cc.spec.drain.timeout_seconds.max(1) as u64),
        drain_stagger: Duration::from_secs(cc.spec.drain.stagger_seconds.max(0) as u64),
    };
    autoscaler
        .tick(&cluster, &cc.spec.autoscaling, timing, metrics, now)
        .await
}

/// A ChatCluster and its pods, through the Kubernetes API.
pub struct KubeCluster {
    client: Client,
    recorder: Recorder,
    cc: ChatCluster,
    namespace: String,
}

impl KubeCluster {
    pub fn new(client: Client, recorder: Recorder, cc: ChatCluster) -> Self {
        let namespace = names::namespace(&cc);
        Self {
            client,
            recorder,
            cc,
            namespace,
        }
    }
}

#[async_trait]
impl Cluster for KubeCluster {
    async fn targets(&self) -> anyhow::Result<Vec<Target>> {
        targets(&self.client, &self.cc, &self.namespace).await
    }

    async fn redis_ops(&self) -> Option<f64> {
        let url = redis_url(&self.client, &self.cc, &self.namespace).await?;
        collect::redis_ops(&url).await
    }

    async fn replicas(&self) -> anyhow::Result<i32> {
        Ok(self.cc.spec.replicas)
    }

    fn workload(&self) -> Arc<dyn Workload> {
        Arc::new(KubeWorkload {
            client: self.client.clone(),
            namespace: self.namespace.clone(),
            cluster: self.cc.name_any(),
        })
    }

    async fn admin(&self) -> Arc<AdminClient> {
        let token = admin_token(&self.client, &self.cc, &self.namespace)
            .await
            .unwrap_or_default();
        Arc::new(AdminClient::new(token))
    }

    async fn event(&self, reason: Reason, note: String) {
        events::publish(&self.recorder, &self.cc, reason, note).await;
    }

    async fn status(&self, status: AutoscalerStatus) -> anyhow::Result<()> {
        Ok(apply_status(&self.client, &self.cc, FIELD_MANAGER, status).await?)
    }
}

/// Running pods of the cluster's chat-servers, with their admin API's base URL.
async fn targets(
    client: &Client,
    cc: &ChatCluster,
    namespace: &str,
) -> anyhow::Result<Vec<Target>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = names::selector_string(cc, names::CHAT);
    let list = pods.list(&ListParams::default().labels(&selector)).await?;
    Ok(list
        .items
        .iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter_map(|pod| {
            let status = pod.status.as_ref()?;
            if status.phase.as_deref() != Some("Running") {
                return None;
            }
            let ip = status.pod_ip.as_deref()?;
            let port = pod
                .spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| p.name.as_deref() == Some("admin"))
                .map_or(names::ADMIN_PORT, |p| p.container_port);
            let ready = status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            Some(Target {
                pod: pod.name_any(),
                admin: format!("http://{ip}:{port}"),
                ready,
            })
        })
        .collect())
}

async fn secret_value(client: &Client, namespace: &str, name: &str, key: &str) -> Option<String> {
    let secrets = Api::<Secret>::namespaced(client.clone(), namespace);
    secrets::read(&secrets, name, key).await.ok().flatten()
}

async fn redis_url(client: &Client, cc: &ChatCluster, namespace: &str) -> Option<String> {
    match (&cc.spec.redis.managed, &cc.spec.redis.external) {
        (Some(_), _) => secret_value(client, namespace, &names::redis_auth(cc), "url").await,
        (None, Some(external)) => {
            secret_value(
                client,
                namespace,
                &external.url_secret_ref.name,
                &external.url_secret_ref.key,
            )
            .await
        }
        (None, None) => None,
    }
}

async fn admin_token(client: &Client, cc: &ChatCluster, namespace: &str) -> Option<String> {
    secret_value(client, namespace, &names::admin_secret(cc), "token").await
}

/// Pods and replicas through the Kubernetes API.
struct KubeWorkload {
    client: Client,
    namespace: String,
    cluster: String,
}

#[async_trait]
impl Workload for KubeWorkload {
    async fn mark_for_deletion(&self, pod: &str) -> anyhow::Result<()> {
        let patch = json!({"metadata": {"annotations": {DELETION_COST_ANNOTATION: DELETION_COST.to_string()}}});
        Api::<Pod>::namespaced(self.client.clone(), &self.namespace)
            .patch(pod, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        Ok(())
    }

    async fn unmark(&self, pod: &str) -> anyhow::Result<()> {
        let patch = json!({"metadata": {"annotations": {DELETION_COST_ANNOTATION: null}}});
        Api::<Pod>::namespaced(self.client.clone(), &self.namespace)
            .patch(pod, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        Ok(())
    }

    /// `spec.replicas` of the ChatCluster: the reconcile carries it to the Deployment.
    async fn set_replicas(&self, replicas: i32) -> anyhow::Result<()> {
        let patch = json!({"spec": {"replicas": replicas}});
        Api::<ChatCluster>::namespaced(self.client.clone(), &self.namespace)
            .patch(&self.cluster, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        Ok(())
    }

    async fn replace(&self, pod: &str) -> anyhow::Result<()> {
        Api::<Pod>::namespaced(self.client.clone(), &self.namespace)
            .delete(pod, &Default::default())
            .await?;
        Ok(())
    }
}
