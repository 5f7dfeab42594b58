//! The autoscaler loop against Kubernetes, per ChatCluster every
//! `intervalSeconds`: observe (the cluster's pods, their `/metrics`, Redis
//! ops/s), decide (the pure policy), act (scale up at once; scale down only
//! through the drain orchestration), and report (status under its own field
//! manager, Events). Only the leader runs it.

use std::{collections::HashMap, time::Duration};

use async_trait::async_trait;
use k8s_openapi::{
    api::core::v1::{Pod, Secret},
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    runtime::events::{Event, EventType, Recorder, Reporter},
};
use serde_json::json;

use super::{
    collect::{self, Scrape, Target},
    decide::{Decision, History, decide},
    drain::{self, DELETION_COST, HttpDrainApi, Outcome, Workload},
};
use crate::{
    api::ChatCluster,
    controller::{apply_status, secrets},
    resources::names,
};

/// The autoscaler's own field manager for status fields it owns.
pub const FIELD_MANAGER: &str = "chatscale-autoscaler";
const DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";

/// Operator metrics of the autoscaler.
pub struct Metrics {
    /// Decisions taken, by direction (`up`, `down`, `hold`).
    pub decisions: prometheus::IntCounterVec,
    /// Pods whose `/metrics` could not be scraped.
    pub scrape_failures: prometheus::IntCounter,
}

impl Metrics {
    pub fn new(registry: &prometheus::Registry) -> prometheus::Result<Self> {
        let metrics = Self {
            decisions: prometheus::IntCounterVec::new(
                prometheus::Opts::new(
                    "chatscale_autoscaler_decisions_total",
                    "Autoscaler decisions, by direction",
                ),
                &["direction"],
            )?,
            scrape_failures: prometheus::IntCounter::new(
                "chatscale_autoscaler_scrape_failures_total",
                "Pods whose /metrics could not be scraped",
            )?,
        };
        registry.register(Box::new(metrics.decisions.clone()))?;
        registry.register(Box::new(metrics.scrape_failures.clone()))?;
        Ok(metrics)
    }
}

/// Metrics on a registry of their own (for tests and tools).
impl Default for Metrics {
    fn default() -> Self {
        Self::new(&prometheus::Registry::new()).expect("fresh metrics register")
    }
}

/// Runs forever: one pass over every ChatCluster per second, each cluster at its own interval.
pub async fn run(client: Client, metrics: Metrics) {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        },
    );
    let mut state: HashMap<String, (History, u64)> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let clusters = match Api::<ChatCluster>::all(client.clone())
            .list(&ListParams::default())
            .await
        {
            Ok(list) => list.items,
            Err(error) => {
                tracing::warn!(%error, "autoscaler could not list ChatClusters");
                continue;
            }
        };
        let now = Timestamp::now().as_second().max(0) as u64;
        for cc in clusters.iter().filter(|cc| cc.spec.autoscaling.enabled) {
            let key = format!("{}/{}", cc.namespace().unwrap_or_default(), cc.name_any());
            let (history, last) = state.entry(key).or_default();
            if *last != 0 && now < *last + cc.spec.autoscaling.interval_seconds.max(1) as u64 {
                continue;
            }
            *last = now;
            if let Err(error) = step(&client, &recorder, &metrics, cc, history, now).await {
                tracing::warn!(%error, cluster = cc.name_any(), "autoscaler step failed");
            }
        }
    }
}

