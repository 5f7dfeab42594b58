//! Rebalancing, the decision (pure): which ready pods shed how many
//! connections. Connections are sticky, so after a scale-up the old pods keep
//! theirs and only new sessions reach the new pods; a pod that stays more
//! than `deadZonePercent` above the mean of the ready pods for `afterSeconds`
//! is asked to shed until it is halfway back into the zone
//! (`mean × (1 + deadZone / 2)`), at `connectionsPerSecond`. While it sheds
//! it refuses new sessions, so the clients it lets go land on other pods.
//! Never while a scale-down drains (its clients are moving already), never
//! with fewer than two ready pods, never twice at once on one pod.
//!
//! The controller (`control`) and the simulator (`sim`) both act on [`plan`].

use std::{collections::HashMap, hash::Hash};

use crate::api::RebalanceSpec;

/// One ready pod's load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Load<P> {
    pub pod: P,
    pub connections: u64,
    /// It sheds already.
    pub shedding: bool,
}

/// A request to one pod: close this many connections at this rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shed<P> {
    pub pod: P,
    pub connections: u64,
    pub per_second: u32,
}

/// The zone around the mean of the ready pods.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Zone {
    pub mean: f64,
    /// Above this a pod is out of the zone.
    pub upper: f64,
    /// A pod that sheds goes down to this many connections.
    pub back_to: u64,
}

impl Zone {
    /// The zone of `pods` (ready pods), or `None` for fewer than two.
    pub fn of<P>(spec: &RebalanceSpec, pods: &[Load<P>]) -> Option<Self> {
        if pods.len() < 2 {
            return None;
        }
        let mean = pods.iter().map(|p| p.connections).sum::<u64>() as f64 / pods.len() as f64;
        let dead_zone = f64::from(spec.dead_zone_percent.max(0)) / 100.0;
        Some(Self {
            mean,
            upper: mean * (1.0 + dead_zone),
            back_to: (mean * (1.0 + dead_zone / 2.0)).floor() as u64,
        })
    }

    pub fn above(&self, connections: u64) -> bool {
        connections as f64 > self.upper
    }
}

/// Since when each pod has been above the zone (the state `afterSeconds` needs).
#[derive(Debug, Clone)]
pub struct Imbalance<P> {
    above_since: HashMap<P, u64>,
}

impl<P> Default for Imbalance<P> {
    fn default() -> Self {
        Self {
            above_since: HashMap::new(),
        }
    }
}

impl<P: Clone + Eq + Hash> Imbalance<P> {
    /// Records what an evaluation at `now` saw: pods above the zone keep (or
    /// get) their first time above; every other pod is forgotten.
    pub fn observe(&mut self, spec: &RebalanceSpec, now: u64, pods: &[Load<P>]) {
        let Some(zone) = Zone::of(spec, pods) else {
            self.above_since.clear();
            return;
        };
        let above: HashMap<P, u64> = pods
            .iter()
            .filter(|p| zone.above(p.connections))
            .map(|p| {
                let since = self.above_since.get(&p.pod).copied().unwrap_or(now);
                (p.pod.clone(), since)
            })
            .collect();
        self.above_since = above;
    }

    /// Counts `pod` as above the zone only from `now` on: after it was asked
    /// to shed, a pod still (or again) above the zone waits `afterSeconds`
    /// before it is asked again.
    pub fn restart(&mut self, pod: &P, now: u64) {
        if let Some(since) = self.above_since.get_mut(pod) {
            *since = now;
        }
    }

    /// True when `pod` has been above the zone for `seconds` or more.
    fn above_for(&self, pod: &P, now: u64, seconds: u64) -> bool {
        self.above_since
            .get(pod)
            .is_some_and(|since| now.saturating_sub(*since) >= seconds)
    }
}

