//! One cluster's autoscaler, whatever runs its pods: observe (scrape the
//! pods, read Redis), decide (the pure policies: how many pods, which pods
//! shed), act (scale up at once; scale down through a drain; ask pods far
//! above the mean to shed). Kubernetes implements [`Cluster`] in `run`; the
//! local end-to-end test implements it with chat-server processes.
//!
//! A scale-down drains in the background, so the autoscaler keeps observing
//! while clients move. If a decision taken during the drain asks for more
//! pods than run now, the drain is cancelled (its pods serve again, or are
//! replaced if they had finished draining) before replicas go up.
//!
//! Rebalancing (`rebalance::plan`) is restated at every evaluation that
//! neither starts nor runs beside a drain: donors are asked again to refuse
//! (and, after `afterSeconds`, to shed); a pod back in the zone is no longer
//! asked, and its `chat_shedding` gauge falls back to 0 once its refusal
//! runs out (`RebalanceCompleted`).

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use tokio::task::JoinHandle;

use chatscale_contract::admin::ShedRequest;

use super::{
    admin_client::{AdminClient, ShedApi},
    collect::{self, Scrape, Target},
    decide::{Decision, History, decide},
    drain::{self, Outcome, Pacing, Workload},
    rebalance::{self, Imbalance, Shed, Zone},
    status::{AutoscalerStatus, OwnedStatus},
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
    /// Running chat-server pods (not terminating), with their admin API's base URL.
    async fn targets(&self) -> anyhow::Result<Vec<Target>>;
    /// Redis `instantaneous_ops_per_sec`; `None` when it cannot be read.
    async fn redis_ops(&self) -> Option<f64>;
    /// The replica count the cluster runs now.
    async fn replicas(&self) -> anyhow::Result<i32>;
    /// Marks pods, sets replicas, replaces pods.
    fn workload(&self) -> Arc<dyn Workload>;
    /// The pods' admin API (drain and shed), with the cluster's admin token.
    async fn admin(&self) -> Arc<AdminClient>;
    /// Records an Event.
    async fn event(&self, reason: Reason, note: String);
    /// Writes the autoscaler's status fields (a partial ChatCluster status).
    async fn status(&self, status: AutoscalerStatus) -> anyhow::Result<()>;
}

/// Operator metrics of the autoscaler.
pub struct Metrics {
    /// Decisions taken, by direction (`up`, `down`, `hold`).
    pub decisions: prometheus::IntCounterVec,
    /// Pods whose `/metrics` could not be scraped.
    pub scrape_failures: prometheus::IntCounter,
    /// Shed requests sent to pods, by result (`ok`, `failed`).
    pub shed_requests: prometheus::IntCounterVec,
    /// Connections pods were asked to shed.
    pub shed_connections: prometheus::IntCounter,
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
            shed_requests: prometheus::IntCounterVec::new(
                prometheus::Opts::new(
                    "chatscale_autoscaler_shed_requests_total",
                    "Rebalancing requests to pods to shed connections, by result",
                ),
                &["result"],
            )?,
            shed_connections: prometheus::IntCounter::new(
                "chatscale_autoscaler_shed_connections_total",
                "Connections pods were asked to shed for a rebalance",
            )?,
        };
        // Every direction from the start, at 0, so that rate() sees the first one.
        for direction in ["up", "down", "hold"] {
            metrics.decisions.with_label_values(&[direction]);
        }
        registry.register(Box::new(metrics.decisions.clone()))?;
        registry.register(Box::new(metrics.scrape_failures.clone()))?;
        registry.register(Box::new(metrics.shed_requests.clone()))?;
        registry.register(Box::new(metrics.shed_connections.clone()))?;
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
/// runs, if any, how long pods have been above the mean, the pods asked to
/// shed, and the status fields it owns.
#[derive(Default)]
pub struct Autoscaler {
    history: History,
    drain: Option<RunningDrain>,
    imbalance: Imbalance<String>,
    /// Pods asked to refuse or shed whose refusal has not ended yet, with
    /// the connections they were last asked to shed (0: refuse only).
    shedding: BTreeMap<String, u64>,
    status: OwnedStatus,
}

/// How the pods' drains and sheds are run (from the ChatCluster's spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Longest one pod's drain may take.
    pub drain_timeout: Duration,
    /// Between the starts of two pods' drains in one scale-down.
    pub drain_stagger: Duration,
}

/// What one evaluation saw.
struct Observation {
    scrapes: Vec<Scrape>,
    redis_ops: Option<f64>,
    /// Replicas the cluster runs now.
    current: i32,
}

