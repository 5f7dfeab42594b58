//! A trace-driven simulator that runs chatscale's policy ([`decide`]) and an
//! emulation of the HorizontalPodAutoscaler with its default behavior side
//! by side on the same offered load, and scores both against a clairvoyant
//! oracle. Pure and deterministic: time is whole seconds, nothing sleeps, the
//! only randomness is a seeded linear congruential generator.
//!
//! # Model
//!
//! - **Load**: a scenario gives the offered load, total Socket.IO
//!   connections, for every second. Connections are spread evenly over the
//!   *ready* pods (no stickiness, no rebalancing cost): a pod that is
//!   starting or draining carries none.
//! - **Signal**: both policies see the same thing, the total connections of
//!   that second, at each evaluation (every `intervalSeconds`, 15 s). No
//!   scrape or metrics-pipeline lag is modelled, for either policy.
//! - **Start-up**: a pod added at second `t` is ready, and takes load, from
//!   second `t + startup_seconds` (default 30 s).
//! - **Removal**: on a scale-down, not-yet-ready pods go first (newest first,
//!   as a ReplicaSet prefers), then ready pods. A removed ready pod stops
//!   taking load at once (its connections move to the remaining ready pods)
//!   and then drains for `drain_seconds` (default 20 s): it still costs
//!   pod-seconds but is neither capacity nor part of the Deployment's
//!   replicas. A removed starting pod disappears at once.
//! - **Current**: the replica count a policy starts from is the Deployment's
//!   `replicas` (ready + starting; draining pods are no longer part of it).
//! - **Start state**: the run starts settled: `clamp(ceil(load(0) / target),
//!   min, max)` ready pods and empty policy histories.
//!
//! # Scores
//!
//! - `overload_seconds`: seconds in which load per ready pod exceeds
//!   `overload_percent` (120%) of the target; with no ready pod, any load is
//!   overload.
//! - `pod_seconds`: the sum over seconds of the pods that exist (ready,
//!   starting or draining): what the cluster pays for.
//! - `scale_events`: evaluations that changed the desired replica count.
//! - `reversals`: scale events in the opposite direction of the previous one
//!   and less than the scale-down stabilization window (300 s) after it.
//! - `oracle_pod_seconds`: the least pod-seconds any policy that knows the
//!   future could spend without overload. It has exactly
//!   `clamp(ceil(load(t) / (1.2 × target)), min, max)` pods ready at every
//!   second `t` (it starts them `startup_seconds` early, and since it never
//!   scales down a pod it still needs, start-up and drain time are not
//!   billed). So `oracle = Σ_t clamp(ceil(load(t) / (1.2 × target)), min, max)`,
//!   a lower bound for any policy that is never overloaded; a policy that
//!   accepts overload can in principle go below it.
//!
//! # The two policies
//!
//! - `chatscale`: [`decide`] with [`chatscale_spec`] (5000 connections per
//!   pod, 2..=50 pods, Redis ignored, the default behavior).
//! - `hpa_default`: [`HpaDefault`], the HPA algorithm for a `Pods` metric with
//!   an `averageValue` target of 5000 connections per pod and the default
//!   `behavior`; see its documentation for the details and sources.

use std::collections::VecDeque;

use serde::Serialize;

use super::decide::{History, Signals, decide};
use crate::api::{
    AutoscalingSpec, PolicyType, ScalingBehavior, ScalingPolicy, ScalingRules, SelectPolicy,
};

/// The simulated world, apart from the policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Model {
    /// Seconds from adding a pod to its being ready.
    pub startup_seconds: u64,
    /// Seconds a removed ready pod keeps running (and costing) while it drains.
    pub drain_seconds: u64,
    /// Load per ready pod above this percentage of the target is overload.
    pub overload_percent: u64,
    /// Seed of the random noise of the `noisy-plateau` scenario.
    pub seed: u64,
}

impl Default for Model {
    fn default() -> Self {
        Self {
            startup_seconds: 30,
            drain_seconds: 20,
            overload_percent: 120,
            seed: 42,
        }
    }
}

