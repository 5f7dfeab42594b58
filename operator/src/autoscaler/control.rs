//! One cluster's autoscaler, whatever runs its pods: observe (scrape the
//! pods, read Redis), decide (the pure policy), act (scale up at once; scale
//! down through a drain). Kubernetes implements [`Cluster`] in `run`; the
//! local end-to-end test implements it with chat-server processes.
//!
//! A scale-down drains in the background, so the autoscaler keeps observing
//! while clients move. If a decision taken during the drain asks for more
//! pods than run now, the drain is cancelled (its pods serve again, or are
//! replaced if they had finished draining) before replicas go up.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use serde_json::json;
use tokio::task::JoinHandle;

use super::{
    collect::{self, Scrape, Target},
    decide::{Decision, History, decide},
    drain::{self, DrainApi, Outcome, Workload},
};
use crate::{api::AutoscalingSpec, controller::Reason};

/// Pods scraped at once, and the time one scrape may take.
const SCRAPES_IN_FLIGHT: usize = 16;
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a running drain asks the pods how far they are.
const DRAIN_POLL: Duration = Duration::from_millis(500);

/// What the autoscaler needs from the platform that runs the chat pods.
#[async_trait]
pub trait Cluster: Send + Sync {
    /// Running chat-server pods (not terminating), with their `/metrics` URL.
    async fn targets(&self) -> anyhow::Result<Vec<Target>>;
    /// Redis `instantaneous_ops_per_sec`; `None` when it cannot be read.
    async fn redis_ops(&self) -> Option<f64>;
    /// The replica count the cluster runs now.
    async fn replicas(&self) -> anyhow::Result<i32>;
    /// Marks pods, sets replicas, replaces pods.
    fn workload(&self) -> Arc<dyn Workload>;
    /// The pods' drain API, with the cluster's admin token.
    async fn drains(&self) -> Arc<dyn DrainApi>;
    /// Records an Event.
    async fn event(&self, reason: Reason, note: String);
    /// Writes the autoscaler's status fields (a partial ChatCluster status).
    async fn status(&self, status: serde_json::Value) -> anyhow::Result<()>;
}

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

/// A scale-down in progress; its task reports how it ended.
struct RunningDrain {
    cancel: Arc<AtomicBool>,
    task: JoinHandle<()>,
    pods: Vec<String>,
}

/// The autoscaler state of one cluster: its decision history, the drain it
/// runs, if any, and the status fields it owns.
#[derive(Default)]
pub struct Autoscaler {
    history: History,
    drain: Option<RunningDrain>,
    status: OwnedStatus,
}

/// The status fields the autoscaler owns, always written whole: with
/// server-side apply, a field its manager leaves out of an apply is removed.
#[derive(Clone, Default)]
struct OwnedStatus(Arc<std::sync::Mutex<serde_json::Map<String, serde_json::Value>>>);

impl OwnedStatus {
    /// Merges `update` into the fields and writes them all.
    async fn write(&self, cluster: &dyn Cluster, update: serde_json::Value) -> anyhow::Result<()> {
        let whole = {
            let mut fields = self.0.lock().expect("status lock");
            if let serde_json::Value::Object(update) = update {
                fields.extend(update);
            }
            serde_json::Value::Object(fields.clone())
        };
        cluster.status(whole).await
    }
}

impl Autoscaler {
    /// Pods being drained now (empty when no scale-down runs).
    pub fn draining(&self) -> &[String] {
        self.drain.as_ref().map_or(&[], |d| d.pods.as_slice())
    }

