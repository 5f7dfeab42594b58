//! Graceful drain: move every client off this server without losing an event.
//! In order: readiness turns false and new Engine.IO sessions are refused
//! (503, so the load balancer picks another server); connected clients get
//! `server-draining {reconnectAfterMs}` with a random delay and are
//! disconnected at no more than `rate` per second (they reconnect elsewhere
//! and `resume`); AI answers this server streams run to their end (their
//! chunks reach the moved clients through Redis and the room log); then the
//! drain reports `drained`. A drain can be cancelled until it is drained.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use rand::Rng;
use serde::Serialize;
use socketioxide::{SocketIo, adapter::Adapter};
use tokio::sync::watch;

use chatscale_contract::admin::{DrainState, DrainStatus};

use crate::{admin::metrics::Metrics, protocol::now_ms};

#[derive(Debug, Clone, Copy)]
struct Phase {
    state: DrainState,
    started_at: Option<u64>,
    /// Bumped by every start and cancel, so a cancelled drain task stops.
    generation: u64,
}

/// `server-draining {reconnectAfterMs}`
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ServerDraining {
    reconnect_after_ms: u64,
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
            let Some(socket) = sockets.into_iter().next() else {
                break;
            };
            pace.tick().await;
            let delay = rand::rng().random_range(0..=self.jitter_ms);
            let _ = socket.emit(
                "server-draining",
                &ServerDraining {
                    reconnect_after_ms: delay,
                },
            );
            let _ = socket.disconnect();
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

/// Decides, on the public port, which Socket.IO requests a draining server
/// turns away with 503 (so that a load balancer retries another server):
/// new sessions, and requests for sessions this server does not hold (a
/// sticky balancer keeps sending a moved client's requests here first).
#[derive(Clone)]
pub struct SessionGate {
    pub drain: Arc<Drain>,
    /// True when this server holds the Engine.IO session with that id.
    pub holds: Arc<dyn Fn(&str) -> bool + Send + Sync>,
}

pub async fn gate_sessions(
    axum::extract::State(gate): axum::extract::State<SessionGate>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if gate.drain.refuses_new_sessions() && request.uri().path().starts_with("/socket.io") {
        let sid = request
            .uri()
            .query()
            .unwrap_or("")
            .split('&')
            .find_map(|pair| pair.strip_prefix("sid="));
        if !sid.is_some_and(|sid| (gate.holds)(sid)) {
            return (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                [(axum::http::header::RETRY_AFTER, "1")],
                "this server is draining; connect to another one\n",
            )
                .into_response();
        }
    }
    next.run(request).await
}
