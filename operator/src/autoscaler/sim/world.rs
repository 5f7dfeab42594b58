//! The simulated cluster: pods, the sessions on them, and the load balancer
//! that places each new connection. A session stays on its pod until it
//! ends or its pod lets it go (a drain or a shed); then its client
//! reconnects after a jittered delay and is placed again. This is what the
//! policies are scored on: stickiness, not an even spread of the load.
//!
//! Within a second, in this order: deleted pods that emptied exit, starting
//! pods whose start-up is over become ready, sessions that end leave,
//! clients due to reconnect and new sessions are placed, then drains and
//! sheds let clients go (they reconnect one to two seconds later), and an
//! operator drain whose pods are all empty completes. The policies evaluate
//! after that ([`World::apply`] carries out what they decide).

use std::cmp::Reverse;

use serde::Serialize;

use super::{
    Model,
    policy::{Action, PodState, PodView, Removal, View},
    rng::Rng,
    scenario::Sessions,
};

/// How the load balancer places a new connection among the pods that
/// accept new sessions (ready, not draining, not shedding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Balancer {
    /// The next pod after the last one chosen, in pod order.
    RoundRobin,
    /// The pod with the fewest connections (the oldest on a tie).
    LeastConnections,
    /// A uniformly random pod.
    Random,
}

impl Balancer {
    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::RoundRobin => "round-robin",
            Self::LeastConnections => "least-connections",
            Self::Random => "random",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Unborn,
    On { pod: u32, slot: u32 },
    Waiting,
    Ended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Starting {
        ready_at: u64,
    },
    Ready,
    /// An operator drain (the pod is still part of the replicas).
    Draining,
    /// Deleted while serving: it drains on SIGTERM.
    Terminating {
        since: u64,
    },
    /// Deleted and empty: it costs until it has exited.
    Exiting {
        until: u64,
    },
    Gone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shedding {
    remaining: u64,
    per_second: u64,
    /// It refuses new sessions until this second, and longer while
    /// `remaining` is above 0.
    refuse_until: u64,
}

#[derive(Debug, Clone)]
struct Pod {
    phase: Phase,
    sessions: Vec<u32>,
    ready_since: u64,
    shed: Option<Shedding>,
    /// Chosen by an operator drain: it starts draining at this second.
    drain_at: Option<u64>,
}

/// A scale-down by the operator: drain the victims, then lower replicas.
#[derive(Debug, Clone)]
struct OperatorDrain {
    victims: Vec<u32>,
    desired: i32,
    started: u64,
}

/// What happened to clients in one second.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Second {
    /// Clients a drain let go.
    pub drained: u64,
    /// Clients a shed let go.
    pub shed: u64,
    /// Connection attempts of clients that were let go or found no pod.
    pub reconnects: u64,
    /// Connection attempts (new or again) that found no pod accepting.
    pub no_pod: u64,
}

pub struct World<'s> {
    sessions: &'s Sessions,
    model: Model,
    removal: Removal,
    place: Vec<Place>,
    pods: Vec<Pod>,
    /// The Deployment's `spec.replicas`.
    replicas: i32,
    drain: Option<OperatorDrain>,
    /// Clients due to reconnect, by second (a ring as long as the longest delay).
    retries: Vec<Vec<u32>>,
    waiting: u64,
    rng: Rng,
    /// Pods that accept new sessions now, in pod order.
    accepting: Vec<u32>,
    next_round_robin: u32,
    views: Vec<PodView>,
    /// This second so far.
    pub second: Second,
    /// Shed orders carried out while an operator drain ran.
    pub shed_orders_while_draining: u64,
}

