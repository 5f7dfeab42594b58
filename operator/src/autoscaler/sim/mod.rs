//! A session-level simulator that runs chatscale's policy and emulations of
//! the HorizontalPodAutoscaler and KEDA side by side on the same sessions,
//! and scores them against a clairvoyant oracle. It exists because Socket.IO
//! connections are sticky: after a scale-up the old pods keep every
//! connection and only new ones reach the new pods, so an autoscaler that
//! watches the average can be on target while old pods are overloaded. Pure
//! and deterministic: whole seconds, nothing sleeps, every random draw comes
//! from a seeded generator ([`rng`]). docs/autoscaling-sim.md has the model,
//! its sources and the results.
//!
//! # Model
//!
//! - **Sessions** ([`scenario`]): each scenario generates, once per seed, a
//!   list of sessions (arrival second, end second); every policy replays
//!   the same list, so the offered connections of every second are the same
//!   for all.
//! - **Placement** ([`world`]): the load balancer places each new
//!   connection among the ready pods that accept new sessions (not
//!   starting, not draining, not shedding): round-robin by default, or
//!   least-connections, or random ([`Model::balancer`]). A session stays on
//!   its pod until it ends or the pod lets it go (drain, shed); its client
//!   then reconnects after a uniform 1–2 s and is placed again (its end
//!   second does not change). A client that finds no pod accepting waits
//!   and retries the same way.
//! - **Pods**: ready `startup_seconds` (30) after they are created. chatscale
//!   scales down as the operator does: it drains the emptiest ready pods,
//!   one every `drain.staggerSeconds` (10), each letting `drain.rate` (500)
//!   clients go per second, and lowers replicas once all are empty; a
//!   scale-up meanwhile cancels the drain (pods serve again; a pod that had
//!   drained is replaced). The HPA and KEDA lower replicas at once; the
//!   ReplicaSet deletes pods that are not ready first, then the most
//!   recently ready, and each drains on SIGTERM at the same rate. A deleted
//!   pod costs until it is empty plus `exit_seconds` (2).
//! - **Evaluations** every `intervalSeconds` (15 s, the HPA's sync period
//!   too); no scrape or metrics-pipeline lag, except KEDA's cache when
//!   `keda_cached_metrics` is set.
//!
//! # The policies
//!
//! - `chatscale` ([`chatscale`]): `decide`, the scale-down held while a
//!   drain runs, and rebalancing (`rebalance::plan`), with [`chatscale_spec`];
//!   `chatscale_no_rebalance` is the same with `rebalance.enabled = false`
//!   (the busiest pod is then a signal of its own).
//! - `hpa_default` ([`hpa`]): the HPA on a `Pods` metric (connections per
//!   pod, `averageValue` 5000) with the default behavior.
//! - `keda_default` ([`keda`]): KEDA's defaults, an HPA on an `External`
//!   metric (the total), `AverageValue`.
//!
//! # Scores
//!
//! See [`score::Metrics`] and [`oracle`].

pub mod chatscale;
pub mod hpa;
pub mod keda;
pub mod oracle;
pub mod plot;
pub mod policy;
pub mod rng;
pub mod run;
pub mod scenario;
pub mod score;
pub mod targets;
pub mod world;

#[cfg(test)]
mod properties;

use serde::Serialize;

pub use self::{
    chatscale::Chatscale,
    hpa::HpaDefault,
    keda::KedaDefault,
    oracle::{oracle_pod_seconds, oracle_pods},
    run::{Run, Sample, simulate},
    scenario::{Scenario, Sessions},
    score::Metrics,
    world::Balancer,
};
use crate::api::{AutoscalingSpec, DrainSpec};

/// The simulated world, apart from the policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Model {
    /// Seconds from creating a pod to its being ready.
    pub startup_seconds: u64,
    /// The hottest ready pod above this percentage of the target is overload.
    pub overload_percent: u64,
    /// Seed of the sessions and of every other random draw.
    pub seed: u64,
    /// How the load balancer places new connections.
    pub balancer: Balancer,
    /// A client let go reconnects after a uniform delay in this range
    /// (socket.io-client's default is 1 s × (1 ± 0.5); whole seconds).
    pub reconnect_min_seconds: u64,
    pub reconnect_max_seconds: u64,
    /// Clients a draining pod lets go per second (`drain.rate`).
    pub drain_rate: u64,
    /// Seconds between the starts of two drains of one scale-down (`drain.staggerSeconds`).
    pub stagger_seconds: u64,
    /// Longest a drain may take (`drain.timeoutSeconds`); then whoever is left goes at once.
    pub drain_timeout_seconds: u64,
    /// Seconds a deleted, empty pod takes to exit (it costs meanwhile).
    pub exit_seconds: u64,
    /// KEDA's `pollingInterval`.
    pub keda_polling_seconds: u64,
    /// KEDA's trigger has `useCachedMetrics: true` (the HPA reads the value
    /// of the last poll); the default is false (a fresh value per request).
    pub keda_cached_metrics: bool,
    /// An experiment, not the operator's policy: chatscale sheds only pods
    /// above `target × (1 + tolerance)` ([`Chatscale::shedding_only_above_band`]).
    pub shed_only_above_band: bool,
    /// A pod asked to shed refuses new sessions until this long after the
    /// order, or after its last close if later (chat-server's `SHED_HOLD_SECONDS`).
    pub shed_hold_seconds: u64,
}

