//! Orphaned answers must not leave clients waiting forever, nor keep their
//! places. Each second this server sends one heartbeat for itself (not one
//! per answer) and learns which servers' heartbeats lapsed (crash, SIGKILL,
//! drain timeout); it closes each answer of a dead server with a final
//! `done: true, error: "interrupted"` chunk and gives its places back. The
//! room log makes the close happen once, whichever servers notice. (In-memory
//! mode has no orphans: a lone server takes its clients with it.)

use std::time::Duration;

use socketioxide::{SocketIo, adapter::Adapter};

use super::ledger::Answer;
use crate::{
    protocol::{AiChunk, RoomEvent, now_ms},
    state::AppState,
};

const HEARTBEAT: Duration = Duration::from_secs(1);
const INTERRUPTED: &str = "interrupted";

/// Heartbeats this server and closes dead servers' answers, forever.
pub fn watch<A: Adapter>(io: SocketIo<A>, state: AppState) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let answers = &state.answers;
            answers.retry_releases().await;
            let dead = match answers.ledger().heartbeat(answers.server()).await {
                Ok(dead) => dead,
                Err(error) => {
                    tracing::debug!(%error, "heartbeat failed");
                    continue;
                }
            };
            for server in dead {
                close_answers_of(&io, &state, &server).await;
            }
        }
    });
}

/// Closes and releases what a dead server left; forgets the server once
/// nothing is left. Whatever fails is tried again at the next heartbeat.
async fn close_answers_of<A: Adapter>(io: &SocketIo<A>, state: &AppState, server: &str) {
    let ledger = state.answers.ledger();
    let orphans = match ledger.answers_of(server).await {
        Ok(orphans) => orphans,
        Err(error) => {
            tracing::debug!(%error, server, "could not read a dead server's answers");
            return;
        }
    };
    if orphans.is_empty() {
        if let Err(error) = ledger.forget_server(server).await {
            tracing::debug!(%error, server, "could not forget a dead server");
        }
        return;
    }
    for orphan in orphans {
        if close(io, state, &orphan).await
            && let Err(error) = ledger.release(server, &orphan).await
        {
            tracing::debug!(%error, "a closed answer keeps its places until the next heartbeat");
        }
    }
}

/// Appends the orphan's last chunk unless it already ended; false when the
/// room log could not be asked.
async fn close<A: Adapter>(io: &SocketIo<A>, state: &AppState, orphan: &Answer) -> bool {
    let last = RoomEvent::AiChunk(AiChunk {
        room: orphan.room.clone(),
        room_seq: None,
        stream_id: orphan.id.clone(),
        seq: 0, // the store sets the answer's next seq
        chunk: String::new(),
        done: true,
        error: Some(INTERRUPTED.to_owned()),
        ts: now_ms(),
    });
    match state.publisher.close_answer(io, last).await {
        Ok(Some(_)) => {
            tracing::warn!(
                room = orphan.room,
                stream_id = orphan.id,
                "closed an answer whose server died"
            );
            state
                .metrics
                .ai_streams_total
                .with_label_values(&["interrupted"])
                .inc();
            true
        }
        Ok(None) => true,
        Err(error) => {
            tracing::debug!(%error, "could not close an orphaned answer");
            false
        }
    }
}