    /// One evaluation at `now` (seconds).
    pub async fn tick(
        &mut self,
        cluster: &Arc<dyn Cluster>,
        spec: &AutoscalingSpec,
        drain_timeout: Duration,
        metrics: &Metrics,
        now: u64,
    ) -> anyhow::Result<Decision> {
        if self.drain.as_ref().is_some_and(|d| d.task.is_finished()) {
            self.settle().await;
        }
        let targets = cluster.targets().await?;
        let scrapes = collect::scrape_all(targets, SCRAPES_IN_FLIGHT, SCRAPE_TIMEOUT).await;
        let redis_ops = cluster.redis_ops().await;
        let signals = collect::signals(&scrapes, redis_ops);
        metrics
            .scrape_failures
            .inc_by(scrapes.iter().filter(|s| s.metrics.is_err()).count() as u64);
        let current = cluster.replicas().await?;
        let decision = decide(spec, now, current, signals, &self.history);
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
            "drainingPods": self.draining(),
        });
        // What is done, not only what is wished, goes into the history: a
        // scale-down asked for while one drains is the same scale-down.
        let mut done = decision.clone();
        if decision.desired > current {
            if let Some(running) = self.drain.take() {
                // The drain reports `Reason::DrainCancelled` and clears `drainingPods`.
                running.cancel.store(true, Ordering::SeqCst);
                let _ = running.task.await;
                status["drainingPods"] = json!([]);
            }
            cluster.workload().set_replicas(decision.desired).await?;
            cluster
                .event(
                    Reason::ScaledUp,
                    format!("{current} -> {}: {}", decision.desired, decision.reason),
                )
                .await;
            status["lastScaleTime"] = json!(Time(Timestamp::now()));
            status["lastScaleReason"] = json!(decision.reason);
        } else if decision.desired < current && self.drain.is_some() {
            done.desired = current;
        } else if decision.desired < current {
            // Only pods that exist and answer need draining: replicas not yet
            // started, and pods not Ready that do not answer, just go.
            let victims = victims(&scrapes, drain::to_drain(&scrapes, decision.desired));
            let pods: Vec<String> = victims.iter().map(|v| v.0.clone()).collect();
            status["drainingPods"] = json!(pods);
            cluster
                .event(
                    Reason::DrainStarted,
                    format!("draining {pods:?} before scaling to {}", decision.desired),
                )
                .await;
            let cancel = Arc::new(AtomicBool::new(false));
            let (workload, drains) = (cluster.workload(), cluster.drains().await);
            let (flag, reporter, owned) = (cancel.clone(), cluster.clone(), self.status.clone());
            let (desired, reason) = (decision.desired, decision.reason.clone());
            let names = pods.clone();
            let task = tokio::spawn(async move {
                let outcome = drain::scale_down(
                    workload.as_ref(),
                    drains.as_ref(),
                    &victims,
                    desired,
                    drain_timeout,
                    DRAIN_POLL,
                    &move || flag.load(Ordering::SeqCst),
                )
                .await;
                let note = format!("{current} -> {desired}");
                report(reporter.as_ref(), &owned, outcome, &note, &reason, &names).await;
            });
            self.drain = Some(RunningDrain { cancel, task, pods });
        }
        self.history.record(now, current, &done);
        self.status.write(cluster.as_ref(), status).await?;
        Ok(decision)
    }

    /// Waits for the running drain, if any, to end (it reports how it ended).
    pub async fn settle(&mut self) {
        if let Some(running) = self.drain.take()
            && let Err(error) = running.task.await
        {
            tracing::warn!(%error, "the drain task failed");
        }
    }
}

/// Events and status for how a drain ended, as soon as it ends.
async fn report(
    cluster: &dyn Cluster,
    owned: &OwnedStatus,
    outcome: anyhow::Result<Outcome>,
    note: &str,
    reason: &str,
    pods: &[String],
) {
    let mut status = json!({"drainingPods": []});
    match outcome {
        Ok(outcome) => {
            let event = match outcome {
                Outcome::Completed => Reason::DrainCompleted,
                Outcome::TimedOut => Reason::DrainTimedOut,
                Outcome::Cancelled => Reason::DrainCancelled,
            };
            cluster.event(event, format!("{note}: {pods:?}")).await;
            if outcome != Outcome::Cancelled {
                cluster
                    .event(Reason::ScaledDown, format!("{note}: {reason}"))
                    .await;
                status["lastScaleTime"] = json!(Time(Timestamp::now()));
                status["lastScaleReason"] = json!(reason);
            }
        }
        Err(error) => {
            cluster
                .event(Reason::DrainFailed, format!("{note}: {error:#}"))
                .await;
        }
    }
    if let Err(error) = owned.write(cluster, status).await {
        tracing::warn!(%error, "autoscaler status could not be written");
    }
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