/// The policy spec both simulated policies use (chatscale's defaults for
/// everything but the sizes, and Redis ignored so only connections count).
pub fn chatscale_spec() -> AutoscalingSpec {
    AutoscalingSpec {
        target_connections_per_pod: 5000,
        min_replicas: 2,
        max_replicas: 50,
        target_redis_ops_per_pod: 0,
        ..Default::default()
    }
}

/// Offered-load scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// A day compressed into 2 h: a cosine from 2k up to 40k connections and back.
    Diurnal,
    /// 5k for 20 min, up to 25k within 60 s, 20 min there, back to 5k within 60 s, until 1 h.
    FlashCrowd,
    /// 20k ± 15% uniform noise, drawn anew every second, for 1 h.
    NoisyPlateau,
}

impl Scenario {
    pub const ALL: [Scenario; 3] = [Self::Diurnal, Self::FlashCrowd, Self::NoisyPlateau];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Diurnal => "diurnal",
            Self::FlashCrowd => "flash-crowd",
            Self::NoisyPlateau => "noisy-plateau",
        }
    }

    /// Connections at every second of the scenario.
    pub fn trace(self, seed: u64) -> Vec<u64> {
        match self {
            Self::Diurnal => {
                const SECONDS: u64 = 7200;
                (0..SECONDS)
                    .map(|t| {
                        let phase = std::f64::consts::TAU * t as f64 / SECONDS as f64;
                        (2000.0 + 38_000.0 * (1.0 - phase.cos()) / 2.0).round() as u64
                    })
                    .collect()
            }
            Self::FlashCrowd => {
                let (low, high) = (5000.0, 25_000.0);
                let ramp = |from: f64, to: f64, progress: u64| {
                    (from + (to - from) * progress as f64 / 60.0).round() as u64
                };
                (0..3600u64)
                    .map(|t| match t {
                        0..1200 => low as u64,
                        1200..1260 => ramp(low, high, t - 1200),
                        1260..2460 => high as u64,
                        2460..2520 => ramp(high, low, t - 2460),
                        _ => low as u64,
                    })
                    .collect()
            }
            Self::NoisyPlateau => {
                let mut rng = Lcg::new(seed);
                (0..3600)
                    .map(|_| (20_000.0 * (1.0 + 0.15 * (2.0 * rng.unit() - 1.0))).round() as u64)
                    .collect()
            }
        }
    }
}

/// Knuth's MMIX linear congruential generator: enough for noise, no dependency.
#[derive(Debug, Clone)]
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A number in [0, 1), from the high 32 bits (the low bits of an LCG are weak).
    pub fn unit(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 32) as f64 / (1u64 << 32) as f64
    }
}

/// What a policy sees at an evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// Total connections now.
    pub load: u64,
    /// The Deployment's replicas: ready plus starting pods.
    pub replicas: i32,
    /// Ready pods (they carry all the load and report metrics).
    pub ready: i32,
    /// Pods not ready yet (no connections, no metrics).
    pub starting: i32,
}

/// A scaling policy under simulation; it keeps its own history.
pub trait Policy {
    /// Replicas to run from `now` on.
    fn evaluate(&mut self, now: u64, seen: Observation) -> i32;
}

/// chatscale's policy: [`decide`] on total connections.
#[derive(Debug, Clone)]
pub struct Chatscale {
    spec: AutoscalingSpec,
    history: History,
}

impl Chatscale {
    pub fn new(spec: AutoscalingSpec) -> Self {
        Self {
            spec,
            history: History::default(),
        }
    }
}

impl Policy for Chatscale {
    fn evaluate(&mut self, now: u64, seen: Observation) -> i32 {
        let signals = Signals::new(Some(seen.load), None);
        let decision = decide(&self.spec, now, seen.replicas, signals, &self.history);
        self.history.record(now, seen.replicas, &decision);
        decision.desired
    }
}

