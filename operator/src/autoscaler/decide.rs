//! The scaling decision, with the HorizontalPodAutoscaler's semantics:
//!
//! 1. Each signal recommends a count from the load per current pod. Within
//!    `tolerance` of the target it recommends the current count. Above, it
//!    recommends `ceil(load / target)`, as the HPA does. Below, it recommends
//!    `ceil(load / (target × (1 − tolerance)))`: unlike the HPA, a scale-down
//!    leaves each remaining pod at most at the low edge of the band, so that
//!    going back up needs the load to rise more than `(1 + tol) / (1 − tol)`
//!    (22% at the default 0.1) above the peak of the scale-down window. This
//!    is what keeps a noisy plateau from scaling down and straight back up.
//!    The recommendation is the largest over the signals.
//!    Connections are sticky, so the total is not the whole story: a pod
//!    can be overloaded while the mean is fine (its clients arrived before
//!    a scale-up). Rebalancing moves them (see `rebalance`); when it cannot
//!    (`rebalance.enabled: false`), the busiest pod is a signal
//!    of its own when it is both above the band and above the band around
//!    the mean: it recommends the pods for the total plus
//!    `ceil((busiest − target) / target)`, room for its surplus, so that new
//!    sessions land elsewhere while its old ones end. This never compounds:
//!    it depends on the total and the busiest pod, not on the current count.
//!    Load is the cluster total, so pods that are still starting (and carry
//!    no connections yet) change nothing: they count neither as load nor as
//!    missing metrics; only ready pods that fail to report count as missing.
//! 2. Missing or stale metrics never lower the count: the recommendation is
//!    at least the current count.
//! 3. Stabilization: scaling down goes only to the highest recommendation of
//!    the scale-down window, scaling up only to the lowest of the scale-up window.
//!    Until the history spans the scale-down window (after an operator
//!    restart), the current count is taken as recommended: no early shrink.
//! 4. Step policies bound the change per period relative to the count at the
//!    start of that period (`Pods` or `Percent`, combined by `selectPolicy`).
//! 5. The result is always within [minReplicas, maxReplicas].

use std::collections::VecDeque;

use super::rebalance::Load;
use crate::api::{AutoscalingSpec, PolicyType, ScalingRules, SelectPolicy};

/// What the collector saw at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Signals {
    /// Total Socket.IO connections; `None` when a ready pod did not report.
    pub connections: Option<u64>,
    /// Redis operations per second; `None` when Redis could not be read.
    pub redis_ops: Option<f64>,
    /// The busiest ready pod, when rebalancing cannot move its connections
    /// (it is disabled); `None` when rebalancing can (then the total is enough).
    pub stuck: Option<Busiest>,
}

/// The busiest of the ready pods.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Busiest {
    /// Its connections.
    pub connections: u64,
    /// How many ready pods share the total.
    pub ready: u32,
}

impl Busiest {
    /// The busiest of `pods` (the pods that serve), if any.
    pub fn of<P>(pods: &[Load<P>]) -> Option<Self> {
        pods.iter()
            .map(|l| l.connections)
            .max()
            .map(|connections| Self {
                connections,
                ready: pods.len() as u32,
            })
    }
}

impl Signals {
    /// Total connections (if known) and Redis ops/s; nothing is stuck.
    pub fn new(connections: Option<u64>, redis_ops: Option<f64>) -> Self {
        Self {
            connections,
            redis_ops,
            stuck: None,
        }
    }
}

/// Past recommendations and scale events, for windows and step limits.
#[derive(Debug, Default, Clone)]
pub struct History {
    recommendations: VecDeque<(u64, i32)>,
    scales: VecDeque<(u64, i32)>,
}

