//! The HorizontalPodAutoscaler's algorithm with its default behavior, as the
//! baseline chatscale is compared with: the `Pods`-metric replica
//! calculation (`hpa_default`) and the behavior step (stabilization windows,
//! rate limits, bounds) that the `External`-metric HPA KEDA creates shares
//! (`keda`). Sources are listed in docs/autoscaling-sim.md.

use std::collections::VecDeque;

use super::policy::{Action, PodState, Policy, Removal, View};
use crate::api::{
    AutoscalingSpec, PolicyType, ScalingBehavior, ScalingPolicy, ScalingRules, SelectPolicy,
};

/// kube-controller-manager's `--horizontal-pod-autoscaler-tolerance` default.
pub const HPA_TOLERANCE: f64 = 0.1;

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

/// What the `Pods`-metric calculation reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// Connections of the ready pods (the pods with a metric).
    pub load: u64,
    /// The Deployment's replicas.
    pub replicas: i32,
    /// Ready pods.
    pub ready: i32,
    /// Pods not ready yet (no connections, no metric).
    pub starting: i32,
}

/// An emulation of the HorizontalPodAutoscaler controller scaling on a
/// `Pods` metric (connections per pod, `averageValue` target) with the
/// default `behavior`.
///
/// Replica calculation ("Algorithm details" of the HPA documentation, and
/// the controller's `calcPlainMetricReplicas` where the page is not precise):
///
/// 1. Pods being deleted (here: terminating) are ignored. The "not yet
///    ready" set-aside is documented for CPU only; for a custom pod metric
///    a pod that does not report yet, such as a starting chat server, is a
///    pod with a *missing metric*, and it is set aside.
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
/// Then the behavior ([`HpaDefault::behave`], the controller's
/// `normalizeDesiredReplicasWithBehaviors`): the raw recommendation is
/// stabilized between the lowest of the scale-up window and the highest of
/// the scale-down window (windows include the current recommendation; a
/// sample counts while `now - t < window`), then limited by the policies
/// relative to the replicas at the start of each policy's period (current
/// minus pods added plus pods removed within the period), and finally kept
/// within `[minReplicas, maxReplicas]`. Averages use the controller's
/// integer milli-units, so rounding is the controller's too.
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
    /// Uses the sizes and target of `spec`, and the HPA's own tolerance
    /// ([`HPA_TOLERANCE`]) and default behavior, whatever `spec` says.
    pub fn new(spec: &AutoscalingSpec) -> Self {
        Self {
            min_replicas: spec.min_replicas,
            max_replicas: spec.max_replicas,
            target: i64::from(spec.target_connections_per_pod),
            tolerance: HPA_TOLERANCE,
            behavior: hpa_default_behavior(),
            recommendations: VecDeque::new(),
            scale_ups: VecDeque::new(),
            scale_downs: VecDeque::new(),
        }
    }

    /// The target, per pod.
    pub fn target(&self) -> i64 {
        self.target
    }

    /// The tolerance.
    pub fn tolerance(&self) -> f64 {
        self.tolerance
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

    /// One evaluation on a `Pods` metric: [`Self::recommend`], then [`Self::behave`].
    pub fn scale(&mut self, now: u64, seen: Observation) -> i32 {
        let recommendation = self.recommend(seen);
        self.behave(now, seen.replicas, recommendation)
    }

    /// The behavior step: from `current` replicas (`spec.replicas`) and the
    /// raw `recommendation` (`None`: no metric, no change) to the replicas
    /// the controller sets.
    pub fn behave(&mut self, now: u64, current: i32, recommendation: Option<i32>) -> i32 {
        let (min, max) = (self.min_replicas, self.max_replicas);
        if current > max {
            return max;
        }
        if current < min {
            return min;
        }
        let Some(recommendation) = recommendation else {
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

/// The HPA reads the per-pod metric of the pods that are not being deleted;
/// only ready pods report one.
impl Policy for HpaDefault {
    fn removal(&self) -> Removal {
        Removal::Delete
    }

    fn evaluate(&mut self, now: u64, view: &View) -> Action {
        let seen = Observation {
            load: view.connections(&[PodState::Ready]),
            replicas: view.replicas,
            ready: view.count(PodState::Ready) as i32,
            starting: view.count(PodState::Starting) as i32,
        };
        Action {
            replicas: self.scale(now, seen),
            sheds: Vec::new(),
        }
    }
}

/// True when `t` lies within the last `seconds` before `now`.
fn within(now: u64, t: u64, seconds: i32) -> bool {
    now.saturating_sub(t) < seconds.max(0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autoscaler::sim::chatscale_spec;

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
            current = hpa.scale(15 * i, seen(200_000, current, 0));
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
            current = hpa.scale(15 * i, seen(load, current, 0));
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
    fn the_hpa_keeps_its_own_tolerance() {
        let mut spec = chatscale_spec();
        spec.tolerance = 0.3;
        let hpa = HpaDefault::new(&spec);
        assert_eq!(hpa.tolerance(), HPA_TOLERANCE);
        assert_eq!(hpa.recommend(seen(24_000, 4, 0)), Some(5));
    }
}
