//! One policy on one session list: the second-by-second loop that steps
//! the world, lets the policy evaluate every `intervalSeconds`, carries out
//! its decision and scores the second. It also keeps the checks the tests
//! assert (replica bounds, sheds during drains, conservation of sessions).

use super::{
    Model,
    policy::Policy,
    scenario::Sessions,
    score::{Metrics, Scorer},
    world::World,
};
use crate::api::AutoscalingSpec;

/// A scale event against the previous one within this many seconds is a
/// reversal: the default scale-down stabilization window, for every policy
/// (so that a sweep of chatscale's window does not change the yardstick).
pub const REVERSAL_WINDOW_SECONDS: u64 = 300;

/// The state of one second, for plots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// The Deployment's replicas.
    pub replicas: i32,
    /// Ready pods.
    pub ready: u32,
    /// Connections of the hottest ready pod (0 with none).
    pub hottest: u64,
}

/// Invariants of a run, for the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checks {
    /// The lowest and highest `spec.replicas` the run set.
    pub replicas: (i32, i32),
    /// Shed orders carried out while an operator drain ran.
    pub shed_orders_while_draining: u64,
    /// Seconds in which a pod shed while an operator drain ran (a shed
    /// ordered before the drain started still finishing).
    pub shedding_while_draining_seconds: u64,
    /// Seconds in which the sessions on pods plus those waiting to
    /// reconnect were not the offered connections.
    pub conservation_errors: u64,
}

/// The outcome of one policy on one session list.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub metrics: Metrics,
    /// One sample per second.
    pub samples: Vec<Sample>,
    pub checks: Checks,
}

/// Replicas that carry `load` at the target, within the bounds.
pub fn settled_replicas(spec: &AutoscalingSpec, load: u64) -> i32 {
    let target = spec.target_connections_per_pod.max(1) as u64;
    (load.div_ceil(target).min(i32::MAX as u64) as i32).clamp(spec.min_replicas, spec.max_replicas)
}

/// Runs `policy` on `sessions`, starting settled: `settled_replicas` of
/// the connections at second 0, ready, and an empty policy history.
pub fn simulate(
    sessions: &Sessions,
    policy: &mut dyn Policy,
    spec: &AutoscalingSpec,
    model: &Model,
) -> Run {
    let interval = spec.interval_seconds.max(1) as u64;
    let first = sessions.offered.first().copied().unwrap_or(0);
    let mut world = World::new(
        sessions,
        model,
        policy.removal(),
        settled_replicas(spec, first),
    );
    let mut scorer = Scorer::new(
        spec.target_connections_per_pod.max(0) as u64,
        model.overload_percent,
        REVERSAL_WINDOW_SECONDS,
        sessions.len() as u64,
    );
    let mut checks = Checks {
        replicas: (world.replicas(), world.replicas()),
        shed_orders_while_draining: 0,
        shedding_while_draining_seconds: 0,
        conservation_errors: 0,
    };
    let mut samples = Vec::with_capacity(sessions.seconds as usize);
    for t in 0..sessions.seconds {
        world.begin(t);
        let view = world.view();
        policy.observe(t, &view);
        if t.is_multiple_of(interval) {
            let from = view.replicas;
            let action = policy.evaluate(t, &view);
            scorer.scaled(t, from, action.replicas);
            world.apply(t, action);
            let replicas = world.replicas();
            checks.replicas = (
                checks.replicas.0.min(replicas),
                checks.replicas.1.max(replicas),
            );
        }
        let offered = sessions.offered[t as usize];
        if world.draining() && world.shedding() {
            checks.shedding_while_draining_seconds += 1;
        }
        if world.census() != offered {
            checks.conservation_errors += 1;
        }
        let clients = world.second;
        let hottest = scorer.second(world.ready_loads(), world.pods() as u64, offered, &clients);
        samples.push(Sample {
            replicas: world.replicas(),
            ready: world.ready_loads().count() as u32,
            hottest: hottest.unwrap_or(0),
        });
    }
    checks.shed_orders_while_draining = world.shed_orders_while_draining;
    Run {
        metrics: scorer.metrics,
        samples,
        checks,
    }
}
