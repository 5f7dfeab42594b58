//! The interface between the simulated world and a policy under test: what
//! a policy sees of the pods at an evaluation, and what it may do (set the
//! replica count, ask pods to shed). How replicas go away is the policy's
//! platform, not its choice: chatscale drains before it lowers replicas;
//! the HPA (and KEDA, through an HPA) lowers them and the ReplicaSet deletes.

use crate::autoscaler::rebalance::Shed;

/// Where a pod is in its life, as the Kubernetes API would show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodState {
    /// Created, not ready yet: no sessions, no metrics.
    Starting,
    /// Ready: it reports metrics and, unless it sheds, takes new sessions.
    Ready,
    /// Drained by the operator before a scale-down: not ready, still part
    /// of the Deployment's replicas, letting its clients go.
    Draining,
    /// Deleted (by a scale-down the ReplicaSet carried out): it drains on
    /// SIGTERM and is no longer part of the replicas.
    Terminating,
    /// Deleted and empty: it exits.
    Exiting,
}

/// One pod as a policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodView {
    pub id: u32,
    pub state: PodState,
    pub connections: u64,
    /// It sheds connections for a rebalance (and refuses new sessions).
    pub shedding: bool,
}

/// What every policy sees at an evaluation.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    /// The Deployment's `spec.replicas`.
    pub replicas: i32,
    /// Every pod that exists.
    pub pods: &'a [PodView],
    /// An operator drain (chatscale's scale-down) runs.
    pub draining: bool,
}

impl View<'_> {
    /// Pods in `state`.
    pub fn count(&self, state: PodState) -> usize {
        self.pods.iter().filter(|p| p.state == state).count()
    }

    /// Connections on pods in any of `states`.
    pub fn connections(&self, states: &[PodState]) -> u64 {
        self.pods
            .iter()
            .filter(|p| states.contains(&p.state))
            .map(|p| p.connections)
            .sum()
    }
}

/// How a policy's platform removes pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// chatscale: drain the emptiest ready pods (staggered), lower replicas
    /// when all are drained; a scale-up cancels the drain.
    Drain,
    /// The HPA: lower replicas at once; the ReplicaSet deletes pods that are
    /// not ready first, then the most recently ready, and each drains on SIGTERM.
    Delete,
}

/// What a policy does at an evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// Replicas from now on.
    pub replicas: i32,
    /// Pods to shed connections (pods are [`PodView::id`]s).
    pub sheds: Vec<Shed<u32>>,
}

/// A scaling policy under simulation; it keeps its own history.
pub trait Policy {
    /// How its platform removes pods.
    fn removal(&self) -> Removal;

    /// Called every second before any evaluation (for what the policy's
    /// metrics pipeline samples on its own clock).
    fn observe(&mut self, _now: u64, _view: &View) {}

    /// An evaluation at `now`.
    fn evaluate(&mut self, now: u64, view: &View) -> Action;
}