/// One decision for one cluster.
pub async fn step(
    client: &Client,
    recorder: &Recorder,
    metrics: &Metrics,
    cc: &ChatCluster,
    history: &mut History,
    now: u64,
) -> anyhow::Result<Decision> {
    let namespace = names::namespace(cc);
    let targets = targets(client, cc, &namespace).await?;
    let scrapes = collect::scrape_all(targets, 16, Duration::from_secs(2)).await;
    let redis_ops = match redis_url(client, cc, &namespace).await {
        Some(url) => collect::redis_ops(&url).await,
        None => None,
    };
    let signals = collect::signals(&scrapes, redis_ops);
    metrics
        .scrape_failures
        .inc_by(scrapes.iter().filter(|s| s.metrics.is_err()).count() as u64);
    let current = cc.spec.replicas;
    let decision = decide(&cc.spec.autoscaling, now, current, signals, history);
    history.record(now, current, &decision);
    let direction = match decision.desired.cmp(&current) {
        std::cmp::Ordering::Greater => "up",
        std::cmp::Ordering::Less => "down",
        std::cmp::Ordering::Equal => "hold",
    };
    metrics.decisions.with_label_values(&[direction]).inc();

    let ready = scrapes.iter().filter(|s| s.target.ready).count().max(1) as i64;
    let mut status = json!({
        "connections": signals.connections,
        "connectionsPerPod": signals.connections.map(|c| c as i64 / ready),
        "redisOpsPerSec": redis_ops.map(|o| o as i64),
    });
    let workload = KubeWorkload {
        client: client.clone(),
        namespace: namespace.clone(),
        cluster: cc.name_any(),
    };
    if decision.desired > current {
        workload.set_replicas(decision.desired).await?;
        note(
            recorder,
            cc,
            "ScaledUp",
            format!("{current} -> {}: {}", decision.desired, decision.reason),
        )
        .await;
        status["lastScaleTime"] = json!(Time(Timestamp::now()));
        status["lastScaleReason"] = json!(decision.reason);
    } else if decision.desired < current {
        // Only pods that exist need draining: replicas not yet started just go.
        let excess = scrapes
            .len()
            .saturating_sub(decision.desired.max(0) as usize);
        let victims = victims(&scrapes, excess);
        write_status(
            client,
            cc,
            json!({"drainingPods": victims.iter().map(|v| &v.0).collect::<Vec<_>>()}),
        )
        .await?;
        note(
            recorder,
            cc,
            "DrainStarted",
            format!(
                "draining {:?} before scaling to {}",
                victims.iter().map(|v| &v.0).collect::<Vec<_>>(),
                decision.desired
            ),
        )
        .await;
        let token = admin_token(client, cc, &namespace)
            .await
            .unwrap_or_default();
        let timeout = Duration::from_secs(cc.spec.drain.timeout_seconds.max(1) as u64);
        let outcome = drain::scale_down(
            &workload,
            &HttpDrainApi::new(token),
            &victims,
            decision.desired,
            timeout,
            Duration::from_secs(1),
            &|| false,
        )
        .await?;
        let reason = match outcome {
            Outcome::Completed => "DrainCompleted",
            Outcome::TimedOut => "DrainTimedOut",
            Outcome::Cancelled => "DrainCancelled",
        };
        note(
            recorder,
            cc,
            reason,
            format!("{current} -> {}: {}", decision.desired, decision.reason),
        )
        .await;
        note(
            recorder,
            cc,
            "ScaledDown",
            format!("{current} -> {}", decision.desired),
        )
        .await;
        status["drainingPods"] = json!([]);
        status["lastScaleTime"] = json!(Time(Timestamp::now()));
        status["lastScaleReason"] = json!(decision.reason);
    }
    write_status(client, cc, status).await?;
    Ok(decision)
}

/// Running pods of the cluster's chat-servers, with their admin `/metrics` URL.
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
                url: format!("http://{ip}:{port}/metrics"),
                ready,
            })
        })
        .collect())
}

/// (pod, admin base URL) of the emptiest pods.
fn victims(scrapes: &[Scrape], count: usize) -> Vec<(String, String)> {
    drain::pick(scrapes, count)
        .into_iter()
        .map(|s| {
            (
                s.target.pod.clone(),
                s.target.url.trim_end_matches("/metrics").to_owned(),
            )
        })
        .collect()
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

async fn write_status(
    client: &Client,
    cc: &ChatCluster,
    status: serde_json::Value,
) -> anyhow::Result<()> {
    Ok(apply_status(client, cc, FIELD_MANAGER, status).await?)
}

async fn note(recorder: &Recorder, cc: &ChatCluster, reason: &str, note: String) {
    let event = Event {
        type_: EventType::Normal,
        reason: reason.into(),
        note: Some(note),
        action: "Scale".into(),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&event, &cc.object_ref(&())).await {
        tracing::debug!(%error, "an Event could not be recorded");
    }
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