impl<'s> World<'s> {
    /// `pods` ready pods (the Deployment's replicas) and no session yet.
    pub fn new(sessions: &'s Sessions, model: &Model, removal: Removal, pods: i32) -> Self {
        let longest = model
            .reconnect_max_seconds
            .max(model.reconnect_min_seconds.max(1));
        let pods = pods.max(0);
        Self {
            sessions,
            model: *model,
            removal,
            place: vec![Place::Unborn; sessions.len()],
            pods: (0..pods)
                .map(|_| Pod {
                    phase: Phase::Ready,
                    sessions: Vec::new(),
                    ready_since: 0,
                    shed: None,
                    drain_at: None,
                })
                .collect(),
            replicas: pods,
            drain: None,
            retries: vec![Vec::new(); longest as usize + 1],
            waiting: 0,
            rng: Rng::stream(model.seed, 200),
            accepting: Vec::new(),
            next_round_robin: 0,
            views: Vec::new(),
            second: Second::default(),
            shed_orders_while_draining: 0,
        }
    }

    /// Everything of second `t` up to the policies' evaluation (see the
    /// module documentation for the order).
    pub fn begin(&mut self, t: u64) {
        self.second = Second::default();
        for pod in &mut self.pods {
            match pod.phase {
                Phase::Exiting { until } if until <= t => pod.phase = Phase::Gone,
                Phase::Starting { ready_at } if ready_at <= t => {
                    pod.phase = Phase::Ready;
                    pod.ready_since = t;
                }
                _ => {}
            }
        }
        let sessions = self.sessions;
        for &id in sessions.ending_at(t) {
            match self.place[id as usize] {
                Place::On { .. } => self.detach(id),
                Place::Waiting => self.waiting -= 1,
                Place::Unborn | Place::Ended => {}
            }
            self.place[id as usize] = Place::Ended;
        }

        self.accepting.clear();
        self.accepting.extend(
            self.pods
                .iter()
                .enumerate()
                .filter(|(_, p)| p.phase == Phase::Ready && p.shed.is_none())
                .map(|(id, _)| id as u32),
        );
        let slot = (t % self.retries.len() as u64) as usize;
        let mut due = std::mem::take(&mut self.retries[slot]);
        for &id in &due {
            if self.place[id as usize] == Place::Waiting {
                self.waiting -= 1;
                self.second.reconnects += 1;
                self.connect(id, t);
            }
        }
        due.clear();
        if self.retries[slot].is_empty() {
            self.retries[slot] = due;
        }
        for id in sessions.starting_at(t) {
            self.connect(id, t);
        }
        self.release(t);
    }