/// What one evaluation does, decided from what it saw.
#[derive(Debug, PartialEq)]
struct Plan {
    /// What the policy asked for (returned by [`Autoscaler::tick`]).
    decision: Decision,
    /// What is done, which goes into the history: a scale-down asked for
    /// while one drains is the same scale-down, not a new one.
    done: Decision,
    /// The decision's label in `chatscale_autoscaler_decisions_total`.
    direction: &'static str,
    act: Act,
    /// Pods to ask to refuse or shed (never when `act` drains or a drain runs).
    sheds: Vec<Shed<String>>,
    /// The zone around the mean the sheds are for.
    zone: Option<Zone>,
    /// Figures for the status.
    connections: Option<i64>,
    connections_per_pod: Option<i64>,
    redis_ops_per_sec: Option<i64>,
    busiest_pod_connections: Option<i64>,
}

#[derive(Debug, PartialEq)]
enum Act {
    /// Nothing to do (or the running drain already does it).
    Hold,
    /// Cancel the drain, if one runs, and raise replicas at once.
    ScaleUp,
    /// Drain these pods (pod, admin base URL), then lower replicas.
    Drain(Vec<(String, String)>),
}

impl Autoscaler {
    /// Pods being drained now (empty when no scale-down runs).
    pub fn draining(&self) -> &[String] {
        self.drain.as_ref().map_or(&[], |d| d.pods.as_slice())
    }

    /// One evaluation at `now` (seconds): observe, decide, act, report.
    pub async fn tick(
        &mut self,
        cluster: &Arc<dyn Cluster>,
        spec: &AutoscalingSpec,
        timing: Timing,
        metrics: &Metrics,
        now: u64,
    ) -> anyhow::Result<Decision> {
        if self.drain.as_ref().is_some_and(|d| d.task.is_finished()) {
            self.settle().await;
        }
        let observation = observe(cluster.as_ref(), metrics).await?;
        let loads = collect::loads(&observation.scrapes);
        self.imbalance.observe(&spec.rebalance, now, &loads);
        let plan = plan(
            spec,
            now,
            &observation,
            &self.history,
            &self.imbalance,
            self.drain.is_some(),
        );
        metrics.decisions.with_label_values(&[plan.direction]).inc();
        self.act(cluster, &plan, observation.current, timing)
            .await?;
        self.shed(cluster.as_ref(), &plan, &observation.scrapes, metrics)
            .await;
        self.shed_ended(cluster.as_ref(), &plan, &observation.scrapes)
            .await;
        self.history.record(now, observation.current, &plan.done);
        let draining = self.draining().to_vec();
        let shedding = self.shedding.keys().cloned().collect();
        self.status
            .write(cluster.as_ref(), |status| {
                status.connections = plan.connections;
                status.connections_per_pod = plan.connections_per_pod;
                status.busiest_pod_connections = plan.busiest_pod_connections;
                status.redis_ops_per_sec = plan.redis_ops_per_sec;
                status.draining_pods = draining;
                status.shedding_pods = shedding;
                if plan.act == Act::ScaleUp {
                    status.scaled(&plan.decision.reason);
                }
            })
            .await?;
        Ok(plan.decision)
    }

    /// Asks the planned pods to refuse or shed. Events: a pod that starts to
    /// refuse, and one that starts to shed.
    async fn shed(
        &mut self,
        cluster: &dyn Cluster,
        plan: &Plan,
        scrapes: &[Scrape],
        metrics: &Metrics,
    ) {
        let (Some(zone), false) = (plan.zone, plan.sheds.is_empty()) else {
            return;
        };
        let admin = cluster.admin().await;
        let mut news = Vec::new();
        for shed in &plan.sheds {
            let Some(url) = scrapes
                .iter()
                .find(|s| s.target.pod == shed.pod)
                .map(|s| s.target.admin.as_str())
            else {
                continue;
            };
            let request = ShedRequest {
                connections: shed.connections,
                per_second: shed.per_second,
            };
            match admin.shed(url, request).await {
                Ok(()) => {
                    metrics.shed_requests.with_label_values(&["ok"]).inc();
                    metrics.shed_connections.inc_by(shed.connections);
                    let before = self.shedding.insert(shed.pod.clone(), shed.connections);
                    if before.is_none() {
                        news.push(format!("{} refuses new sessions", shed.pod));
                    }
                    if shed.connections > 0 && before.is_none_or(|asked| asked == 0) {
                        news.push(format!(
                            "{} sheds {} at {}/s",
                            shed.pod, shed.connections, shed.per_second
                        ));
                    }
                }
                Err(error) => {
                    metrics.shed_requests.with_label_values(&["failed"]).inc();
                    cluster
                        .event(Reason::RebalanceFailed, format!("{}: {error:#}", shed.pod))
                        .await;
                }
            }
        }
        if !news.is_empty() {
            cluster
                .event(
                    Reason::RebalanceStarted,
                    format!(
                        "{} (mean {:.0}, zone up to {:.0}, back to {})",
                        news.join(", "),
                        zone.mean,
                        zone.upper,
                        zone.back_to
                    ),
                )
                .await;
        }
    }