/// The HorizontalPodAutoscaler's default behavior (`autoscaling/v2`): scale
/// up with no stabilization by at most max(+100%, +4 pods) per 15 s, scale
/// down to the highest recommendation of the last 300 s by at most -100% per 15 s.
pub fn hpa_default_behavior() -> ScalingBehavior {
    let policy = |type_, value| ScalingPolicy {
        type_,
        value,
        period_seconds: 15,
    };
    ScalingBehavior {
        scale_up: ScalingRules {
            stabilization_window_seconds: 0,
            select_policy: SelectPolicy::Max,
            policies: vec![
                policy(PolicyType::Percent, 100),
                policy(PolicyType::Pods, 4),
            ],
        },
        scale_down: ScalingRules {
            stabilization_window_seconds: 300,
            select_policy: SelectPolicy::Max,
            policies: vec![policy(PolicyType::Percent, 100)],
        },
    }
}

/// An emulation of the HorizontalPodAutoscaler controller scaling on a
/// `Pods` metric (connections per pod, `averageValue` target) with the
/// default `behavior`.
///
/// Replica calculation, as documented in "Algorithm details" of
/// <https://kubernetes.io/docs/concepts/workloads/autoscaling/horizontal-pod-autoscale/#algorithm-details>
/// (and `calcPlainMetricReplicas` in kube-controller-manager's
/// `pkg/controller/podautoscaler/replica_calculator.go` where the page is
/// not precise):
///
/// 1. Pods being deleted (here: draining) are ignored. The "not yet ready"
///    set-aside is documented for CPU only; for a custom pod metric a pod
///    that does not report yet, such as a starting chat server, is a pod
///    with a *missing metric*, and it is set aside.
/// 2. The base ratio is the average over the pods with metrics (the ready
///    ones), over the target.
/// 3. With no missing metrics: no change within the tolerance (0.1),
///    otherwise `ceil(ratio × readyPods)`.
/// 4. With missing metrics the average is recomputed with the missing pods
///    at 100% of the target if the base ratio says scale down and at 0% if
///    it says scale up. If the new ratio is within the tolerance or reverses
///    the direction, nothing changes; otherwise `ceil(newRatio × pods)`,
///    `pods` being the ready plus the missing ones (and again nothing
///    changes if that count goes against the direction).
/// 5. No metric at all (no ready pod): no scaling.
///
/// (The controller code files a starting pod in phase `Pending` under
/// "unready" rather than "missing": the same 0% on a scale-up, ignored
/// rather than counted at 100% on a scale-down.)
///
/// Then the behavior (`normalizeDesiredReplicasWithBehaviors`): the raw
/// recommendation is stabilized between the lowest of the scale-up window
/// and the highest of the scale-down window (windows include the current
/// recommendation; a sample counts while `now - t < window`), then limited
/// by the policies relative to the replicas at the start of each policy's
/// period (current minus pods added plus pods removed within the period),
/// and finally kept within `[minReplicas, maxReplicas]`. Averages use the
/// controller's integer milli-units, so rounding is the controller's too.
#[derive(Debug, Clone)]
pub struct HpaDefault {
    min_replicas: i32,
    max_replicas: i32,
    target: i64,
    tolerance: f64,
    behavior: ScalingBehavior,
    recommendations: VecDeque<(u64, i32)>,
    scale_ups: VecDeque<(u64, i32)>,
    scale_downs: VecDeque<(u64, i32)>,
}

impl HpaDefault {
    /// Uses the sizes, target and tolerance of `spec` and the HPA's own
    /// default behavior, whatever `spec.behavior` says.
    pub fn new(spec: &AutoscalingSpec) -> Self {
        Self {
            min_replicas: spec.min_replicas,
            max_replicas: spec.max_replicas,
            target: i64::from(spec.target_connections_per_pod),
            tolerance: spec.tolerance,
            behavior: hpa_default_behavior(),
            recommendations: VecDeque::new(),
            scale_ups: VecDeque::new(),
            scale_downs: VecDeque::new(),
        }
    }

