//! Shedding, for rebalancing after a scale-up: connections are sticky, so an
//! old server keeps its clients while new sessions go to the new ones. `POST
//! /shed {connections, perSecond}` moves that many of this server's clients
//! ([`super::moving`]: `server-draining`, then the transport closed; they
//! reconnect by themselves and `resume`) at that rate (0: none, only the
//! refusal), while new Engine.IO
//! sessions get 503 ([`super::gate`]) and `/readyz` answers 503, so that the
//! load balancer sends the moved clients, and anyone new, to another server
//! (a balancer that routes by endpoints, as ingress controllers do, only
//! stops once the kubelet has seen the pod not Ready). A shed ends by itself
//! [`SHED_HOLD_SECONDS`] after its last close (or after the request, with
//! nothing to close), once its clients have had time to reconnect
//! elsewhere; then new sessions are welcome again. A new request replaces
//! the shed in progress, and its hold starts again (the operator restates a
//! refusal every evaluation); `DELETE /shed` ends it; a drain ends it, and
//! refuses a new one (it moves every client already).

use std::{sync::Arc, time::Duration};

use socketioxide::{SocketIo, adapter::Adapter};
use tokio::sync::watch;

use chatscale_contract::admin::{SHED_HOLD_SECONDS, ShedRequest, ShedState, ShedStatus};

use super::{drain::Drain, metrics::Metrics, moving};

/// How long new sessions stay refused after a shed's last close.
const HOLD: Duration = Duration::from_secs(SHED_HOLD_SECONDS);

#[derive(Debug, Clone, Copy)]
struct Phase {
    /// Bumped by every start and stop, so a replaced or stopped shed's task ends.
    generation: u64,
    shedding: bool,
    /// Connections the shed in progress was asked to close, and those still to close.
    asked: u64,
    remaining: u64,
    /// The drain's `serving_since` when the shed started: a drain ends it.
    drain_generation: u64,
}

/// A shed was refused: the server drains.
#[derive(Debug)]
pub struct Draining;

pub struct Shed {
    phase: watch::Sender<Phase>,
    drain: Arc<Drain>,
    jitter_ms: u64,
    metrics: Arc<Metrics>,
}