    /// Reports the rebalances that ended: a pod no longer asked says it no
    /// longer refuses, or it has gone.
    async fn shed_ended(&mut self, cluster: &dyn Cluster, plan: &Plan, scrapes: &[Scrape]) {
        let planned = |pod: &str| plan.sheds.iter().any(|s| s.pod == pod);
        let mut ended = Vec::new();
        for (pod, asked) in &self.shedding {
            let now = scrapes.iter().find(|s| &s.target.pod == pod);
            match now.map(|s| s.metrics.as_ref()) {
                Some(Ok(metrics)) if !metrics.shedding && !planned(pod) => {
                    ended.push((pod.clone(), Some((*asked, metrics.connections))))
                }
                None => ended.push((pod.clone(), None)),
                _ => {}
            }
        }
        for (pod, figures) in ended {
            self.shedding.remove(&pod);
            if let Some((asked, connections)) = figures {
                cluster
                    .event(
                        Reason::RebalanceCompleted,
                        format!("{pod} takes new sessions again (last asked to shed {asked}), holds {connections}"),
                    )
                    .await;
            }
        }
    }

    /// Carries out the plan: a scale-up cancels the running drain (which
    /// reports `Reason::DrainCancelled`) and sets replicas; a scale-down
    /// starts a drain in the background.
    async fn act(
        &mut self,
        cluster: &Arc<dyn Cluster>,
        plan: &Plan,
        current: i32,
        timing: Timing,
    ) -> anyhow::Result<()> {
        let decision = &plan.decision;
        match &plan.act {
            Act::Hold => {}
            Act::ScaleUp => {
                if let Some(running) = self.drain.take() {
                    running.cancel.store(true, Ordering::SeqCst);
                    let _ = running.task.await;
                }
                cluster.workload().set_replicas(decision.desired).await?;
                cluster
                    .event(
                        Reason::ScaledUp,
                        format!("{current} -> {}: {}", decision.desired, decision.reason),
                    )
                    .await;
            }
            Act::Drain(victims) => {
                let pods: Vec<String> = victims.iter().map(|v| v.0.clone()).collect();
                cluster
                    .event(
                        Reason::DrainStarted,
                        format!("draining {pods:?} before scaling to {}", decision.desired),
                    )
                    .await;
                self.drain = Some(
                    self.start_drain(cluster, victims.clone(), current, decision, timing)
                        .await,
                );
            }
        }
        Ok(())
    }

