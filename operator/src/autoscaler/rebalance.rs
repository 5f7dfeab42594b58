//! Rebalancing, the decision (pure): which ready pods stop taking new
//! sessions, and which shed connections. Connections are sticky, so after a
//! scale-up the old pods keep theirs and only new sessions reach the new
//! pods. A pod more than `deadZonePercent` above the mean of the ready pods
//! is a donor:
//!
//! 1. at once, it refuses new sessions, so every new session lands on the
//!    other pods: free, nobody reconnects, and with sessions arriving all
//!    the time it often restores the balance by itself;
//! 2. if it is still above the zone after `afterSeconds`, it also sheds, at
//!    `connectionsPerSecond`, until it is halfway back into the zone
//!    (`mean × (1 + deadZone / 2)`); its clients reconnect to other pods.
//!
//! A [`Shed`] with `connections: 0` is step 1 alone. The orders are restated
//! at every evaluation (a new order replaces the one in progress, and a
//! refusal lasts only a while), so a pod back in the zone just stops being
//! asked. Never while a scale-down drains (its clients are moving already),
//! never with fewer than two ready pods.
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

/// A request to one pod: refuse new sessions, and close this many
/// connections (0: none) at this rate.
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

    /// True when `pod` has been above the zone for `seconds` or more.
    fn above_for(&self, pod: &P, now: u64, seconds: u64) -> bool {
        self.above_since
            .get(pod)
            .is_some_and(|since| now.saturating_sub(*since) >= seconds)
    }
}

/// The pods that refuse or shed now, and how much (see the module documentation).
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
        .filter(|p| zone.above(p.connections))
        .map(|p| Shed {
            pod: p.pod.clone(),
            connections: if imbalance.above_for(&p.pod, now, after) {
                p.connections.saturating_sub(zone.back_to)
            } else {
                0
            },
            per_second: spec.connections_per_second.max(1) as u32,
        })
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

    fn asked(sheds: &[Shed<usize>]) -> Vec<(usize, u64)> {
        sheds.iter().map(|s| (s.pod, s.connections)).collect()
    }

    #[test]
    fn a_pod_above_the_zone_refuses_at_once_and_sheds_halfway_back_after_a_while() {
        // Mean 20, zone up to 23, back to 21.
        let pods = loads(&[30, 30, 0]);
        assert_eq!(
            asked(&planned(&pods, 29, false)),
            [(0, 0), (1, 0)],
            "refuse only"
        );
        let sheds = planned(&pods, 30, false);
        assert_eq!(asked(&sheds), [(0, 9), (1, 9)]);
        assert!(sheds.iter().all(|s| s.per_second == 50));
    }

    #[test]
    fn nobody_is_asked_while_draining_when_disabled_alone_or_in_the_zone() {
        let pods = loads(&[30, 30, 0]);
        assert!(planned(&pods, 30, true).is_empty(), "a drain runs");
        let mut off = spec();
        off.enabled = false;
        let mut imbalance = Imbalance::default();
        imbalance.observe(&off, 0, &pods);
        assert!(plan(&off, 60, &pods, &imbalance, false).is_empty());
        assert!(planned(&loads(&[100]), 60, false).is_empty(), "one pod");
        assert!(planned(&loads(&[22, 20, 18]), 60, false).is_empty());
    }

    #[test]
    fn a_pod_back_in_the_zone_starts_over() {
        let mut imbalance = Imbalance::default();
        imbalance.observe(&spec(), 0, &loads(&[30, 30, 0]));
        imbalance.observe(&spec(), 15, &loads(&[20, 20, 20]));
        imbalance.observe(&spec(), 30, &loads(&[30, 30, 0]));
        let sheds = plan(&spec(), 30, &loads(&[30, 30, 0]), &imbalance, false);
        assert_eq!(
            asked(&sheds),
            [(0, 0), (1, 0)],
            "above again since 30 s only"
        );
    }

    proptest! {
        #[test]
        fn a_shed_brings_its_pod_into_the_zone_and_moves_no_more_than_its_surplus(
            connections in proptest::collection::vec(0u64..20_000, 2..12),
        ) {
            let pods = loads(&connections);
            let zone = Zone::of(&spec(), &pods).unwrap();
            let sheds = planned(&pods, 30, false);
            for shed in sheds.iter().filter(|s| s.connections > 0) {
                let before = connections[shed.pod];
                prop_assert!(zone.above(before), "{shed:?} was in the zone");
                let after = before - shed.connections;
                prop_assert!(!zone.above(after), "{shed:?} still above {zone:?}");
                prop_assert!(after as f64 >= zone.mean.floor(), "{shed:?} went below the mean {zone:?}");
            }
            // Every pod out of the zone is asked, and only those.
            let out = connections.iter().filter(|c| zone.above(**c)).count();
            prop_assert_eq!(sheds.len(), out);
            prop_assert!(sheds.iter().all(|s| zone.above(connections[s.pod])));
            prop_assert!(planned(&pods, 30, true).is_empty());
        }
    }
}
