//! Graceful drain: move every client off this server without losing an event.
//! In order: readiness turns false and new Engine.IO sessions are refused
//! (503, so the load balancer picks another server: see [`super::gate`]);
//! connected clients get `server-draining {reconnectAfterMs}` with a random
//! delay and their transports are closed at no more than `rate` per second
//! ([`super::moving`]: they reconnect elsewhere by themselves and `resume`);
//! AI answers this server streams run to their end (their chunks reach the
//! moved clients through Redis and the room log); then the drain reports
//! `drained`. A drain can be cancelled until it is drained. Starting a drain
//! ends a shed ([`super::shed`] watches the drain).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use socketioxide::{SocketIo, adapter::Adapter};
use tokio::sync::watch;

use chatscale_contract::admin::{DrainState, DrainStatus};

use super::{metrics::Metrics, moving};
use crate::protocol::now_ms;

/// How often a drain looks again whether the sockets it closed have left:
/// nothing signals it (a socket has one disconnect handler, the server's own),
/// and a closed transport's session ends within a few task switches.
const LEFT_YET_EVERY: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Copy)]
pub struct Phase {
    state: DrainState,
    started_at: Option<u64>,
    /// Bumped by every start and cancel, so a cancelled drain task stops.
    generation: u64,
}

pub struct Drain {
    phase: watch::Sender<Phase>,
    generations: AtomicU64,
    rate: u32,
    jitter_ms: u64,
    metrics: Arc<Metrics>,
}

impl Drain {
    pub fn new(rate: u32, jitter_ms: u64, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            phase: watch::Sender::new(Phase {
                state: DrainState::Serving,
                started_at: None,
                generation: 0,
            }),
            generations: AtomicU64::new(0),
            rate,
            jitter_ms,
            metrics,
        })
    }

    /// True from the start of a drain until it is cancelled: refuse new sessions.
    pub fn refuses_new_sessions(&self) -> bool {
        self.phase.borrow().state != DrainState::Serving
    }

    /// While serving, a number that changes whenever a drain starts (or is
    /// cancelled): a shed lives only as long as the number it started with.
    pub fn serving_since(&self) -> Option<u64> {
        let phase = self.phase.borrow();
        (phase.state == DrainState::Serving).then_some(phase.generation)
    }

    /// Sees every start, cancel and end of a drain.
    pub fn changes(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }

    pub fn status<A: Adapter>(&self, io: &SocketIo<A>) -> DrainStatus {
        let phase = *self.phase.borrow();
        DrainStatus {
            state: phase.state,
            sockets: io.sockets().len(),
            active_streams: self.metrics.ai_streams_active.get(),
            started_at: phase.started_at,
        }
    }

    /// Starts draining; does nothing if a drain is already under way or done.
    pub fn start<A: Adapter>(self: &Arc<Self>, io: SocketIo<A>) {
        let generation = self.generations.fetch_add(1, Ordering::SeqCst) + 1;
        let started = self.phase.send_if_modified(|phase| {
            if phase.state != DrainState::Serving {
                return false;
            }
            *phase = Phase {
                state: DrainState::Draining,
                started_at: Some(now_ms()),
                generation,
            };
            true
        });
        if started {
            tracing::info!(
                rate = self.rate,
                "draining: moving clients to other servers"
            );
            self.metrics.draining.set(1);
            tokio::spawn(self.clone().run(io, generation));
        }
    }

    /// Cancels a drain that has not finished. Clients already moved stay moved.
    pub fn cancel(&self) -> Result<(), DrainState> {
        let generation = self.generations.fetch_add(1, Ordering::SeqCst) + 1;
        let mut refused = None;
        self.phase.send_if_modified(|phase| match phase.state {
            DrainState::Draining => {
                *phase = Phase {
                    state: DrainState::Serving,
                    started_at: None,
                    generation,
                };
                true
            }
            other => {
                refused = Some(other);
                false
            }
        });
        match refused {
            Some(state) => Err(state),
            None => {
                tracing::info!("drain cancelled: serving again");
                self.metrics.draining.set(0);
                self.metrics.drain_remaining_sockets.set(0);
                Ok(())
            }
        }
    }

    /// Completes once the drain has finished.
    pub async fn drained(&self) {
        let mut phase = self.phase.subscribe();
        let _ = phase.wait_for(|p| p.state == DrainState::Drained).await;
    }

    fn current(&self, generation: u64) -> bool {
        let phase = self.phase.borrow();
        phase.generation == generation && phase.state == DrainState::Draining
    }

    async fn run<A: Adapter>(self: Arc<Self>, io: SocketIo<A>, generation: u64) {
        let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(self.rate)));
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if !self.current(generation) {
                return;
            }
            let sockets = io.sockets();
            self.metrics
                .drain_remaining_sockets
                .set(sockets.len() as i64);
            if sockets.is_empty() {
                break;
            }
            // Sockets being moved (by this drain or a shed) stay until their session ends.
            let Some(socket) = sockets.into_iter().find(|s| !moving::is_moving(s)) else {
                tokio::time::sleep(LEFT_YET_EVERY).await;
                continue;
            };
            pace.tick().await;
            if !self.current(generation) {
                return;
            }
            moving::move_client(&socket, self.jitter_ms);
        }
        // Answers this server streams keep going: they reach moved clients through Redis.
        let mut phase = self.phase.subscribe();
        loop {
            // Register for the wake-up before checking, so no ending is missed.
            let ended = self.metrics.stream_ended.notified();
            if !self.current(generation) {
                return;
            }
            if self.metrics.ai_streams_active.get() == 0 {
                break;
            }
            tokio::select! {
                () = ended => {}
                _ = phase.changed() => {}
            }
        }
        self.phase.send_if_modified(|phase| {
            if phase.generation != generation || phase.state != DrainState::Draining {
                return false;
            }
            phase.state = DrainState::Drained;
            true
        });
        self.metrics.drain_remaining_sockets.set(0);
        tracing::info!("drained: no clients and no running answers left");
    }
}