impl History {
    /// Records a decision taken at `now` (seconds) from `current` replicas.
    pub fn record(&mut self, now: u64, current: i32, decision: &Decision) {
        self.recommendations
            .push_back((now, decision.recommendation));
        if decision.desired != current {
            self.scales.push_back((now, decision.desired - current));
        }
        // Nothing looks further back than an hour.
        while self
            .recommendations
            .front()
            .is_some_and(|(t, _)| now - t > 3600)
        {
            self.recommendations.pop_front();
        }
        while self.scales.front().is_some_and(|(t, _)| now - t > 3600) {
            self.scales.pop_front();
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Replicas to run now.
    pub desired: i32,
    /// What the signals alone asked for (before windows and step limits).
    pub recommendation: i32,
    /// Why, for status and Events.
    pub reason: String,
}

pub fn decide(
    spec: &AutoscalingSpec,
    now: u64,
    current: i32,
    signals: Signals,
    history: &History,
) -> Decision {
    let (min, max) = (spec.min_replicas, spec.max_replicas);
    let (mut recommendation, mut reason) = recommend(spec, current, signals);
    let missing = signals.connections.is_none()
        || (spec.target_redis_ops_per_pod > 0 && signals.redis_ops.is_none());
    if missing && recommendation <= current {
        recommendation = current;
        reason = "metrics missing: holding (never scale down blind)".into();
    }
    recommendation = recommendation.clamp(min, max);

    // Stabilization windows over past recommendations, this one included.
    let window = |seconds: i32| {
        history
            .recommendations
            .iter()
            .filter(move |(t, _)| within(now, *t, seconds))
            .map(|(_, r)| *r)
            .chain(std::iter::once(recommendation))
    };
    let up_to = window(spec.behavior.scale_up.stabilization_window_seconds)
        .min()
        .unwrap_or(recommendation);
    let down_window = spec.behavior.scale_down.stabilization_window_seconds;
    let mut down_to = window(down_window).max().unwrap_or(recommendation);
    // Until the history spans the whole scale-down window (a restarted
    // operator), the current count counts as recommended: no blind shrink.
    let covered = down_window <= 0
        || history
            .recommendations
            .front()
            .is_some_and(|(t, _)| now.saturating_sub(*t) >= down_window as u64);
    if !covered {
        down_to = down_to.max(current);
    }
    let mut desired = current;
    if desired < up_to {
        desired = up_to;
    }
    if desired > down_to {
        desired = down_to;
    }
    if desired != recommendation && desired == current {
        reason = format!("{reason}; held by the stabilization window");
    }

    // Step limits.
    if desired > current {
        let limit = up_limit(&spec.behavior.scale_up, current, now, history);
        if desired > limit {
            desired = limit;
            reason = format!("{reason}; scale-up limited to {limit} by policy");
        }
    } else if desired < current {
        let limit = down_limit(&spec.behavior.scale_down, current, now, history);
        if desired < limit {
            desired = limit;
            reason = format!("{reason}; scale-down limited to {limit} by policy");
        }
    }
    Decision {
        desired: desired.clamp(min, max),
        recommendation,
        reason,
    }
}

/// Step 1: what the signals ask for.
fn recommend(spec: &AutoscalingSpec, current: i32, signals: Signals) -> (i32, String) {
    let mut asks = Vec::new();
    if let Some(connections) = signals.connections {
        asks.push((
            "connections",
            connections as f64,
            f64::from(spec.target_connections_per_pod),
        ));
    }
    if let (Some(ops), true) = (signals.redis_ops, spec.target_redis_ops_per_pod > 0) {
        asks.push(("Redis ops/s", ops, f64::from(spec.target_redis_ops_per_pod)));
    }
    let mut best = (current, format!("no signal: keep {current}"));
    let mut first = true;
    for (what, load, target) in asks {
        let per_pod = if current > 0 {
            load / f64::from(current)
        } else {
            f64::INFINITY
        };
        let ratio = per_pod / target;
        let wanted = if (ratio - 1.0).abs() <= spec.tolerance {
            current
        } else if ratio > 1.0 {
            (load / target).ceil() as i32
        } else {
            // Scale down only as far as keeps the load at the low edge of
            // the tolerance band: the new count is not itself out of band
            // the other way, so a scale-up needs a real rise (see module docs).
            ((load / (target * (1.0 - spec.tolerance))).ceil() as i32).min(current)
        };
        if first || wanted > best.0 {
            best = (
                wanted,
                format!("{what} {load:.0} at {target:.0} per pod: {wanted} pods"),
            );
            first = false;
        }
    }
    if let Some((wanted, why)) = for_the_busiest(spec, signals)
        && wanted > best.0
    {
        best = (wanted, why);
    }
    best
}

/// The busiest pod's own recommendation, when its connections are stuck
/// (see the module documentation).
fn for_the_busiest(spec: &AutoscalingSpec, signals: Signals) -> Option<(i32, String)> {
    let (total, busiest) = (signals.connections?, signals.stuck?);
    let target = f64::from(spec.target_connections_per_pod.max(1));
    let hot = busiest.connections as f64;
    let mean = total as f64 / f64::from(busiest.ready.max(1));
    let band = 1.0 + spec.tolerance;
    if hot <= target * band || hot <= mean * band {
        return None;
    }
    let wanted = (total as f64 / target).ceil() + ((hot - target) / target).ceil();
    let wanted = wanted.min(f64::from(i32::MAX)) as i32;
    Some((
        wanted,
        format!(
            "busiest pod {hot:.0} at {target:.0} per pod (mean {mean:.0}) and rebalancing cannot move it: {wanted} pods"
        ),
    ))
}

/// True when `t` lies within the last `seconds` before `now`.
fn within(now: u64, t: u64, seconds: i32) -> bool {
    now.saturating_sub(t) < seconds.max(0) as u64
}

/// Replicas at the start of `period` before changes in direction `sign`.
fn start_of_period(current: i32, now: u64, period: i32, sign: i32, history: &History) -> i32 {
    let changed: i32 = history
        .scales
        .iter()
        .filter(|(t, delta)| within(now, *t, period) && delta.signum() == sign)
        .map(|(_, delta)| *delta)
        .sum();
    current - changed
}

fn up_limit(rules: &ScalingRules, current: i32, now: u64, history: &History) -> i32 {
    let limits = rules.policies.iter().map(|p| {
        let base = start_of_period(current, now, p.period_seconds, 1, history);
        match p.type_ {
            PolicyType::Pods => base + p.value,
            PolicyType::Percent => {
                (f64::from(base) * (1.0 + f64::from(p.value) / 100.0)).ceil() as i32
            }
        }
    });
    match rules.select_policy {
        SelectPolicy::Max => limits.max().unwrap_or(i32::MAX),
        SelectPolicy::Min => limits.min().unwrap_or(i32::MAX),
        SelectPolicy::Disabled => current,
    }
    .max(current)
}

fn down_limit(rules: &ScalingRules, current: i32, now: u64, history: &History) -> i32 {
    let limits = rules.policies.iter().map(|p| {
        let base = start_of_period(current, now, p.period_seconds, -1, history);
        match p.type_ {
            PolicyType::Pods => base - p.value,
            PolicyType::Percent => {
                (f64::from(base) * (1.0 - f64::from(p.value) / 100.0)).floor() as i32
            }
        }
    });
    match rules.select_policy {
        // The policy that allows the biggest change: the lowest floor.
        SelectPolicy::Max => limits.min().unwrap_or(0),
        SelectPolicy::Min => limits.max().unwrap_or(0),
        SelectPolicy::Disabled => current,
    }
    .min(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ScalingPolicy, ScalingRules};
    use proptest::prelude::*;

    fn spec() -> AutoscalingSpec {
        AutoscalingSpec {
            min_replicas: 2,
            max_replicas: 20,
            target_connections_per_pod: 1000,
            target_redis_ops_per_pod: 0,
            ..Default::default()
        }
    }

    fn seen(connections: u64) -> Signals {
        Signals::new(Some(connections), None)
    }

    /// Runs decisions every 15 s; returns the replica counts.
    fn run(spec: &AutoscalingSpec, start: i32, loads: &[Option<u64>]) -> Vec<i32> {
        let mut history = History::default();
        let mut current = start;
        let mut out = Vec::new();
        for (i, load) in loads.iter().enumerate() {
            let now = 15 * i as u64;
            let decision = decide(spec, now, current, Signals::new(*load, None), &history);
            history.record(now, current, &decision);
            current = decision.desired;
            out.push(current);
        }
        out
    }

    #[test]
    fn table() {
        let cases: &[(&str, i32, u64, i32)] = &[
            ("load at target keeps", 4, 4000, 4),
            ("within tolerance keeps", 4, 4300, 4),
            ("above tolerance grows", 4, 6000, 6),
            ("grows at most +100% or +4 per period", 2, 50_000, 6),
            ("never above max", 10, 1_000_000, 20),
            ("never below min", 2, 0, 2),
            ("below min is raised to min", 1, 0, 2),
        ];
        for (name, current, connections, expected) in cases {
            let decision = decide(
                &spec(),
                1000,
                *current,
                seen(*connections),
                &History::default(),
            );
            assert_eq!(decision.desired, *expected, "{name}: {}", decision.reason);
        }
    }

    #[test]
    fn scale_down_recommends_the_low_edge_of_the_band() {
        // (current, connections, recommended): 1000 per pod, tolerance 0.1.
        for (current, connections, expected) in [(10, 4500, 5), (10, 4501, 6), (7, 6000, 7)] {
            let decision = decide(&spec(), 0, current, seen(connections), &History::default());
            assert_eq!(decision.recommendation, expected, "{}", decision.reason);
        }
    }

    #[test]
    fn redis_ops_can_drive_scaling() {
        let spec = AutoscalingSpec {
            target_redis_ops_per_pod: 500,
            ..spec()
        };
        let signals = Signals::new(Some(1000), Some(4000.0));
        let decision = decide(&spec, 0, 2, signals, &History::default());
        assert_eq!(decision.desired, 6, "{}", decision.reason);
        assert!(decision.reason.contains("Redis"));
    }

    #[test]
    fn missing_metrics_never_scale_down() {
        let decision = decide(&spec(), 0, 8, Signals::new(None, None), &History::default());
        assert_eq!(decision.desired, 8);
        assert!(decision.reason.contains("missing"));
    }

    #[test]
    fn a_stuck_busy_pod_asks_for_room_for_its_surplus() {
        // 10000 connections on 4 pods (mean 2500), one of them with 7000:
        // the total asks for 10 pods' worth / 1000 = 10; the surplus of
        // 6000 over the target asks for 6 more.
        let stuck = |connections| Signals {
            stuck: Some(Busiest {
                connections,
                ready: 4,
            }),
            ..seen(10_000)
        };
        let decision = decide(&spec(), 0, 4, stuck(7000), &History::default());
        assert_eq!(decision.recommendation, 16, "{}", decision.reason);
        assert!(decision.reason.contains("busiest"), "{}", decision.reason);
        // Within the band of the target: the total alone decides.
        let decision = decide(&spec(), 0, 10, stuck(1050), &History::default());
        assert_eq!(decision.recommendation, 10, "{}", decision.reason);
        // Rebalancing can move it: the total alone decides.
        let decision = decide(&spec(), 0, 4, seen(10_000), &History::default());
        assert_eq!(decision.recommendation, 10, "{}", decision.reason);
    }

    #[test]
    fn a_busy_pod_in_a_balanced_cluster_is_the_totals_business() {
        // Every pod at 1200: the busiest is at the mean, so it adds nothing.
        let signals = Signals {
            stuck: Some(Busiest {
                connections: 1200,
                ready: 4,
            }),
            ..seen(4800)
        };
        let decision = decide(&spec(), 0, 4, signals, &History::default());
        assert_eq!(decision.recommendation, 5, "{}", decision.reason);
    }

    #[test]
    fn scale_down_waits_for_the_window() {
        // Load drops from 8000 to 2000 connections: the 300 s window holds 8 pods.
        let mut loads = vec![Some(8000); 4];
        loads.extend(vec![Some(2000); 30]);
        let replicas = run(&spec(), 8, &loads);
        let first_drop = replicas.iter().position(|r| *r < 8).unwrap();
        // The drop comes once the last high recommendation (step 3) is 300 s
        // (20 steps) old and so out of the window. It goes to 3, not 2: 2000
        // connections on 3 pods is at most 90% of the target (the hysteresis).
        assert_eq!(first_drop, 3 + 20, "{replicas:?}");
        assert_eq!(*replicas.last().unwrap(), 3);
    }

    #[test]
    fn pods_policy_limits_scale_down_steps() {
        let mut spec = spec();
        spec.behavior.scale_down = ScalingRules {
            stabilization_window_seconds: 0,
            select_policy: SelectPolicy::Max,
            policies: vec![ScalingPolicy {
                type_: PolicyType::Pods,
                value: 1,
                period_seconds: 60,
            }],
        };
        let replicas = run(&spec, 10, &[Some(0); 12]);
        // One pod per minute: steps of 15 s, so a pod every fourth step.
        assert_eq!(replicas, [9, 9, 9, 9, 8, 8, 8, 8, 7, 7, 7, 7]);
    }

    #[test]
    fn disabled_scale_down_never_shrinks() {
        let mut spec = spec();
        spec.behavior.scale_down.select_policy = SelectPolicy::Disabled;
        spec.behavior.scale_down.stabilization_window_seconds = 0;
        assert!(run(&spec, 10, &[Some(0); 10]).iter().all(|r| *r == 10));
    }

    #[test]
    fn a_small_rise_after_a_scale_down_does_not_scale_back_up() {
        // The case proptest found against the HPA's rule: 6 pods, one sample
        // 11.6% above 6000 (up to 7), a flat 6000 (HPA: down to 6 after the
        // window), then one sample 12.9% above (HPA: up to 7 again, 255 s
        // after the scale-down). With the hysteresis, 7 pods stay.
        let mut loads = vec![Some(6698)];
        loads.extend(vec![Some(6000); 36]);
        loads.push(Some(6775));
        loads.extend(vec![Some(6000); 2]);
        let replicas = run(&spec(), 6, &loads);
        assert_eq!(replicas[0], 7);
        assert!(replicas.iter().all(|r| *r == 7), "{replicas:?}");
    }

    proptest! {
        #[test]
        fn always_within_bounds_and_never_down_blind(
            start in 1i32..30,
            loads in proptest::collection::vec(proptest::option::weighted(0.9, 0u64..40_000), 1..60),
        ) {
            let spec = spec();
            let mut history = History::default();
            let mut current = start;
            for (i, load) in loads.iter().enumerate() {
                let now = 15 * i as u64;
                let decision = decide(&spec, now, current, Signals::new(*load, None), &history);
                prop_assert!(decision.desired >= spec.min_replicas && decision.desired <= spec.max_replicas);
                if load.is_none() && current >= spec.min_replicas && current <= spec.max_replicas {
                    prop_assert!(decision.desired >= current, "scaled down without metrics");
                }
                // Default step limits: at most +max(100%, 4 pods) per 15 s.
                if decision.desired > current {
                    prop_assert!(decision.desired <= (current * 2).max(current + 4).max(spec.min_replicas));
                }
                history.record(now, current, &decision);
                current = decision.desired;
            }
        }

        #[test]
        fn no_reversal_inside_the_scale_down_window_under_noisy_plateau(
            noise in proptest::collection::vec(-0.25f64..0.25, 40..80),
        ) {
            // A plateau of 6000 connections with +-25% noise: beyond the tolerance, so
            // the policy does scale, but never back within the scale-down window.
            let loads: Vec<Option<u64>> = noise.iter().map(|n| Some((6000.0 * (1.0 + n)) as u64)).collect();
            let replicas = run(&spec(), 6, &loads);
            let mut last_change: Option<(usize, i32)> = None;
            let mut previous = 6;
            for (i, r) in replicas.iter().enumerate() {
                if *r != previous {
                    let direction = (*r - previous).signum();
                    if let Some((at, was)) = last_change {
                        prop_assert!(!(was != direction && (i - at) * 15 < 300), "reversal at step {i}: {replicas:?}");
                    }
                    last_change = Some((i, direction));
                    previous = *r;
                }
            }
        }
    }
}