impl Default for Model {
    fn default() -> Self {
        let drain = DrainSpec::default();
        Self {
            startup_seconds: 30,
            overload_percent: 120,
            seed: 42,
            balancer: Balancer::RoundRobin,
            reconnect_min_seconds: 1,
            reconnect_max_seconds: 2,
            drain_rate: drain.rate.max(1) as u64,
            stagger_seconds: drain.stagger_seconds.max(0) as u64,
            drain_timeout_seconds: drain.timeout_seconds.max(1) as u64,
            exit_seconds: 2,
            keda_polling_seconds: 30,
            keda_cached_metrics: false,
            shed_only_above_band: false,
            shed_hold_seconds: chatscale_contract::admin::SHED_HOLD_SECONDS,
        }
    }
}

/// The policy spec every simulated policy sizes with (chatscale's defaults
/// for everything but the sizes, and Redis ignored so only connections count).
pub fn chatscale_spec() -> AutoscalingSpec {
    AutoscalingSpec {
        target_connections_per_pod: 5000,
        min_replicas: 2,
        max_replicas: 50,
        target_redis_ops_per_pod: 0,
        ..Default::default()
    }
}

/// The spec's figures a report shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpecSummary {
    pub target_connections_per_pod: i32,
    pub min_replicas: i32,
    pub max_replicas: i32,
    pub interval_seconds: i32,
    pub tolerance: f64,
    pub rebalance_dead_zone_percent: i32,
    pub rebalance_connections_per_second: i32,
    pub rebalance_after_seconds: i32,
}

impl From<&AutoscalingSpec> for SpecSummary {
    fn from(spec: &AutoscalingSpec) -> Self {
        Self {
            target_connections_per_pod: spec.target_connections_per_pod,
            min_replicas: spec.min_replicas,
            max_replicas: spec.max_replicas,
            interval_seconds: spec.interval_seconds,
            tolerance: spec.tolerance,
            rebalance_dead_zone_percent: spec.rebalance.dead_zone_percent,
            rebalance_connections_per_second: spec.rebalance.connections_per_second,
            rebalance_after_seconds: spec.rebalance.after_seconds,
        }
    }
}

/// The result the command line prints with `--json` (the names are a contract).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub scenario: String,
    pub seconds: u64,
    pub oracle_pod_seconds: u64,
    /// The clairvoyant that sizes as the policies do, `ceil(C(t) / target)`
    /// pods (see [`oracle`]): what the sizing rule itself costs, with no lag.
    pub oracle_at_target_pod_seconds: u64,
    /// Offered connections: mean and peak over the run, and the sessions.
    pub mean_connections: u64,
    pub peak_connections: u64,
    pub sessions: u64,
    pub model: Model,
    pub spec: SpecSummary,
    pub chatscale: Metrics,
    pub hpa_default: Metrics,
    pub keda_default: Metrics,
    pub chatscale_no_rebalance: Metrics,
}

impl Report {
    /// The policies' scores, in table order.
    pub fn policies(&self) -> [(&'static str, &Metrics); 4] {
        [
            ("chatscale", &self.chatscale),
            ("hpa_default", &self.hpa_default),
            ("keda_default", &self.keda_default),
            ("chatscale_no_rebalance", &self.chatscale_no_rebalance),
        ]
    }
}

/// Every policy on one session list, with the per-second detail.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub report: Report,
    pub spec: AutoscalingSpec,
    pub model: Model,
    pub offered: Vec<u64>,
    /// The runs, in [`Report::policies`] order.
    pub runs: Vec<(&'static str, Run)>,
}

/// Runs every policy on `scenario`'s sessions under `model`, with `spec`
/// (usually [`chatscale_spec`]; the HPA and KEDA take only its sizes).
pub fn compare(scenario: Scenario, model: &Model, spec: &AutoscalingSpec) -> Comparison {
    compare_sessions(scenario.name(), &scenario.sessions(model.seed), model, spec)
}

/// [`compare`] on any session list.
pub fn compare_sessions(
    name: &str,
    sessions: &Sessions,
    model: &Model,
    spec: &AutoscalingSpec,
) -> Comparison {
    let mut without = spec.clone();
    without.rebalance.enabled = false;
    let keda = if model.keda_cached_metrics {
        KedaDefault::cached(spec, model.keda_polling_seconds)
    } else {
        KedaDefault::new(spec)
    };
    let mut chatscale = Chatscale::new(spec.clone());
    if model.shed_only_above_band {
        chatscale = chatscale.shedding_only_above_band();
    }
    let mut policies: [(&'static str, Box<dyn policy::Policy>); 4] = [
        ("chatscale", Box::new(chatscale)),
        ("hpa_default", Box::new(HpaDefault::new(spec))),
        ("keda_default", Box::new(keda)),
        ("chatscale_no_rebalance", Box::new(Chatscale::new(without))),
    ];
    let runs: Vec<(&'static str, Run)> = policies
        .iter_mut()
        .map(|(name, policy)| (*name, simulate(sessions, policy.as_mut(), spec, model)))
        .collect();
    let metrics = |i: usize| runs[i].1.metrics;
    let report = Report {
        scenario: name.to_owned(),
        seconds: sessions.seconds,
        oracle_pod_seconds: oracle_pod_seconds(&sessions.offered, spec, model),
        oracle_at_target_pod_seconds: oracle::at_target_pod_seconds(&sessions.offered, spec),
        mean_connections: sessions.mean_offered().round() as u64,
        peak_connections: sessions.offered.iter().copied().max().unwrap_or(0),
        sessions: sessions.len() as u64,
        model: *model,
        spec: SpecSummary::from(spec),
        chatscale: metrics(0),
        hpa_default: metrics(1),
        keda_default: metrics(2),
        chatscale_no_rebalance: metrics(3),
    };
    Comparison {
        report,
        spec: spec.clone(),
        model: *model,
        offered: sessions.offered.clone(),
        runs,
    }
}