    /// Steps 1-5 of the type documentation: the unstabilized recommendation,
    /// or `None` when there is no metric to go by.
    pub fn recommend(&self, seen: Observation) -> Option<i32> {
        let current = seen.replicas;
        let ready = i64::from(seen.ready);
        let missing = i64::from(seen.starting);
        if ready <= 0 {
            return None;
        }
        let target_milli = self.target * 1000;
        let total_milli = seen.load as i64 * 1000;
        // GetMetricUsageRatio: integer average in milli-units, then the ratio.
        let ratio = |total: i64, pods: i64| (total / pods) as f64 / target_milli as f64;
        let within = |r: f64| (1.0 - r).abs() <= self.tolerance;

        let usage = ratio(total_milli, ready);
        if missing == 0 {
            if within(usage) {
                return Some(current);
            }
            return Some((usage * ready as f64).ceil() as i32);
        }
        let fill = if usage < 1.0 { target_milli } else { 0 };
        let pods = ready + missing;
        let new_usage = ratio(total_milli + missing * fill, pods);
        if within(new_usage) || (usage < 1.0 && new_usage > 1.0) || (usage > 1.0 && new_usage < 1.0)
        {
            return Some(current);
        }
        let replicas = (new_usage * pods as f64).ceil() as i32;
        if (new_usage < 1.0 && replicas > current) || (new_usage > 1.0 && replicas < current) {
            return Some(current);
        }
        Some(replicas)
    }

    fn changed_within(events: &VecDeque<(u64, i32)>, now: u64, period: i32) -> i32 {
        events
            .iter()
            .filter(|(t, _)| within(now, *t, period))
            .map(|(_, n)| *n)
            .sum()
    }

    fn period_start(&self, current: i32, now: u64, period: i32) -> i32 {
        current - Self::changed_within(&self.scale_ups, now, period)
            + Self::changed_within(&self.scale_downs, now, period)
    }

    fn up_limit(&self, current: i32, now: u64) -> i32 {
        let rules = &self.behavior.scale_up;
        let proposals = rules.policies.iter().map(|p| {
            let start = self.period_start(current, now, p.period_seconds);
            match p.type_ {
                PolicyType::Pods => start + p.value,
                PolicyType::Percent => {
                    (f64::from(start) * (1.0 + f64::from(p.value) / 100.0)).ceil() as i32
                }
            }
        });
        match rules.select_policy {
            SelectPolicy::Max => proposals.max().unwrap_or(current),
            SelectPolicy::Min => proposals.min().unwrap_or(current),
            SelectPolicy::Disabled => current,
        }
    }

    fn down_limit(&self, current: i32, now: u64) -> i32 {
        let rules = &self.behavior.scale_down;
        let proposals = rules.policies.iter().map(|p| {
            let start = self.period_start(current, now, p.period_seconds);
            match p.type_ {
                PolicyType::Pods => start - p.value,
                PolicyType::Percent => {
                    (f64::from(start) * (1.0 - f64::from(p.value) / 100.0)) as i32
                }
            }
        });
        match rules.select_policy {
            // The biggest change: the lowest floor.
            SelectPolicy::Max => proposals.min().unwrap_or(current),
            SelectPolicy::Min => proposals.max().unwrap_or(current),
            SelectPolicy::Disabled => current,
        }
    }
}

impl Policy for HpaDefault {
    fn evaluate(&mut self, now: u64, seen: Observation) -> i32 {
        let current = seen.replicas;
        let (min, max) = (self.min_replicas, self.max_replicas);
        if current > max {
            return max;
        }
        if current < min {
            return min;
        }
        let Some(recommendation) = self.recommend(seen) else {
            return current;
        };

        // Stabilization.
        let window = |seconds: i32| {
            self.recommendations
                .iter()
                .filter(move |(t, _)| within(now, *t, seconds))
                .map(|(_, r)| *r)
                .chain(std::iter::once(recommendation))
        };
        let up = window(self.behavior.scale_up.stabilization_window_seconds)
            .min()
            .unwrap_or(recommendation);
        let down = window(self.behavior.scale_down.stabilization_window_seconds)
            .max()
            .unwrap_or(recommendation);
        let stabilized = current.max(up).min(down);
        self.recommendations.push_back((now, recommendation));

        // Rate limits and bounds.
        let desired = if stabilized > current {
            stabilized.min(max.min(self.up_limit(current, now).max(current)))
        } else if stabilized < current {
            stabilized.max(min.max(self.down_limit(current, now).min(current)))
        } else {
            stabilized
        };
        if desired > current {
            self.scale_ups.push_back((now, desired - current));
        } else if desired < current {
            self.scale_downs.push_back((now, current - desired));
        }
        for events in [
            &mut self.recommendations,
            &mut self.scale_ups,
            &mut self.scale_downs,
        ] {
            while events.front().is_some_and(|(t, _)| now - t > 3600) {
                events.pop_front();
            }
        }
        desired
    }
}