    /// Runs the scale-down to `decision.desired` in a task that reports how it ended.
    async fn start_drain(
        &self,
        cluster: &Arc<dyn Cluster>,
        victims: Vec<(String, String)>,
        current: i32,
        decision: &Decision,
        timing: Timing,
    ) -> RunningDrain {
        let cancel = Arc::new(AtomicBool::new(false));
        let (workload, drains) = (cluster.workload(), cluster.admin().await);
        let pacing = Pacing {
            timeout: timing.drain_timeout,
            poll: DRAIN_POLL,
            stagger: timing.drain_stagger,
        };
        let (flag, reporter, owned) = (cancel.clone(), cluster.clone(), self.status.clone());
        let (desired, reason) = (decision.desired, decision.reason.clone());
        let pods: Vec<String> = victims.iter().map(|(pod, _)| pod.clone()).collect();
        let names = pods.clone();
        let task = tokio::spawn(async move {
            let outcome = drain::scale_down(
                workload.as_ref(),
                drains.as_ref(),
                &victims,
                desired,
                pacing,
                &move || flag.load(Ordering::SeqCst),
            )
            .await;
            let note = format!("{current} -> {desired}");
            report(reporter.as_ref(), &owned, outcome, &note, &reason, &names).await;
        });
        RunningDrain { cancel, task, pods }
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

/// Scrapes the pods and reads Redis and the replica count.
async fn observe(cluster: &dyn Cluster, metrics: &Metrics) -> anyhow::Result<Observation> {
    let targets = cluster.targets().await?;
    let scrapes = collect::scrape_all(targets, SCRAPES_IN_FLIGHT, SCRAPE_TIMEOUT).await;
    metrics
        .scrape_failures
        .inc_by(scrapes.iter().filter(|s| s.metrics.is_err()).count() as u64);
    let redis_ops = cluster.redis_ops().await;
    let current = cluster.replicas().await?;
    Ok(Observation {
        scrapes,
        redis_ops,
        current,
    })
}

/// The policies' decisions on what was seen, and what to do about them (pure).
fn plan(
    spec: &AutoscalingSpec,
    now: u64,
    seen: &Observation,
    history: &History,
    imbalance: &Imbalance<String>,
    draining: bool,
) -> Plan {
    let current = seen.current;
    // A drain only pauses rebalancing: a scale-up cancels it, and a
    // scale-down makes the busiest pod no busier.
    let signals = collect::signals(&seen.scrapes, seen.redis_ops, spec.rebalance.enabled);
    let decision = decide(spec, now, current, signals, history);
    let mut done = decision.clone();
    let (direction, act) = match decision.desired.cmp(&current) {
        std::cmp::Ordering::Greater => ("up", Act::ScaleUp),
        std::cmp::Ordering::Less if draining => {
            done.desired = current;
            ("down", Act::Hold)
        }
        // A pod that refuses new sessions is not Ready, and the ReplicaSet
        // deletes pods that are not Ready first, whatever their deletion
        // cost: wait until no pod refuses (refusals are not restated when
        // a scale-down is due, so they end within SHED_HOLD_SECONDS).
        std::cmp::Ordering::Less if refusing(&seen.scrapes) => {
            done.desired = current;
            ("down", Act::Hold)
        }
        // Only pods that exist and answer need draining: replicas not yet
        // started, and pods not Ready that do not answer, just go.
        std::cmp::Ordering::Less => (
            "down",
            Act::Drain(victims(
                &seen.scrapes,
                drain::to_drain(&seen.scrapes, decision.desired),
            )),
        ),
        std::cmp::Ordering::Equal => ("hold", Act::Hold),
    };
    let ready = seen
        .scrapes
        .iter()
        .filter(|s| s.target.ready)
        .count()
        .max(1) as i64;
    let loads = collect::loads(&seen.scrapes);
    // Never beside a drain, nor when a scale-down is due, and only on what
    // every ready pod reported.
    let sheds = if decision.desired >= current && signals.connections.is_some() {
        rebalance::plan(&spec.rebalance, now, &loads, imbalance, draining)
    } else {
        Vec::new()
    };
    Plan {
        direction,
        act,
        zone: Zone::of(&spec.rebalance, &loads),
        sheds,
        connections: signals.connections.map(|c| c as i64),
        connections_per_pod: signals.connections.map(|c| c as i64 / ready),
        busiest_pod_connections: loads.iter().map(|l| l.connections as i64).max(),
        redis_ops_per_sec: seen.redis_ops.map(|o| o as i64),
        decision,
        done,
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
    let mut scaled = false;
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
                scaled = true;
            }
        }
        Err(error) => {
            cluster
                .event(Reason::DrainFailed, format!("{note}: {error:#}"))
                .await;
        }
    }
    let written = owned
        .write(cluster, |status| {
            status.draining_pods.clear();
            if scaled {
                status.scaled(reason);
            }
        })
        .await;
    if let Err(error) = written {
        tracing::warn!(%error, "autoscaler status could not be written");
    }
}

/// True when a pod says it refuses new sessions (it sheds, or holds a refusal).
fn refusing(scrapes: &[Scrape]) -> bool {
    scrapes
        .iter()
        .any(|s| s.metrics.as_ref().is_ok_and(|m| m.shedding))
}

