//! The Events the operator records on a ChatCluster, in one place: every
//! reason (the controller's and the autoscaler's), whether it is a warning,
//! and the one way they are published. docs/troubleshooting.md explains each
//! (a test below checks that it names them all).

use std::fmt;

use kube::{
    Resource,
    runtime::events::{Event, EventType, Recorder},
};

use crate::api::ChatCluster;

/// Why an Event was recorded (its `reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The first reconcile applied the cluster's objects.
    Created,
    /// The spec cannot be built (the cluster is Degraded until it is fixed).
    InvalidSpec,
    /// The API server refused an object.
    ApplyFailed,
    /// The autoscaler raised `spec.replicas`.
    ScaledUp,
    /// The autoscaler lowered `spec.replicas` after a drain.
    ScaledDown,
    /// Pods chosen for a scale-down started draining.
    DrainStarted,
    /// Every drained pod reported `drained`.
    DrainCompleted,
    /// The drain timeout ran out; replicas were lowered anyway.
    DrainTimedOut,
    /// A scale-up cancelled the drain.
    DrainCancelled,
    /// The drain could not be run.
    DrainFailed,
    /// Pods far above the mean were asked to shed connections.
    RebalanceStarted,
    /// A pod finished shedding.
    RebalanceCompleted,
    /// A pod could not be asked to shed.
    RebalanceFailed,
}

impl Reason {
    pub const ALL: [Reason; 13] = [
        Reason::Created,
        Reason::InvalidSpec,
        Reason::ApplyFailed,
        Reason::ScaledUp,
        Reason::ScaledDown,
        Reason::DrainStarted,
        Reason::DrainCompleted,
        Reason::DrainTimedOut,
        Reason::DrainCancelled,
        Reason::DrainFailed,
        Reason::RebalanceStarted,
        Reason::RebalanceCompleted,
        Reason::RebalanceFailed,
    ];

    /// The Event's `reason` as Kubernetes shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Created => "Created",
            Reason::InvalidSpec => "InvalidSpec",
            Reason::ApplyFailed => "ApplyFailed",
            Reason::ScaledUp => "ScaledUp",
            Reason::ScaledDown => "ScaledDown",
            Reason::DrainStarted => "DrainStarted",
            Reason::DrainCompleted => "DrainCompleted",
            Reason::DrainTimedOut => "DrainTimedOut",
            Reason::DrainCancelled => "DrainCancelled",
            Reason::DrainFailed => "DrainFailed",
            Reason::RebalanceStarted => "RebalanceStarted",
            Reason::RebalanceCompleted => "RebalanceCompleted",
            Reason::RebalanceFailed => "RebalanceFailed",
        }
    }

    /// `Warning` for what needs a look, `Normal` otherwise.
    pub fn event_type(self) -> EventType {
        match self {
            Reason::InvalidSpec
            | Reason::ApplyFailed
            | Reason::DrainTimedOut
            | Reason::DrainFailed
            | Reason::RebalanceFailed => EventType::Warning,
            Reason::Created
            | Reason::ScaledUp
            | Reason::ScaledDown
            | Reason::DrainStarted
            | Reason::DrainCompleted
            | Reason::DrainCancelled
            | Reason::RebalanceStarted
            | Reason::RebalanceCompleted => EventType::Normal,
        }
    }

    /// The Event's `action`: what the operator was doing.
    pub fn action(self) -> &'static str {
        match self {
            Reason::Created | Reason::InvalidSpec | Reason::ApplyFailed => "Reconcile",
            Reason::ScaledUp
            | Reason::ScaledDown
            | Reason::DrainStarted
            | Reason::DrainCompleted
            | Reason::DrainTimedOut
            | Reason::DrainCancelled
            | Reason::DrainFailed => "Scale",
            Reason::RebalanceStarted | Reason::RebalanceCompleted | Reason::RebalanceFailed => {
                "Rebalance"
            }
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Records an Event on `cc`; a failure to record is logged, not returned.
pub async fn publish(recorder: &Recorder, cc: &ChatCluster, reason: Reason, note: String) {
    let event = Event {
        type_: reason.event_type(),
        reason: reason.as_str().into(),
        note: Some(note),
        action: reason.action().into(),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&event, &cc.object_ref(&())).await {
        tracing::debug!(%error, "an Event could not be recorded");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_explained_in_the_troubleshooting_guide() {
        let guide = include_str!("../../../docs/troubleshooting.md");
        for reason in Reason::ALL {
            assert!(
                guide.contains(&format!("`{reason}`")),
                "docs/troubleshooting.md does not explain `{reason}`"
            );
        }
    }

    #[test]
    fn failures_and_timeouts_are_warnings() {
        let warnings: Vec<Reason> = Reason::ALL
            .into_iter()
            .filter(|r| r.event_type() == EventType::Warning)
            .collect();
        assert_eq!(
            warnings,
            [
                Reason::InvalidSpec,
                Reason::ApplyFailed,
                Reason::DrainTimedOut,
                Reason::DrainFailed,
                Reason::RebalanceFailed
            ]
        );
    }
}
