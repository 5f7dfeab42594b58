//! Orphaned answers must not leave clients waiting forever. Every answer this
//! server streams is registered in the store and kept alive by a heartbeat
//! each second; when a server dies (crash, SIGKILL, drain timeout) its
//! heartbeats stop, and a surviving server closes each of its answers with a
//! final `done: true, error: "interrupted"` chunk. The store makes the close
//! happen once, whichever servers notice. (In-memory mode has no orphans: a
//! lone server takes its clients with it.)

use std::{collections::HashSet, sync::Mutex, time::Duration};

use socketioxide::{SocketIo, adapter::Adapter};

use crate::{
    protocol::{AiChunk, RoomEvent, now_ms},
    state::AppState,
    store::StreamRef,
};

const HEARTBEAT: Duration = Duration::from_secs(1);
pub const INTERRUPTED: &str = "interrupted";

/// The answers this server is streaming right now.
#[derive(Default)]
pub struct StreamTracker {
    active: Mutex<HashSet<StreamRef>>,
}

impl StreamTracker {
    fn active(&self) -> std::sync::MutexGuard<'_, HashSet<StreamRef>> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub async fn started(&self, state: &AppState, stream: &StreamRef) {
        self.active().insert(stream.clone());
        if let Err(error) = state.store.stream_started(stream).await {
            tracing::warn!(%error, "an answer could not be registered; it is not protected against this server dying");
        }
    }

    pub async fn finished(&self, state: &AppState, stream: &StreamRef) {
        self.active().remove(stream);
        if let Err(error) = state.store.stream_finished(stream).await {
            tracing::debug!(%error, "an ended answer stays registered until its heartbeat lapses");
        }
    }

    fn snapshot(&self) -> Vec<StreamRef> {
        self.active().iter().cloned().collect()
    }
}

/// Heartbeats this server's answers and closes other servers' orphans, forever.
pub fn watch<A: Adapter>(io: SocketIo<A>, state: AppState) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let mine = state.streams.snapshot();
            if let Err(error) = state.store.streams_alive(&mine).await {
                tracing::debug!(%error, "answer heartbeat failed");
                continue;
            }
            let orphans = match state.store.orphaned_streams().await {
                Ok(orphans) => orphans,
                Err(error) => {
                    tracing::debug!(%error, "could not look for orphaned answers");
                    continue;
                }
            };
            for orphan in orphans.into_iter().filter(|o| !mine.contains(o)) {
                close(&io, &state, orphan).await;
            }
        }
    });
}

async fn close<A: Adapter>(io: &SocketIo<A>, state: &AppState, orphan: StreamRef) {
    let last = RoomEvent::AiChunk(AiChunk {
        room: orphan.room.clone(),
        room_seq: None,
        stream_id: orphan.stream_id.clone(),
        seq: 0, // the store sets the stream's next seq
        chunk: String::new(),
        done: true,
        error: Some(INTERRUPTED.to_owned()),
        ts: now_ms(),
    });
    match state.store.close_stream(last).await {
        Ok(Some(closed)) => {
            tracing::warn!(
                room = orphan.room,
                stream_id = orphan.stream_id,
                "closed an answer whose server died"
            );
            state
                .metrics
                .ai_streams_total
                .with_label_values(&["interrupted"])
                .inc();
            if let Err(error) = closed.emit_to(io.to(orphan.room.clone())).await {
                tracing::warn!(%error, "the interrupted answer's last chunk reached only some members");
            }
        }
        Ok(None) => {}
        Err(error) => tracing::debug!(%error, "could not close an orphaned answer"),
    }
}
