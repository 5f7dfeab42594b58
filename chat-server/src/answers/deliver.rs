//! Delivers one AI answer to a room: provider tokens are batched into chunks,
//! each published as an `ai-response-stream` event with `seq` contiguous from
//! 1 and exactly one `done: true`. A finished answer joins the room history;
//! its places are given back when it ends, however it ends.

use futures::StreamExt;
use socketioxide::{SocketIo, adapter::Adapter};
use tokio::time::Instant;

use super::reservation::Reservation;
use crate::{
    admin::metrics::ActiveStream,
    ai::{
        AiRequest,
        batcher::{End, batch},
    },
    protocol::{AiChunk, RoomEvent, now_ms},
    state::AppState,
    store::{Role, Turn},
};

pub async fn deliver<A: Adapter>(
    io: SocketIo<A>,
    state: AppState,
    reservation: Reservation,
    request: AiRequest,
    received: Instant,
) {
    let metrics = &state.metrics;
    let _active = ActiveStream::start(metrics);
    let (room, stream_id) = (&reservation.answer().room, &reservation.answer().id);
    if let Err(error) = state.store.open_answer(room, stream_id).await {
        tracing::warn!(%error, "an answer could not be opened in the room log; if this server dies, it is not closed for the room");
    }
    let mut batches = std::pin::pin!(batch(state.ai.answer(request), state.batch));
    let mut answer = String::new();
    let mut seq = 0;
    while let Some(batch) = batches.next().await {
        seq += 1;
        answer.push_str(&batch.text);
        let chunk = AiChunk {
            room: room.clone(),
            room_seq: None,
            stream_id: stream_id.clone(),
            seq,
            chunk: batch.text,
            done: batch.end.is_some(),
            error: match &batch.end {
                Some(End::Failed(error)) => Some(error.to_string()),
                _ => None,
            },
            ts: now_ms(),
        };
        let published = state
            .publisher
            .publish(&io, RoomEvent::AiChunk(chunk))
            .await;
        if published.is_none() {
            tracing::warn!(%room, %stream_id, "another server closed this answer as interrupted; stopping");
            break;
        }
        if seq == 1 {
            metrics
                .ai_first_chunk_seconds
                .observe(received.elapsed().as_secs_f64());
        }
        metrics.ai_stream_chunks_total.inc();
        metrics.ai_tokens_total.inc_by(batch.tokens as u64);
        match batch.end {
            Some(End::Complete) => {
                metrics
                    .ai_streams_total
                    .with_label_values(&["complete"])
                    .inc();
                let turn = Turn {
                    role: Role::Assistant,
                    text: std::mem::take(&mut answer),
                };
                if let Err(error) = state.store.push_turn(room, turn).await {
                    metrics.store_errors_total.inc();
                    tracing::warn!(%error, %room, "the answer could not be added to the history");
                }
            }
            Some(End::Failed(error)) => {
                metrics.ai_streams_total.with_label_values(&["error"]).inc();
                tracing::warn!(%error, %room, %stream_id, "AI answer ended early");
            }
            None => {}
        }
    }
    reservation.release().await;
}
