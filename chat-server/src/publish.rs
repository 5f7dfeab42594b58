//! Publishing to a room: the event gets its `roomSeq` from the store and is
//! emitted to every member, on every server. Per-room ordering locks make
//! "append, then emit" one step per room, so members of a room receive its
//! events in `roomSeq` order from this server.
//!
//! A store that fans out (crate::fanout) has published the event to the other
//! servers in the append itself; it is then emitted to this server's members
//! only. Otherwise the adapter carries it.
//!
//! Redis faults degrade instead of failing: if the store cannot sequence the
//! event, it is still delivered live without a `roomSeq` (not replayable); if
//! the adapter cannot publish to other servers, it is still delivered to this
//! server's members (socketioxide-redis gives up before local delivery when
//! its publish fails).

use std::{
    hash::{DefaultHasher, Hash, Hasher},
    sync::Arc,
};

use socketioxide::{BroadcastError, SocketIo, adapter::Adapter};
use tokio::sync::Mutex;

use crate::{
    admin::metrics::Metrics,
    protocol::RoomEvent,
    store::{RoomStore, StoreError},
};

/// Rooms hash onto this many locks: bounded memory, rare sharing.
const ORDER_STRIPES: usize = 256;

pub struct Publisher {
    store: Arc<dyn RoomStore>,
    metrics: Arc<Metrics>,
    order: Vec<Mutex<()>>,
}

impl Publisher {
    pub fn new(store: Arc<dyn RoomStore>, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            metrics,
            order: (0..ORDER_STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    /// Sequences `event` in its room and emits it to the room's members.
    /// Returns the event as sent: with its `roomSeq`, or without one when the
    /// store was unreachable; `None` for a chunk of an answer that another
    /// server already closed as interrupted (it is not sent).
    pub async fn publish<A: Adapter>(
        &self,
        io: &SocketIo<A>,
        event: RoomEvent,
    ) -> Option<RoomEvent> {
        let _in_order = self.order[stripe(event.room())].lock().await;
        let (event, reach) = match self.store.append(event.clone()).await {
            Ok(sequenced) => (sequenced, self.reach_after_append()),
            Err(StoreError::AnswerClosed) => return None,
            Err(error) => {
                self.metrics.store_errors_total.inc();
                tracing::warn!(%error, room = event.room(), "delivering without a roomSeq");
                (event, Reach::EveryServer)
            }
        };
        emit(io, &event, reach).await;
        Some(event)
    }

    /// Closes an answer whose server died with `last`, its `done` chunk: in
    /// the room's order, as [`Publisher::publish`] sends events. `Ok(None)`
    /// when the answer had already ended (nothing is sent).
    pub async fn close_answer<A: Adapter>(
        &self,
        io: &SocketIo<A>,
        last: RoomEvent,
    ) -> Result<Option<RoomEvent>, StoreError> {
        let _in_order = self.order[stripe(last.room())].lock().await;
        let closed = self.store.close_answer(last).await?;
        if let Some(closed) = &closed {
            emit(io, closed, self.reach_after_append()).await;
        }
        Ok(closed)
    }

    /// Who still has to be sent an event the store has just sequenced.
    fn reach_after_append(&self) -> Reach {
        if self.store.fans_out() {
            Reach::ThisServer
        } else {
            Reach::EveryServer
        }
    }

    /// For the exit: waits until no event is between "appended to its room's
    /// log" and "emitted", then keeps every room's order lock, so that nothing
    /// is appended again before the process ends. (An event appended but not
    /// emitted would reach the other servers' members only when they resume.)
    pub async fn stop(&self) {
        for stripe in &self.order {
            std::mem::forget(stripe.lock().await);
        }
    }
}

/// Which members an emit is for.
#[derive(Clone, Copy)]
enum Reach {
    /// Through the adapter, on every server.
    EveryServer,
    /// This server's: the store's append already published it to the others.
    ThisServer,
}

/// Emits `event` to its room's members on every server (or to this server's
/// members alone when the adapter cannot reach the others), or on this
/// server only.
async fn emit<A: Adapter>(io: &SocketIo<A>, event: &RoomEvent, reach: Reach) {
    let room = event.room().to_owned();
    let operators = match reach {
        Reach::EveryServer => io.to(room.clone()),
        Reach::ThisServer => io.local().to(room.clone()),
    };
    match event.emit_to(operators).await {
        Ok(()) => {}
        Err(BroadcastError::Adapter(error)) => {
            tracing::warn!(%error, %room, "other servers missed an event; delivering to this server's members");
            if let Err(error) = event.emit_to(io.local().to(room.clone())).await {
                tracing::warn!(%error, %room, "some members did not receive an event");
            }
        }
        Err(error) => tracing::warn!(%error, %room, "some members did not receive an event"),
    }
}

fn stripe(room: &str) -> usize {
    let mut hasher = DefaultHasher::new();
    room.hash(&mut hasher);
    (hasher.finish() % ORDER_STRIPES as u64) as usize
}
