//! chatscale's policy under simulation, wired as the operator wires it: the
//! signals `collect::signals` builds (total connections of the pods that
//! answer; the busiest ready pod only while rebalancing cannot move it),
//! `decide::decide`, a scale-down asked for while a drain runs held as
//! `control` holds it, and `rebalance::plan` after `Imbalance::observe` on
//! the ready pods at every evaluation.

use super::policy::{Action, PodState, Policy, Removal, View};
use crate::{
    api::AutoscalingSpec,
    autoscaler::{
        decide::{Busiest, History, Signals, decide},
        rebalance::{Imbalance, Load, plan},
    },
};

#[derive(Debug, Clone)]
pub struct Chatscale {
    spec: AutoscalingSpec,
    history: History,
    imbalance: Imbalance<u32>,
    shed_only_above_band: bool,
}

impl Chatscale {
    pub fn new(spec: AutoscalingSpec) -> Self {
        Self {
            spec,
            history: History::default(),
            imbalance: Imbalance::default(),
            shed_only_above_band: false,
        }
    }

    /// An experiment, not the operator's policy: of the sheds
    /// `rebalance::plan` orders, keep only those of pods above the band
    /// around the target (`target × (1 + tolerance)`), the line `decide`
    /// uses for a stuck busiest pod: rebalance only what is at risk.
    pub fn shedding_only_above_band(mut self) -> Self {
        self.shed_only_above_band = true;
        self
    }
}

impl Policy for Chatscale {
    fn removal(&self) -> Removal {
        Removal::Drain
    }

    fn evaluate(&mut self, now: u64, view: &View) -> Action {
        let draining = view.draining;
        let ready: Vec<Load<u32>> = view
            .pods
            .iter()
            .filter(|p| p.state == PodState::Ready)
            .map(|p| Load {
                pod: p.id,
                connections: p.connections,
                shedding: p.shedding,
            })
            .collect();
        // The scrape targets are the running pods that are not being
        // deleted; starting pods do not answer yet.
        let total = view.connections(&[PodState::Ready, PodState::Draining]);
        let stuck = Busiest::of(&ready).filter(|_| !self.spec.rebalance.enabled);
        let signals = Signals {
            connections: Some(total),
            redis_ops: None,
            stuck,
        };
        let current = view.replicas;
        let decision = decide(&self.spec, now, current, signals, &self.history);
        let scale_down_due = decision.desired < current;
        let mut done = decision;
        let refusing = ready.iter().any(|l| l.shedding);
        if done.desired < current && (draining || refusing) {
            // The scale-down that drains already, or one that waits until
            // no pod refuses new sessions (`control` holds it so).
            done.desired = current;
        }
        self.history.record(now, current, &done);

        self.imbalance.observe(&self.spec.rebalance, now, &ready);
        let scaling_down = draining || scale_down_due;
        let mut sheds = plan(
            &self.spec.rebalance,
            now,
            &ready,
            &self.imbalance,
            scaling_down,
        );
        if self.shed_only_above_band {
            let band =
                f64::from(self.spec.target_connections_per_pod) * (1.0 + self.spec.tolerance);
            sheds.retain(|shed| {
                ready
                    .iter()
                    .any(|l| l.pod == shed.pod && l.connections as f64 > band)
            });
        }
        Action {
            replicas: done.desired,
            sheds,
        }
    }
}