/// (pod, admin base URL) of the emptiest pods.
fn victims(scrapes: &[Scrape], count: usize) -> Vec<(String, String)> {
    drain::pick(scrapes, count)
        .into_iter()
        .map(|s| (s.target.pod.clone(), s.target.admin.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ready pods with these connections, all answering.
    fn seen(connections: &[u64]) -> Observation {
        let scrapes = connections
            .iter()
            .enumerate()
            .map(|(i, c)| Scrape {
                target: Target {
                    pod: format!("chat-{i}"),
                    admin: format!("http://10.0.0.{i}:9090"),
                    ready: true,
                },
                metrics: collect::parse(&format!("chat_connected_sockets {c}\n")),
            })
            .collect();
        Observation {
            scrapes,
            redis_ops: None,
            current: connections.len() as i32,
        }
    }

    fn spec() -> AutoscalingSpec {
        let mut spec = AutoscalingSpec {
            min_replicas: 1,
            max_replicas: 10,
            target_connections_per_pod: 100,
            target_redis_ops_per_pod: 0,
            ..Default::default()
        };
        spec.behavior.scale_down.stabilization_window_seconds = 0;
        spec
    }

    #[test]
    fn a_scale_down_drains_the_emptiest_pod() {
        let plan = plan(
            &spec(),
            0,
            &seen(&[90, 5, 60]),
            &History::default(),
            &Imbalance::default(),
            false,
        );
        assert_eq!((plan.direction, plan.decision.desired), ("down", 2));
        assert_eq!(
            plan.act,
            Act::Drain(vec![("chat-1".into(), "http://10.0.0.1:9090".into())])
        );
        assert_eq!(plan.done, plan.decision);
        assert_eq!(
            (plan.connections, plan.connections_per_pod),
            (Some(155), Some(51))
        );
    }

    #[test]
    fn a_scale_down_while_one_drains_is_that_one() {
        let plan = plan(
            &spec(),
            0,
            &seen(&[90, 5, 60]),
            &History::default(),
            &Imbalance::default(),
            true,
        );
        assert_eq!(plan.act, Act::Hold);
        assert_eq!((plan.decision.desired, plan.done.desired), (2, 3));
    }

    #[test]
    fn pods_far_above_the_mean_refuse_then_shed_never_beside_a_drain() {
        // Target 100 per pod: 60 connections on 3 pods hold; two old pods
        // hold them all. Above the zone since 0 s (afterSeconds 120).
        let seen = seen(&[30, 30, 0]);
        let mut imbalance = Imbalance::default();
        let loads = collect::loads(&seen.scrapes);
        let mut spec = spec();
        spec.min_replicas = 3;
        imbalance.observe(&spec.rebalance, 0, &loads);
        imbalance.observe(&spec.rebalance, 120, &loads);
        let asked = |plan: &Plan| -> Vec<(String, u64)> {
            plan.sheds
                .iter()
                .map(|s| (s.pod.clone(), s.connections))
                .collect()
        };
        let early = plan(&spec, 60, &seen, &History::default(), &imbalance, false);
        assert_eq!(asked(&early), [("chat-0".into(), 0), ("chat-1".into(), 0)]);
        let due = plan_with(&spec, &seen, &imbalance, false);
        assert_eq!(due.act, Act::Hold);
        assert_eq!(asked(&due), [("chat-0".into(), 9), ("chat-1".into(), 9)]);
        assert_eq!(due.busiest_pod_connections, Some(30));

        let draining = plan_with(&spec, &seen, &imbalance, true);
        assert!(draining.sheds.is_empty(), "never beside a drain");
        spec.min_replicas = 1;
        let scaling_down = plan_with(&spec, &seen, &imbalance, false);
        assert!(matches!(scaling_down.act, Act::Drain(_)));
        assert!(scaling_down.sheds.is_empty(), "never when a drain starts");
        spec.target_connections_per_pod = 10;
        let scaling_up = plan_with(&spec, &seen, &imbalance, false);
        assert_eq!(scaling_up.act, Act::ScaleUp);
        assert_eq!(
            asked(&scaling_up).len(),
            2,
            "a scale-up helps only new sessions"
        );
    }

    #[test]
    fn no_scale_down_starts_while_a_pod_refuses_new_sessions() {
        let mut refusing = seen(&[90, 5, 60]);
        refusing.scrapes[0].metrics =
            collect::parse("chat_connected_sockets 90\nchat_shedding 1\n");
        let plan = plan(
            &spec(),
            0,
            &refusing,
            &History::default(),
            &Imbalance::default(),
            false,
        );
        assert_eq!((plan.direction, &plan.act), ("down", &Act::Hold));
        assert_eq!((plan.decision.desired, plan.done.desired), (2, 3));
        assert!(plan.sheds.is_empty(), "and no refusal is restated");
    }

    fn plan_with(
        spec: &AutoscalingSpec,
        seen: &Observation,
        imbalance: &Imbalance<String>,
        draining: bool,
    ) -> Plan {
        plan(spec, 120, seen, &History::default(), imbalance, draining)
    }

    #[test]
    fn more_load_scales_up() {
        let plan = plan(
            &spec(),
            0,
            &seen(&[300, 300]),
            &History::default(),
            &Imbalance::default(),
            true,
        );
        assert_eq!((plan.direction, &plan.act), ("up", &Act::ScaleUp));
        assert!(plan.decision.desired > 2, "{}", plan.decision.reason);
    }
}
