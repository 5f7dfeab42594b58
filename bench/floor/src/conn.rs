//! One connection: the WebSocket handshake, the `join <room>` frame, then one
//! task that both reads lines (each broadcast to the room) and writes what the
//! room queued for it (every queued frame written, then one flush).

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::{net::TcpStream, sync::mpsc};
use tokio_tungstenite::{
    accept_async_with_config,
    tungstenite::{Message, protocol::WebSocketConfig},
};

use crate::rooms::Rooms;

/// Serves one client until it closes or fails; errors only end the connection.
pub async fn serve(stream: TcpStream, rooms: Arc<Rooms>) {
    // A client going away mid-frame is the usual error here: nothing to report.
    let _ = run(stream, &rooms).await;
}

async fn run(stream: TcpStream, rooms: &Rooms) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    // A small read buffer, as a lean server would keep per idle connection.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .max_message_size(Some(1 << 20));
    let mut ws = accept_async_with_config(stream, Some(config)).await?;
    let name = loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => match text.as_str().strip_prefix("join ") {
                Some(room) => break room.to_owned(),
                None => anyhow::bail!("the first frame must be `join <room>`"),
            },
            Some(Ok(Message::Close(_))) | None => return Ok(()),
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error.into()),
        }
    };
    let (outbox, mut queued) = mpsc::unbounded_channel();
    let (room, id) = rooms.join(&name, outbox);
    let result = async {
        ws.send(Message::text("ok")).await?;
        loop {
            tokio::select! {
                frame = ws.next() => match frame {
                    Some(Ok(Message::Text(line))) => room.broadcast(&line),
                    Some(Ok(Message::Close(_))) | None => return Ok(()),
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return Err(error.into()),
                },
                Some(line) = queued.recv() => {
                    ws.feed(Message::Text(line)).await?;
                    while let Ok(line) = queued.try_recv() {
                        ws.feed(Message::Text(line)).await?;
                    }
                    ws.flush().await?;
                }
            }
        }
    }
    .await;
    rooms.leave(&name, &room, id);
    result
}