/// The pods that shed now, and how much (see the module documentation).
/// `draining`: a scale-down drain runs.
pub fn plan<P: Clone + Eq + Hash>(
    spec: &RebalanceSpec,
    now: u64,
    pods: &[Load<P>],
    imbalance: &Imbalance<P>,
    draining: bool,
) -> Vec<Shed<P>> {
    if !spec.enabled || draining {
        return Vec::new();
    }
    let Some(zone) = Zone::of(spec, pods) else {
        return Vec::new();
    };
    let after = spec.after_seconds.max(0) as u64;
    pods.iter()
        .filter(|p| !p.shedding && zone.above(p.connections))
        .filter(|p| imbalance.above_for(&p.pod, now, after))
        .map(|p| Shed {
            pod: p.pod.clone(),
            connections: p.connections.saturating_sub(zone.back_to),
            per_second: spec.connections_per_second.max(1) as u32,
        })
        .filter(|shed| shed.connections > 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn loads(connections: &[u64]) -> Vec<Load<usize>> {
        connections
            .iter()
            .enumerate()
            .map(|(pod, c)| Load {
                pod,
                connections: *c,
                shedding: false,
            })
            .collect()
    }

    fn spec() -> RebalanceSpec {
        RebalanceSpec {
            after_seconds: 30,
            ..RebalanceSpec::default()
        }
    }

    /// Observes `pods` at 0 and at `now`, then plans at `now`.
    fn planned(pods: &[Load<usize>], now: u64, draining: bool) -> Vec<Shed<usize>> {
        let mut imbalance = Imbalance::default();
        imbalance.observe(&spec(), 0, pods);
        imbalance.observe(&spec(), now, pods);
        plan(&spec(), now, pods, &imbalance, draining)
    }

    #[test]
    fn a_pod_above_the_zone_sheds_halfway_back_into_it() {
        // Mean 20, zone up to 23, back to 21: each old pod sheds 9.
        let sheds = planned(&loads(&[30, 30, 0]), 30, false);
        assert_eq!(
            sheds,
            [0, 1].map(|pod| Shed {
                pod,
                connections: 9,
                per_second: 50
            })
        );
    }

    #[test]
    fn nobody_sheds_too_early_while_draining_when_disabled_or_alone() {
        let pods = loads(&[30, 30, 0]);
        assert!(planned(&pods, 29, false).is_empty(), "after 29 s of 30");
        assert!(planned(&pods, 30, true).is_empty(), "a drain runs");
        let mut off = spec();
        off.enabled = false;
        let mut imbalance = Imbalance::default();
        imbalance.observe(&off, 0, &pods);
        assert!(plan(&off, 60, &pods, &imbalance, false).is_empty());
        assert!(planned(&loads(&[100]), 60, false).is_empty(), "one pod");
    }

    #[test]
    fn a_pod_that_sheds_is_not_asked_again_and_a_pod_back_in_the_zone_starts_over() {
        let mut pods = loads(&[30, 30, 0]);
        pods[0].shedding = true;
        let sheds = planned(&pods, 30, false);
        assert_eq!(sheds.iter().map(|s| s.pod).collect::<Vec<_>>(), [1]);

        let mut imbalance = Imbalance::default();
        imbalance.observe(&spec(), 0, &loads(&[30, 30, 0]));
        imbalance.observe(&spec(), 15, &loads(&[20, 20, 20]));
        imbalance.observe(&spec(), 30, &loads(&[30, 30, 0]));
        assert!(
            plan(&spec(), 30, &loads(&[30, 30, 0]), &imbalance, false).is_empty(),
            "above again since 30 s only"
        );
    }

    proptest! {
        #[test]
        fn shedding_brings_each_pod_into_the_zone_and_moves_no_more_than_its_surplus(
            connections in proptest::collection::vec(0u64..20_000, 2..12),
        ) {
            let pods = loads(&connections);
            let zone = Zone::of(&spec(), &pods).unwrap();
            let sheds = planned(&pods, 30, false);
            for shed in &sheds {
                let before = connections[shed.pod];
                prop_assert!(zone.above(before), "{shed:?} was in the zone");
                let after = before - shed.connections;
                prop_assert!(!zone.above(after), "{shed:?} still above {zone:?}");
                prop_assert!(after as f64 >= zone.mean.floor(), "{shed:?} went below the mean {zone:?}");
            }
            // Every pod out of the zone sheds.
            let out = connections.iter().filter(|c| zone.above(**c)).count();
            prop_assert_eq!(sheds.len(), out);
            prop_assert!(planned(&pods, 30, true).is_empty());
        }
    }
}