impl Shed {
    pub fn new(drain: Arc<Drain>, jitter_ms: u64, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            phase: watch::Sender::new(Phase {
                generation: 0,
                shedding: false,
                asked: 0,
                remaining: 0,
                drain_generation: 0,
            }),
            drain,
            jitter_ms,
            metrics,
        })
    }

    /// True while a shed runs (and no drain has started since): refuse new
    /// sessions, and not ready.
    pub fn shedding(&self) -> bool {
        self.live(&self.phase.borrow())
    }

    fn live(&self, phase: &Phase) -> bool {
        phase.shedding && self.drain.serving_since() == Some(phase.drain_generation)
    }

    /// The shed in progress while it is the one started as `generation`.
    fn current(&self, generation: u64) -> Option<Phase> {
        let phase = *self.phase.borrow();
        (phase.generation == generation && self.live(&phase)).then_some(phase)
    }

    pub fn status<A: Adapter>(&self, io: &SocketIo<A>) -> ShedStatus {
        let phase = *self.phase.borrow();
        let shedding = self.live(&phase);
        ShedStatus {
            state: if shedding {
                ShedState::Shedding
            } else {
                ShedState::Idle
            },
            remaining: if shedding { phase.remaining } else { 0 },
            shed_total: self.metrics.shed_connections_total.get(),
            sockets: io.sockets().len(),
        }
    }

    /// Starts shedding `request` (checked by the caller), in place of a shed
    /// in progress; refused, with nothing changed, while the server drains.
    pub fn start<A: Adapter>(
        self: &Arc<Self>,
        io: SocketIo<A>,
        request: ShedRequest,
    ) -> Result<(), Draining> {
        let (mut refused, mut replaced, mut generation) = (false, None, 0);
        // The drain's state is read under this shed's lock: a drain that
        // starts after this check ends the new shed at once.
        self.phase.send_if_modified(|phase| {
            let Some(drain_generation) = self.drain.serving_since() else {
                refused = true;
                return false;
            };
            if self.live(phase) {
                replaced = Some(*phase);
            }
            generation = phase.generation + 1;
            *phase = Phase {
                generation,
                shedding: true,
                asked: request.connections,
                remaining: request.connections,
                drain_generation,
            };
            true
        });
        if refused {
            return Err(Draining);
        }
        // One line per request: the operator restates its order every evaluation.
        match replaced {
            Some(old) => tracing::info!(
                connections = request.connections,
                per_second = request.per_second,
                replaced_shed = old.asked - old.remaining,
                replaced_asked = old.asked,
                "shedding, in place of the shed in progress"
            ),
            None => tracing::info!(
                connections = request.connections,
                per_second = request.per_second,
                "shedding: moving clients to other servers, refusing new sessions"
            ),
        }
        tokio::spawn(self.clone().run(io, generation, request.per_second));
        Ok(())
    }

    /// Ends the shed in progress, if any: new sessions are welcome again.
    pub fn stop(&self) {
        let mut stopped = None;
        self.phase.send_if_modified(|phase| {
            if !phase.shedding {
                return false;
            }
            stopped = Some(*phase);
            phase.generation += 1;
            phase.shedding = false;
            phase.remaining = 0;
            true
        });
        if let Some(old) = stopped {
            self.log_end(&old, "stopped (DELETE /shed)");
        }
    }

    /// Ends the shed started as `generation`, unless it was replaced or stopped.
    fn end(&self, generation: u64) {
        let mut ended = None;
        self.phase.send_if_modified(|phase| {
            if phase.generation != generation || !phase.shedding {
                return false;
            }
            ended = Some(*phase);
            phase.shedding = false;
            phase.remaining = 0;
            true
        });
        if let Some(old) = ended {
            self.log_end(&old, "done");
        }
    }

    fn log_end(&self, old: &Phase, otherwise: &str) {
        let why = if self.drain.serving_since() == Some(old.drain_generation) {
            otherwise
        } else {
            "the server drains"
        };
        tracing::info!(
            shed = old.asked - old.remaining,
            asked = old.asked,
            why,
            "shed ended"
        );
    }

    async fn run<A: Adapter>(self: Arc<Self>, io: SocketIo<A>, generation: u64, per_second: u32) {
        let mut changes = self.phase.subscribe();
        let mut drain = self.drain.changes();
        let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(per_second)));
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let Some(phase) = self.current(generation) else {
                // Replaced or stopped (then this does nothing), or a drain started.
                return self.end(generation);
            };
            if phase.remaining == 0 {
                break;
            }
            // A start, stop or drain wakes this at once, so no socket is moved after it.
            tokio::select! {
                _ = pace.tick() => {}
                _ = changes.changed() => continue,
                _ = drain.changed() => continue,
            }
            if self.current(generation).is_none() {
                continue;
            }
            let Some(socket) = io.sockets().into_iter().find(|s| !moving::is_moving(s)) else {
                break;
            };
            if moving::move_client(&socket, self.jitter_ms) {
                self.metrics.shed_connections_total.inc();
                // Not a change the task wakes for.
                self.phase.send_if_modified(|phase| {
                    if phase.generation == generation {
                        phase.remaining = phase.remaining.saturating_sub(1);
                    }
                    false
                });
            }
        }
        tokio::select! {
            () = tokio::time::sleep(HOLD) => {}
            _ = changes.changed() => {}
            _ = drain.changed() => {}
        }
        self.end(generation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shed_of(drain: &Arc<Drain>) -> Arc<Shed> {
        Shed::new(drain.clone(), 0, Arc::new(Metrics::new()))
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_ends_a_shed_and_refuses_the_next_one() {
        let metrics = Arc::new(Metrics::new());
        let drain = Drain::new(10, 0, metrics);
        let shed = shed_of(&drain);
        let (_, io) = SocketIo::new_svc();
        io.ns("/", async || {});
        let request = ShedRequest {
            connections: 5,
            per_second: 10,
        };
        shed.start(io.clone(), request).unwrap();
        assert!(shed.shedding());
        assert_eq!(shed.status(&io).state, ShedState::Shedding);

        drain.start(io.clone());
        assert!(!shed.shedding(), "ended the moment the drain started");
        assert_eq!(shed.status(&io).state, ShedState::Idle);
        assert!(shed.start(io.clone(), request).is_err());
        assert!(!shed.shedding());

        // A drain that is cancelled does not bring the old shed back.
        drain.cancel().unwrap();
        assert!(!shed.shedding());
        shed.start(io.clone(), request).unwrap();
        assert!(shed.shedding());
    }

    #[tokio::test(start_paused = true)]
    async fn with_nothing_to_close_a_shed_ends_after_its_hold() {
        let drain = Drain::new(10, 0, Arc::new(Metrics::new()));
        let shed = shed_of(&drain);
        let (_, io) = SocketIo::new_svc();
        io.ns("/", async || {});
        let request = ShedRequest {
            connections: 3,
            per_second: 1,
        };
        shed.start(io.clone(), request).unwrap();
        let mut phase = shed.phase.subscribe();
        let started = tokio::time::Instant::now();
        phase.wait_for(|p| !p.shedding).await.unwrap();
        assert_eq!(started.elapsed(), HOLD);
        assert_eq!(shed.status(&io).state, ShedState::Idle);

        // A stop ends it at once; a second stop changes nothing.
        shed.start(io.clone(), request).unwrap();
        shed.stop();
        assert!(!shed.shedding());
        shed.stop();
        assert_eq!(shed.status(&io).shed_total, 0);
    }
}