    /// What the policies see now.
    pub fn view(&mut self) -> View<'_> {
        self.views.clear();
        for (id, pod) in self.pods.iter().enumerate() {
            let state = match pod.phase {
                Phase::Starting { .. } => PodState::Starting,
                Phase::Ready => PodState::Ready,
                Phase::Draining => PodState::Draining,
                Phase::Terminating { .. } => PodState::Terminating,
                Phase::Exiting { .. } => PodState::Exiting,
                Phase::Gone => continue,
            };
            self.views.push(PodView {
                id: id as u32,
                state,
                connections: pod.sessions.len() as u64,
                shedding: pod.shed.is_some(),
            });
        }
        View {
            replicas: self.replicas,
            pods: &self.views,
            draining: self.drain.is_some(),
        }
    }

    /// Carries out a policy's decision at second `t`.
    pub fn apply(&mut self, t: u64, action: Action) {
        let desired = action.replicas;
        match self.removal {
            Removal::Delete => {
                self.replicas = desired;
                self.enforce(t);
            }
            Removal::Drain if desired > self.replicas => {
                if let Some(drain) = self.drain.take() {
                    for victim in drain.victims {
                        let pod = &mut self.pods[victim as usize];
                        pod.drain_at = None;
                        if pod.phase == Phase::Draining {
                            if pod.sessions.is_empty() {
                                // Drained: it cannot serve again; the
                                // ReplicaSet replaces it.
                                pod.phase = Phase::Exiting {
                                    until: t + self.model.exit_seconds,
                                };
                            } else {
                                pod.phase = Phase::Ready;
                                pod.ready_since = t;
                            }
                        }
                    }
                }
                self.replicas = desired;
                self.enforce(t);
            }
            Removal::Drain if desired < self.replicas && self.drain.is_none() => {
                let mut ready: Vec<u32> = (0..self.pods.len() as u32)
                    .filter(|p| self.pods[*p as usize].phase == Phase::Ready)
                    .collect();
                ready.sort_by_key(|p| (self.pods[*p as usize].sessions.len(), *p));
                ready.truncate(ready.len().saturating_sub(desired.max(0) as usize));
                if ready.is_empty() {
                    // Only pods not started yet are in excess: they just go.
                    self.replicas = desired;
                    self.enforce(t);
                } else {
                    for (k, victim) in ready.iter().enumerate() {
                        let pod = &mut self.pods[*victim as usize];
                        pod.drain_at = Some(t + k as u64 * self.model.stagger_seconds);
                        if k == 0 {
                            pod.phase = Phase::Draining;
                            pod.shed = None;
                        }
                    }
                    self.drain = Some(OperatorDrain {
                        victims: ready,
                        desired,
                        started: t,
                    });
                }
            }
            Removal::Drain => {}
        }
        for shed in action.sheds {
            let Some(pod) = self.pods.get_mut(shed.pod as usize) else {
                continue;
            };
            if pod.phase == Phase::Ready && pod.drain_at.is_none() {
                // An order replaces the one in progress, as `POST /shed` does.
                pod.shed = Some(Shedding {
                    remaining: shed.connections,
                    per_second: u64::from(shed.per_second.max(1)),
                    refuse_until: t + self.model.shed_hold_seconds,
                });
                if self.drain.is_some() {
                    self.shed_orders_while_draining += 1;
                }
            }
        }
    }

    /// The Deployment's `spec.replicas`.
    pub fn replicas(&self) -> i32 {
        self.replicas
    }

    /// An operator drain runs.
    pub fn draining(&self) -> bool {
        self.drain.is_some()
    }

    /// Some pod sheds.
    pub fn shedding(&self) -> bool {
        self.pods.iter().any(|p| p.shed.is_some())
    }

    /// Connections of each ready pod.
    pub fn ready_loads(&self) -> impl Iterator<Item = u64> + '_ {
        self.pods
            .iter()
            .filter(|p| p.phase == Phase::Ready)
            .map(|p| p.sessions.len() as u64)
    }

    /// Pods that exist (and cost): starting, ready, draining, terminating or exiting.
    pub fn pods(&self) -> usize {
        self.pods.iter().filter(|p| p.phase != Phase::Gone).count()
    }

    /// Sessions on a pod plus clients waiting to reconnect.
    pub fn census(&self) -> u64 {
        let on_pods: usize = self.pods.iter().map(|p| p.sessions.len()).sum();
        on_pods as u64 + self.waiting
    }

    /// Connections of pod `pod` (0 for a pod that does not exist).
    pub fn connections(&self, pod: u32) -> u64 {
        self.pods
            .get(pod as usize)
            .map_or(0, |p| p.sessions.len() as u64)
    }

    /// The state of pod `pod`, `None` once it has gone.
    pub fn state(&self, pod: u32) -> Option<PodState> {
        Some(match self.pods.get(pod as usize)?.phase {
            Phase::Starting { .. } => PodState::Starting,
            Phase::Ready => PodState::Ready,
            Phase::Draining => PodState::Draining,
            Phase::Terminating { .. } => PodState::Terminating,
            Phase::Exiting { .. } => PodState::Exiting,
            Phase::Gone => return None,
        })
    }

    /// Every session is where it says it is, exactly once (for tests).
    pub fn consistent(&self) -> bool {
        let mut seen = vec![false; self.place.len()];
        for (p, pod) in self.pods.iter().enumerate() {
            for (slot, id) in pod.sessions.iter().enumerate() {
                let expected = Place::On {
                    pod: p as u32,
                    slot: slot as u32,
                };
                if seen[*id as usize] || self.place[*id as usize] != expected {
                    return false;
                }
                seen[*id as usize] = true;
            }
            if pod.phase == Phase::Gone && !pod.sessions.is_empty() {
                return false;
            }
        }
        let waiting = self.place.iter().filter(|p| **p == Place::Waiting).count();
        let on = self
            .place
            .iter()
            .filter(|p| matches!(p, Place::On { .. }))
            .count();
        waiting as u64 == self.waiting && on == seen.iter().filter(|s| **s).count()
    }

    fn connect(&mut self, id: u32, t: u64) {
        match self.choose() {
            Some(pod) => {
                let sessions = &mut self.pods[pod as usize].sessions;
                self.place[id as usize] = Place::On {
                    pod,
                    slot: sessions.len() as u32,
                };
                sessions.push(id);
            }
            None => {
                self.place[id as usize] = Place::Waiting;
                self.waiting += 1;
                self.second.no_pod += 1;
                self.schedule(id, t);
            }
        }
    }

    fn choose(&mut self) -> Option<u32> {
        let first = *self.accepting.first()?;
        Some(match self.model.balancer {
            Balancer::RoundRobin => {
                let next = self.next_round_robin;
                let i = self.accepting.partition_point(|p| *p < next);
                let pod = self.accepting.get(i).copied().unwrap_or(first);
                self.next_round_robin = pod + 1;
                pod
            }
            Balancer::LeastConnections => *self
                .accepting
                .iter()
                .min_by_key(|p| (self.pods[**p as usize].sessions.len(), **p))
                .expect("not empty"),
            Balancer::Random => {
                let i = self.rng.below(self.accepting.len() as u64);
                self.accepting[i as usize]
            }
        })
    }

    fn detach(&mut self, id: u32) {
        if let Place::On { pod, slot } = self.place[id as usize] {
            let sessions = &mut self.pods[pod as usize].sessions;
            sessions.swap_remove(slot as usize);
            if let Some(moved) = sessions.get(slot as usize) {
                self.place[*moved as usize] = Place::On { pod, slot };
            }
            self.place[id as usize] = Place::Unborn;
        }
    }

    fn schedule(&mut self, id: u32, t: u64) {
        let low = self.model.reconnect_min_seconds.max(1);
        let delay = self
            .rng
            .between(low, self.model.reconnect_max_seconds.max(low));
        let slot = ((t + delay) % self.retries.len() as u64) as usize;
        self.retries[slot].push(id);
    }

    /// Lets a client go: it reconnects after the jittered delay.
    fn kick(&mut self, id: u32, t: u64) {
        self.detach(id);
        self.place[id as usize] = Place::Waiting;
        self.waiting += 1;
        self.schedule(id, t);
    }

    /// Lets go at most `count` clients of pod `p`, the last placed first
    /// (which ones does not matter: all go).
    fn drain_some(&mut self, p: usize, count: u64, t: u64) {
        for _ in 0..count {
            let Some(id) = self.pods[p].sessions.last().copied() else {
                return;
            };
            self.kick(id, t);
            self.second.drained += 1;
        }
    }

    fn release(&mut self, t: u64) {
        let rate = self.model.drain_rate.max(1);
        for p in 0..self.pods.len() {
            let pod = &mut self.pods[p];
            if pod.phase == Phase::Ready && pod.drain_at.is_some_and(|at| at <= t) {
                pod.phase = Phase::Draining;
                pod.shed = None;
            }
            match pod.phase {
                Phase::Draining => self.drain_some(p, rate, t),
                Phase::Terminating { since } => {
                    self.drain_some(p, rate, t);
                    if t >= since + self.model.drain_timeout_seconds {
                        self.drain_some(p, u64::MAX, t);
                    }
                    if self.pods[p].sessions.is_empty() {
                        self.pods[p].phase = Phase::Exiting {
                            until: t + self.model.exit_seconds,
                        };
                    }
                }
                Phase::Ready => {
                    let Some(shed) = pod.shed else {
                        continue;
                    };
                    let count = shed
                        .per_second
                        .min(shed.remaining)
                        .min(pod.sessions.len() as u64);
                    for _ in 0..count {
                        let sessions = &self.pods[p].sessions;
                        let victim = sessions[self.rng.below(sessions.len() as u64) as usize];
                        self.kick(victim, t);
                        self.second.shed += 1;
                    }
                    let remaining = shed.remaining - count;
                    let pod = &mut self.pods[p];
                    let refuse_until = if count > 0 && remaining == 0 {
                        // The last close: refuse a while longer (`SHED_HOLD_SECONDS`).
                        shed.refuse_until.max(t + self.model.shed_hold_seconds)
                    } else {
                        shed.refuse_until
                    };
                    let remaining = if pod.sessions.is_empty() {
                        0
                    } else {
                        remaining
                    };
                    pod.shed = (remaining > 0 || t < refuse_until).then_some(Shedding {
                        remaining,
                        refuse_until,
                        ..shed
                    });
                }
                _ => {}
            }
        }
        if let Some(drain) = &self.drain {
            let drained = drain.victims.iter().all(|v| {
                let pod = &self.pods[*v as usize];
                pod.phase == Phase::Draining && pod.sessions.is_empty()
            });
            if drained || t >= drain.started + self.model.drain_timeout_seconds {
                self.replicas = drain.desired;
                self.drain = None;
                self.enforce(t);
            }
        }
    }

    /// The ReplicaSet: as many pods as replicas, not counting deleted ones.
    /// Extra pods are deleted in its order: not ready first (a drained pod
    /// is not ready; then the ones marked for the drain), then the most
    /// recently ready, then the newest.
    fn enforce(&mut self, t: u64) {
        let mut live: Vec<u32> = (0..self.pods.len() as u32)
            .filter(|p| {
                matches!(
                    self.pods[*p as usize].phase,
                    Phase::Starting { .. } | Phase::Ready | Phase::Draining
                )
            })
            .collect();
        let target = self.replicas.max(0) as usize;
        for _ in live.len()..target {
            self.pods.push(Pod {
                phase: Phase::Starting {
                    ready_at: t + self.model.startup_seconds,
                },
                sessions: Vec::new(),
                ready_since: 0,
                shed: None,
                drain_at: None,
            });
        }
        if live.len() <= target {
            return;
        }
        live.sort_by_key(|p| {
            let pod = &self.pods[*p as usize];
            (
                pod.phase == Phase::Ready,
                pod.drain_at.is_none(),
                Reverse(pod.ready_since),
                Reverse(*p),
            )
        });
        for &p in &live[..live.len() - target] {
            let p = p as usize;
            match self.pods[p].phase {
                Phase::Starting { .. } => self.pods[p].phase = Phase::Gone,
                Phase::Draining => {
                    // Drained, or out of time: whoever is left goes now.
                    self.drain_some(p, u64::MAX, t);
                    self.pods[p].phase = Phase::Exiting {
                        until: t + self.model.exit_seconds,
                    };
                }
                Phase::Ready => {
                    let pod = &mut self.pods[p];
                    pod.phase = Phase::Terminating { since: t };
                    pod.shed = None;
                    pod.drain_at = None;
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autoscaler::rebalance::Shed;

    /// `n` sessions from `start` that last the whole test.
    fn long(n: usize, start: u64) -> impl Iterator<Item = (u64, u64)> {
        std::iter::repeat_n((start, 1_000_000), n)
    }

    fn model(balancer: Balancer) -> Model {
        Model {
            balancer,
            ..Model::default()
        }
    }

    fn loads(world: &World) -> Vec<u64> {
        (0..world.pods.len() as u32)
            .map(|p| world.connections(p))
            .collect()
    }

    fn run_to(world: &mut World, from: u64, to: u64) {
        for t in from..to {
            world.begin(t);
            assert!(world.consistent(), "second {t}");
        }
    }

    fn scale(world: &mut World, t: u64, replicas: i32) {
        world.apply(
            t,
            Action {
                replicas,
                sheds: Vec::new(),
            },
        );
    }

    #[test]
    fn round_robin_and_least_connections_placement() {
        let sessions = Sessions::new(10, long(9, 0).chain(long(3, 5)));
        let mut world = World::new(&sessions, &model(Balancer::RoundRobin), Removal::Delete, 3);
        run_to(&mut world, 0, 1);
        assert_eq!(loads(&world), [3, 3, 3]);

        // Least connections: 9 sessions on 3 pods, then a fourth pod; the
        // 3 sessions of second 5 all go to the empty one.
        let least = Model {
            startup_seconds: 0,
            ..model(Balancer::LeastConnections)
        };
        let mut world = World::new(&sessions, &least, Removal::Delete, 3);
        run_to(&mut world, 0, 1);
        scale(&mut world, 0, 4);
        run_to(&mut world, 1, 10);
        assert_eq!(loads(&world), [3, 3, 3, 3]);
    }

    #[test]
    fn connections_stay_on_their_pod_after_a_scale_up_and_the_new_pod_takes_only_new_ones() {
        // 200 sessions on 2 pods; a third pod added at 0 is ready at 30;
        // 30 more sessions arrive at 40.
        let sessions = Sessions::new(60, long(200, 0).chain(long(30, 40)));
        let mut world = World::new(&sessions, &model(Balancer::RoundRobin), Removal::Delete, 2);
        run_to(&mut world, 0, 1);
        scale(&mut world, 0, 3);
        run_to(&mut world, 1, 30);
        assert_eq!(world.state(2), Some(PodState::Starting));
        run_to(&mut world, 30, 40);
        assert_eq!(world.state(2), Some(PodState::Ready));
        assert_eq!(loads(&world), [100, 100, 0], "start-up: nothing moves");
        run_to(&mut world, 40, 60);
        assert_eq!(loads(&world), [110, 110, 10]);
    }

    #[test]
    fn start_up_takes_its_time() {
        let sessions = Sessions::new(40, long(0, 0));
        let model = Model {
            startup_seconds: 12,
            ..Model::default()
        };
        let mut world = World::new(&sessions, &model, Removal::Delete, 1);
        run_to(&mut world, 0, 3);
        scale(&mut world, 3, 2);
        run_to(&mut world, 4, 15);
        assert_eq!(world.state(1), Some(PodState::Starting));
        run_to(&mut world, 15, 16);
        assert_eq!(world.state(1), Some(PodState::Ready));
    }

    #[test]
    fn a_shed_moves_exactly_its_clients_at_its_rate_and_they_land_elsewhere() {
        let sessions = Sessions::new(40, long(300, 0));
        let mut world = World::new(&sessions, &model(Balancer::RoundRobin), Removal::Drain, 3);
        run_to(&mut world, 0, 1);
        world.apply(
            0,
            Action {
                replicas: 3,
                sheds: vec![Shed {
                    pod: 0,
                    connections: 25,
                    per_second: 10,
                }],
            },
        );
        let mut moved = Vec::new();
        for t in 1..10 {
            world.begin(t);
            moved.push(world.second.shed);
            if t == 3 {
                // Done shedding; every client it let go that has
                // reconnected is on another pod. It refuses a while longer.
                assert!(world.shedding());
                assert_eq!(world.connections(0), 75);
            }
        }
        assert_eq!(moved, [10, 10, 5, 0, 0, 0, 0, 0, 0]);
        assert_eq!(world.census(), 300);
        assert!(world.consistent());
        let hold = model(Balancer::RoundRobin).shed_hold_seconds;
        for t in 10..=3 + hold {
            world.begin(t);
        }
        assert!(
            !world.shedding(),
            "{hold} s after its last close it takes sessions again"
        );
    }

    #[test]
    fn a_shedding_pod_takes_no_new_sessions() {
        let sessions = Sessions::new(10, long(30, 0).chain(long(20, 2)));
        let mut world = World::new(&sessions, &model(Balancer::RoundRobin), Removal::Drain, 2);
        run_to(&mut world, 0, 1);
        world.apply(
            0,
            Action {
                replicas: 2,
                sheds: vec![Shed {
                    pod: 0,
                    connections: 5,
                    per_second: 1,
                }],
            },
        );
        run_to(&mut world, 1, 3);
        // Two shed, none of the 20 new ones landed on it.
        assert_eq!(world.connections(0), 13);
        assert_eq!(world.census(), 50);
    }

    #[test]
    fn a_drain_lets_clients_go_at_its_rate_then_the_pod_goes() {
        let sessions = Sessions::new(30, long(2400, 0));
        let model = Model {
            drain_rate: 500,
            exit_seconds: 2,
            ..Model::default()
        };
        let mut world = World::new(&sessions, &model, Removal::Drain, 2);
        run_to(&mut world, 0, 1);
        scale(&mut world, 0, 1);
        assert_eq!(world.replicas(), 2, "replicas go down once drained");
        let mut drained = Vec::new();
        for t in 1..6 {
            world.begin(t);
            drained.push(world.second.drained);
        }
        // 1200 at 500 per second; drained at 3, replicas 1, gone at 5.
        assert_eq!(drained, [500, 500, 200, 0, 0]);
        assert_eq!(world.replicas(), 1);
        assert_eq!(world.state(0), None);
        assert_eq!(world.connections(1), 2400);
    }

    #[test]
    fn staggered_drains_start_stagger_seconds_apart_and_a_scale_up_cancels_them() {
        let sessions = Sessions::new(60, long(400, 0));
        let model = Model {
            drain_rate: 5,
            stagger_seconds: 10,
            ..Model::default()
        };
        let mut world = World::new(&sessions, &model, Removal::Drain, 4);
        run_to(&mut world, 0, 1);
        scale(&mut world, 0, 1);
        let draining = |world: &World| {
            (0..4)
                .filter(|p| world.state(*p) == Some(PodState::Draining))
                .count()
        };
        let mut counts = Vec::new();
        for t in 1..25 {
            world.begin(t);
            counts.push(draining(&world));
        }
        assert_eq!(&counts[..9], [1; 9]);
        assert_eq!(&counts[9..19], [2; 10]);
        assert_eq!(&counts[19..], [3; 5]);
        // Replicas stay at 4 until the drain completes: asking for 4 (or
        // fewer) is the same scale-down.
        scale(&mut world, 24, 4);
        assert!(world.draining());
        // A scale-up beyond them: the drains stop and their pods serve again.
        scale(&mut world, 24, 5);
        assert!(!world.draining());
        assert_eq!(draining(&world), 0);
        assert_eq!(world.replicas(), 5);
        // The first had drained: it cannot serve again and is replaced.
        assert_eq!(world.state(0), Some(PodState::Exiting));
        assert_eq!(world.state(4), Some(PodState::Starting));
        assert_eq!(world.state(5), Some(PodState::Starting));
        assert_eq!(world.pods(), 6);
    }

    #[test]
    fn a_deleted_pod_drains_on_sigterm_the_newest_ready_first() {
        let sessions = Sessions::new(60, long(100, 0).chain(long(60, 45)));
        let model = Model {
            drain_rate: 20,
            ..Model::default()
        };
        let mut world = World::new(&sessions, &model, Removal::Delete, 2);
        run_to(&mut world, 0, 1);
        scale(&mut world, 0, 3);
        run_to(&mut world, 1, 50);
        assert_eq!(loads(&world), [70, 70, 20]);
        scale(&mut world, 49, 2);
        assert_eq!(world.replicas(), 2);
        assert_eq!(world.state(2), Some(PodState::Terminating));
        world.begin(50);
        assert_eq!(world.second.drained, 20);
        assert_eq!(world.state(2), Some(PodState::Exiting));
        assert_eq!(world.census(), 160);
    }

    #[test]
    fn clients_that_find_no_pod_wait_and_retry() {
        let sessions = Sessions::new(60, long(10, 5));
        let model = Model {
            startup_seconds: 10,
            ..Model::default()
        };
        let mut world = World::new(&sessions, &model, Removal::Delete, 0);
        run_to(&mut world, 0, 1);
        scale(&mut world, 0, 1);
        world.begin(5);
        assert_eq!(world.second.no_pod, 10);
        run_to(&mut world, 6, 14);
        assert_eq!(world.census(), 10);
        assert_eq!(world.connections(0), 10, "placed once the pod is ready");
    }
}