/// True when `t` lies within the last `seconds` before `now`.
fn within(now: u64, t: u64, seconds: i32) -> bool {
    now.saturating_sub(t) < seconds.max(0) as u64
}

/// Scores of one policy on one scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Metrics {
    pub overload_seconds: u64,
    pub pod_seconds: u64,
    pub scale_events: u64,
    pub reversals: u64,
}

/// The state of one second, for plots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// The Deployment's replicas (what the policy asked for).
    pub replicas: i32,
    /// Ready pods.
    pub ready: i32,
}

/// The outcome of one policy on one trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub metrics: Metrics,
    /// One sample per second of the trace.
    pub samples: Vec<Sample>,
}

/// Replicas that carry `load` at the target, within the bounds.
fn settled_replicas(spec: &AutoscalingSpec, load: u64) -> i32 {
    let target = spec.target_connections_per_pod.max(1) as u64;
    (load.div_ceil(target).min(i32::MAX as u64) as i32).clamp(spec.min_replicas, spec.max_replicas)
}

/// Runs `policy` on the per-second `load`.
pub fn simulate(
    load: &[u64],
    policy: &mut dyn Policy,
    spec: &AutoscalingSpec,
    model: &Model,
) -> Run {
    let interval = spec.interval_seconds.max(1) as u64;
    let reversal_window = spec.behavior.scale_down.stabilization_window_seconds;
    let capacity_per_pod = spec.target_connections_per_pod.max(0) as u64 * model.overload_percent;

    let mut ready = load
        .first()
        .map_or(spec.min_replicas, |l| settled_replicas(spec, *l));
    // Ready-at times of starting pods, oldest first; end times of draining pods.
    let mut starting: VecDeque<u64> = VecDeque::new();
    let mut draining: VecDeque<u64> = VecDeque::new();
    let mut metrics = Metrics::default();
    let mut last_scale: Option<(u64, i32)> = None;
    let mut samples = Vec::with_capacity(load.len());

    for (t, &connections) in load.iter().enumerate() {
        let t = t as u64;
        let promote = |starting: &mut VecDeque<u64>, ready: &mut i32| {
            while starting.front().is_some_and(|at| *at <= t) {
                starting.pop_front();
                *ready += 1;
            }
        };
        promote(&mut starting, &mut ready);
        while draining.front().is_some_and(|end| *end <= t) {
            draining.pop_front();
        }

        if t.is_multiple_of(interval) {
            let replicas = ready + starting.len() as i32;
            let seen = Observation {
                load: connections,
                replicas,
                ready,
                starting: starting.len() as i32,
            };
            let desired = policy.evaluate(t, seen);
            if desired != replicas {
                metrics.scale_events += 1;
                let direction = (desired - replicas).signum();
                if let Some((at, previous)) = last_scale
                    && previous != direction
                    && within(t, at, reversal_window)
                {
                    metrics.reversals += 1;
                }
                last_scale = Some((t, direction));
            }
            for _ in replicas..desired {
                starting.push_back(t + model.startup_seconds);
            }
            for _ in desired..replicas {
                if starting.pop_back().is_none() {
                    ready -= 1;
                    if model.drain_seconds > 0 {
                        draining.push_back(t + model.drain_seconds);
                    }
                }
            }
            promote(&mut starting, &mut ready);
        }

        metrics.pod_seconds += (ready.max(0) as usize + starting.len() + draining.len()) as u64;
        if connections * 100 > ready.max(0) as u64 * capacity_per_pod {
            metrics.overload_seconds += 1;
        }
        samples.push(Sample {
            replicas: ready + starting.len() as i32,
            ready,
        });
    }
    Run { metrics, samples }
}

/// Pods a clairvoyant policy needs at `load`: `ceil(load / (1.2 × target))`
/// within the bounds (see the module documentation).
pub fn oracle_pods(spec: &AutoscalingSpec, model: &Model, load: u64) -> i32 {
    let capacity = (spec.target_connections_per_pod.max(1) as u64 * model.overload_percent).max(1);
    ((load * 100).div_ceil(capacity).min(i32::MAX as u64) as i32)
        .clamp(spec.min_replicas, spec.max_replicas)
}

/// The least pod-seconds without overload: the sum of [`oracle_pods`].
pub fn oracle_pod_seconds(load: &[u64], spec: &AutoscalingSpec, model: &Model) -> u64 {
    load.iter()
        .map(|l| oracle_pods(spec, model, *l) as u64)
        .sum()
}

/// The result the command line prints with `--json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub scenario: String,
    pub oracle_pod_seconds: u64,
    pub chatscale: Metrics,
    pub hpa_default: Metrics,
}

/// Both policies on one scenario, with the per-second detail.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub report: Report,
    pub spec: AutoscalingSpec,
    pub model: Model,
    pub load: Vec<u64>,
    pub chatscale: Vec<Sample>,
    pub hpa_default: Vec<Sample>,
}

/// Runs `chatscale` and `hpa_default` on `scenario` under `model`.
pub fn compare(scenario: Scenario, model: &Model) -> Comparison {
    let spec = chatscale_spec();
    let load = scenario.trace(model.seed);
    let chatscale = simulate(&load, &mut Chatscale::new(spec.clone()), &spec, model);
    let hpa = simulate(&load, &mut HpaDefault::new(&spec), &spec, model);
    Comparison {
        report: Report {
            scenario: scenario.name().to_owned(),
            oracle_pod_seconds: oracle_pod_seconds(&load, &spec, model),
            chatscale: chatscale.metrics,
            hpa_default: hpa.metrics,
        },
        spec,
        model: *model,
        load,
        chatscale: chatscale.samples,
        hpa_default: hpa.samples,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(load: u64, ready: i32, starting: i32) -> Observation {
        Observation {
            load,
            replicas: ready + starting,
            ready,
            starting,
        }
    }

    #[test]
    fn hpa_replica_calculation() {
        let hpa = HpaDefault::new(&chatscale_spec());
        let cases: &[(&str, Observation, Option<i32>)] = &[
            ("at target keeps", seen(20_000, 4, 0), Some(4)),
            ("within tolerance keeps", seen(21_000, 4, 0), Some(4)),
            ("above grows to ceil", seen(30_000, 4, 0), Some(6)),
            ("below shrinks to ceil", seen(10_000, 4, 0), Some(2)),
            // Base ratio 2.0 over 2 ready pods; the starting pod at 0%:
            // 20000 / 3 pods = 1.33 of the target, so ceil(1.33 × 3) = 4.
            (
                "starting pods at 0% on scale-up",
                seen(20_000, 2, 1),
                Some(4),
            ),
            // Base ratio 1.2; with the 2 starting pods at 0%, 12000 / 4 pods
            // is 0.6: the direction would reverse, so nothing changes.
            ("no reversal by missing pods", seen(12_000, 2, 2), Some(4)),
            // Base ratio 0.5; the 2 starting pods at 100%: (10000 + 10000) / 6
            // pods is 0.67 of the target, so ceil(0.67 × 6) = 4.
            (
                "starting pods at 100% on scale-down",
                seen(10_000, 4, 2),
                Some(4),
            ),
            // Base ratio 1.5; with the starting pod at 0%, 15000 / 3 pods is
            // exactly the target: within the tolerance.
            (
                "recomputed within tolerance keeps",
                seen(15_000, 2, 1),
                Some(3),
            ),
            ("no ready pod, no metric", seen(15_000, 0, 3), None),
        ];
        for (name, observation, expected) in cases {
            assert_eq!(hpa.recommend(*observation), *expected, "{name}");
        }
    }

    #[test]
    fn hpa_default_rate_limits() {
        let mut hpa = HpaDefault::new(&chatscale_spec());
        // +max(100%, 4 pods) per 15 s: 2 -> 6 -> 12 -> 24.
        let mut current = 2;
        let mut steps = Vec::new();
        for i in 0..4 {
            current = hpa.evaluate(15 * i, seen(200_000, current, 0));
            steps.push(current);
        }
        assert_eq!(steps, [6, 12, 24, 40]);
    }

    #[test]
    fn hpa_default_scale_down_waits_for_the_window() {
        let mut hpa = HpaDefault::new(&chatscale_spec());
        let mut current = 8;
        let mut replicas = Vec::new();
        for i in 0..30u64 {
            let load = if i < 4 { 40_000 } else { 10_000 };
            current = hpa.evaluate(15 * i, seen(load, current, 0));
            replicas.push(current);
        }
        // The last recommendation of 8 (step 3) leaves the 300 s window at step 23.
        assert_eq!(
            replicas.iter().position(|r| *r < 8),
            Some(23),
            "{replicas:?}"
        );
        assert_eq!(*replicas.last().unwrap(), 2);
    }

    #[test]
    fn start_up_delay_and_overload() {
        // A policy that asks for 4 pods at once: 2 ready until second 30.
        struct Four;
        impl Policy for Four {
            fn evaluate(&mut self, _: u64, _: Observation) -> i32 {
                4
            }
        }
        let spec = chatscale_spec();
        let model = Model::default();
        // Settled at 2 pods for 10000 connections, then 20000 from second 1.
        let mut load = vec![20_000; 60];
        load[0] = 10_000;
        let run = simulate(&load, &mut Four, &spec, &model);
        assert_eq!(
            run.samples[29],
            Sample {
                replicas: 4,
                ready: 2
            }
        );
        assert_eq!(
            run.samples[30],
            Sample {
                replicas: 4,
                ready: 4
            }
        );
        // 20000 / 2 ready = 10000 > 6000 for seconds 1..30.
        assert_eq!(run.metrics.overload_seconds, 29);
        assert_eq!(run.metrics.pod_seconds, 4 * 60);
        assert_eq!(run.metrics.scale_events, 1);
    }

    #[test]
    fn drained_pods_cost_but_do_not_serve() {
        struct Shrink;
        impl Policy for Shrink {
            fn evaluate(&mut self, _: u64, _: Observation) -> i32 {
                2
            }
        }
        let spec = chatscale_spec();
        let model = Model::default();
        // Settled at 4 pods, then shrunk to 2 at second 0: 2 pods drain for 20 s.
        let load = vec![20_000; 40];
        let run = simulate(&load, &mut Shrink, &spec, &model);
        assert_eq!(
            run.samples[0],
            Sample {
                replicas: 2,
                ready: 2
            }
        );
        assert_eq!(run.metrics.pod_seconds, 2 * 40 + 2 * 20);
        assert_eq!(run.metrics.overload_seconds, 40);
    }

    #[test]
    fn oracle_is_ceil_at_120_percent() {
        let spec = chatscale_spec();
        let model = Model::default();
        assert_eq!(oracle_pods(&spec, &model, 0), 2);
        assert_eq!(oracle_pods(&spec, &model, 18_000), 3);
        assert_eq!(oracle_pods(&spec, &model, 18_001), 4);
        assert_eq!(oracle_pods(&spec, &model, 10_000_000), 50);
    }

    #[test]
    fn traces_are_deterministic_and_in_range() {
        for scenario in Scenario::ALL {
            let trace = scenario.trace(42);
            assert_eq!(trace, scenario.trace(42));
            assert!((3600..=7200).contains(&trace.len()), "{}", scenario.name());
        }
        let noisy = Scenario::NoisyPlateau.trace(42);
        assert!(noisy.iter().all(|l| (17_000..=23_000).contains(l)));
        assert_ne!(noisy, Scenario::NoisyPlateau.trace(7));
        let diurnal = Scenario::Diurnal.trace(0);
        assert_eq!(diurnal[0], 2000);
        assert_eq!(diurnal[3600], 40_000);
    }
}
