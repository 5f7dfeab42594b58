//! One lean Socket.IO v4 client connection: a WebSocket (tokio-tungstenite)
//! speaking the Engine.IO v4 / Socket.IO v4 text frames directly
//! ("0" open, "40" connect, "42[...]" events, "43<id>[...]" acks,
//! ping "2" / pong "3"). It joins its room, then sends what the scheduler asks
//! and records what it receives. A connection holds a socket, a small read
//! buffer and a few counters: no client library state per connection.
//!
//! With `--protocol floor` it speaks chatscale-floor's bare protocol instead:
//! `join <room>` answered by `ok`, then the same stamped line payloads as
//! plain text frames, no acks and no pings.

use std::{
    net::{IpAddr, SocketAddr},
    os::fd::AsRawFd,
    sync::{Arc, atomic::Ordering::Relaxed},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::Value;
use tokio::{
    net::{TcpSocket, TcpStream},
    sync::{OwnedSemaphorePermit, mpsc},
};
use tokio_tungstenite::{
    WebSocketStream, client_async_with_config,
    tungstenite::{Message, protocol::WebSocketConfig},
};
use tokio_util::sync::CancellationToken;

use crate::{polling::Polling, stats::Stats, target::Target};

/// What the scheduler asks a connection to send.
#[derive(Debug, Clone, Copy)]
pub enum Cmd {
    /// A chat line to the connection's room, stamped for latency.
    Message,
    /// An AI question in the connection's room.
    Ask,
}

/// Settings every connection shares.
pub struct Shared {
    pub stats: Arc<Stats>,
    /// Bytes of filler in each chat line.
    pub text_bytes: usize,
    pub handshake_timeout: Duration,
    /// HTTP long-polling instead of WebSocket.
    pub polling: bool,
    /// chatscale-floor's bare protocol instead of Socket.IO.
    pub floor: bool,
    pub errors: std::sync::Mutex<Vec<String>>,
}

impl Shared {
    pub fn note_error(&self, error: impl std::fmt::Display) {
        let mut errors = self.errors.lock().unwrap();
        if errors.len() < 5 {
            errors.push(error.to_string());
        }
    }
}

/// One connection's fixed plan.
pub struct Conn {
    /// Global index over all workers: identifies the sender of a line.
    pub index: usize,
    pub room: Arc<str>,
    pub target: Arc<Target>,
    pub source: IpAddr,
}

type Ws = WebSocketStream<TcpStream>;

/// The Engine.IO transport under one connection.
enum Link {
    Ws(Box<Ws>),
    Polling(Box<Polling>),
}

impl Link {
    async fn send(&mut self, packet: String) -> anyhow::Result<()> {
        match self {
            Link::Ws(ws) => Ok(ws.send(Message::text(packet)).await?),
            Link::Polling(p) => p.send(packet).await,
        }
    }

    /// The next text packet; None once the server closed the session.
    /// Cancel-safe (used in `select!`).
    async fn recv(&mut self) -> Option<anyhow::Result<String>> {
        match self {
            Link::Ws(ws) => loop {
                match ws.next().await? {
                    Ok(Message::Text(text)) => return Some(Ok(text.as_str().to_owned())),
                    Ok(Message::Close(_)) => return None,
                    Ok(_) => {}
                    Err(error) => return Some(Err(error.into())),
                }
            },
            Link::Polling(p) => p.recv().await,
        }
    }

    async fn close(&mut self) {
        match self {
            Link::Ws(ws) => {
                let _ = WebSocketStream::close(ws.as_mut(), None).await;
            }
            Link::Polling(p) => p.close().await,
        }
    }
}

/// Microseconds since the Unix epoch: one clock shared by every process here.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Runs one connection until `stop`. `permit` (the ramp's handshake slot) is
/// released once the room is joined or the attempt failed.
pub async fn run(
    conn: Conn,
    shared: Arc<Shared>,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    stop: CancellationToken,
    permit: OwnedSemaphorePermit,
) {
    let stats = &shared.stats;
    stats.attempted.fetch_add(1, Relaxed);
    let started = Instant::now();
    let handshake = tokio::time::timeout(shared.handshake_timeout, async {
        if shared.floor {
            connect_floor(&conn).await
        } else {
            connect(&conn, shared.polling).await
        }
    });
    let mut ws = match tokio::select! {
        r = handshake => r,
        () = stop.cancelled() => return,
    } {
        Ok(Ok(ws)) => ws,
        Ok(Err(error)) => {
            stats.connect_errors.fetch_add(1, Relaxed);
            shared.note_error(format!("connect #{}: {error:#}", conn.index));
            return;
        }
        Err(_) => {
            stats.connect_errors.fetch_add(1, Relaxed);
            shared.note_error(format!("connect #{}: handshake timed out", conn.index));
            return;
        }
    };
    drop(permit);
    stats
        .connect_latency
        .record_us(started.elapsed().as_micros() as u64);
    stats.established.fetch_add(1, Relaxed);
    stats.open.fetch_add(1, Relaxed);

    let mut state = State::default();
    let outcome = loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break Ok(()),
            cmd = cmds.recv() => {
                let Some(cmd) = cmd else { continue };
                if let Err(error) = state.send(&mut ws, &conn, &shared, cmd).await {
                    break Err(error);
                }
            }
            packet = ws.recv() => match packet {
                Some(Ok(text)) => {
                    if let Err(error) = state.on_text(&mut ws, &conn, &shared, &text).await {
                        break Err(error);
                    }
                }
                None => break Err(anyhow!("the server closed the connection")),
                Some(Err(error)) => break Err(error),
            },
        }
    };
    stats.open.fetch_sub(1, Relaxed);
    // Acks still missing when the run stops never came.
    stats
        .ack_timeouts
        .fetch_add(state.pending.len() as u64, Relaxed);
    match outcome {
        Ok(()) => {
            let _ = tokio::time::timeout(Duration::from_secs(2), ws.close()).await;
        }
        Err(error) => {
            stats.unexpected_disconnects.fetch_add(1, Relaxed);
            shared.note_error(format!("connection #{}: {error:#}", conn.index));
        }
    }
}

/// A TCP connection to the target from the connection's source address.
async fn tcp(conn: &Conn) -> anyhow::Result<TcpStream> {
    let target = &conn.target;
    let socket = if target.addr.is_ipv4() {
        let socket = TcpSocket::new_v4()?;
        // Pick the source port at connect time (per destination), not at bind
        // time: one source address then serves more than ~28k connections.
        let one: libc::c_int = 1;
        // SAFETY: a valid fd and a c_int option of the right size.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        socket
            .bind(SocketAddr::new(conn.source, 0))
            .with_context(|| format!("binding source address {}", conn.source))?;
        socket
    } else {
        TcpSocket::new_v6()?
    };
    let stream = socket
        .connect(target.addr)
        .await
        .with_context(|| format!("TCP connect to {}", target.addr))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The same WebSocket settings as the Socket.IO client.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(1 << 20))
}

/// TCP, WebSocket upgrade, then `join <room>` answered by `ok`
/// (chatscale-floor).
async fn connect_floor(conn: &Conn) -> anyhow::Result<Link> {
    let url = format!("ws://{}/", conn.target.addr);
    let (ws, _) = client_async_with_config(url.as_str(), tcp(conn).await?, Some(ws_config()))
        .await
        .context("WebSocket upgrade")?;
    let mut link = Link::Ws(Box::new(ws));
    link.send(format!("join {}", conn.room)).await?;
    let reply = next_text(&mut link).await?;
    if reply != "ok" {
        bail!("expected `ok` after the join, got {reply:?}");
    }
    Ok(link)
}

/// TCP, WebSocket upgrade (or a polling session), Engine.IO open, Socket.IO
/// connect to `/`, then `join` with an `ok` ack.
async fn connect(conn: &Conn, polling: bool) -> anyhow::Result<Link> {
    let target = &conn.target;
    let mut link = if polling {
        let (get, post) = (tcp(conn).await?, tcp(conn).await?);
        let (session, _open) = Polling::open(target.addr, get, post)
            .await
            .context("Engine.IO polling handshake")?;
        Link::Polling(Box::new(session))
    } else {
        let (ws, _) =
            client_async_with_config(target.ws_url.as_str(), tcp(conn).await?, Some(ws_config()))
                .await
                .context("WebSocket upgrade")?;
        let mut link = Link::Ws(Box::new(ws));
        let open = next_text(&mut link).await?;
        if !open.starts_with('0') {
            bail!("expected the Engine.IO open packet, got {open:?}");
        }
        link
    };
    link.send("40".to_owned()).await?;
    loop {
        let text = next_text(&mut link).await?;
        if text.starts_with("40") {
            break;
        }
        if text.starts_with("44") {
            bail!("the server refused the Socket.IO connection: {text}");
        }
        if text == "2" {
            link.send("3".to_owned()).await?;
        }
    }
    link.send(format!(
        "420[\"join\",{}]",
        serde_json::json!({"room": &*conn.room})
    ))
    .await?;
    loop {
        let text = next_text(&mut link).await?;
        if let Some(rest) = text.strip_prefix("430") {
            let ack: Vec<Ack> = serde_json::from_str(rest).context("join ack")?;
            match ack.into_iter().next() {
                Some(Ack { ok: Some(_), .. }) => return Ok(link),
                Some(Ack { error: Some(e), .. }) => bail!("join refused: {e}"),
                _ => bail!("join ack without ok or error: {text}"),
            }
        }
        if text == "2" {
            link.send("3".to_owned()).await?;
        }
        // Room events may already flow in: they are not counted before the join.
    }
}

async fn next_text(link: &mut Link) -> anyhow::Result<String> {
    match link.recv().await {
        Some(packet) => packet,
        None => bail!("closed during the handshake"),
    }
}

#[derive(Deserialize)]
struct Ack {
    ok: Option<Value>,
    error: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Pending {
    Message,
    Ask,
}

/// Per-connection state after the join: kept small (usually empty vectors).
#[derive(Default)]
struct State {
    next_ack: u32,
    pending: Vec<(u32, Pending, Instant)>,
    /// Streams this connection asked for (from the `ai-query` ack).
    asked: Vec<String>,
    /// Streams being received: (streamId, when the last chunk came).
    streams: Vec<(String, Instant)>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StreamEvent {
    stream_id: String,
    #[serde(default)]
    done: bool,
}

impl State {
    async fn send(
        &mut self,
        ws: &mut Link,
        conn: &Conn,
        shared: &Shared,
        cmd: Cmd,
    ) -> anyhow::Result<()> {
        self.next_ack = self.next_ack.wrapping_add(1);
        let id = self.next_ack;
        let (frame, kind) = match cmd {
            Cmd::Message => {
                let text = format!(
                    "lt:{}:{}:{}",
                    now_us(),
                    conn.index,
                    "x".repeat(shared.text_bytes)
                );
                let payload = serde_json::json!({"room": &*conn.room, "text": text});
                if shared.floor {
                    // The same payload bytes, without the Socket.IO frame; no
                    // ack to wait for (the echo stands for it).
                    ws.send(payload.to_string()).await?;
                    shared.stats.sent.fetch_add(1, Relaxed);
                    return Ok(());
                }
                (format!("42{id}[\"message\",{payload}]"), Pending::Message)
            }
            Cmd::Ask => {
                let payload = serde_json::json!({
                    "room": &*conn.room,
                    "prompt": format!("question from connection {}", conn.index),
                });
                (format!("42{id}[\"ai-query\",{payload}]"), Pending::Ask)
            }
        };
        self.pending.push((id, kind, Instant::now()));
        ws.send(frame).await?;
        let counter = match kind {
            Pending::Message => &shared.stats.sent,
            Pending::Ask => &shared.stats.ai_asked,
        };
        counter.fetch_add(1, Relaxed);
        Ok(())
    }

    async fn on_text(
        &mut self,
        ws: &mut Link,
        conn: &Conn,
        shared: &Shared,
        text: &str,
    ) -> anyhow::Result<()> {
        let stats = &shared.stats;
        if shared.floor {
            // Every frame after `ok` is a line payload of some member.
            let data: Value =
                serde_json::from_str(text).with_context(|| format!("floor line {text:?}"))?;
            self.on_message(conn, shared, &data);
            return Ok(());
        }
        if text == "2" {
            ws.send("3".to_owned()).await?;
            return Ok(());
        }
        if let Some(rest) = text.strip_prefix("42") {
            // Events from the server carry no ack id here; skip one if present.
            let json = rest.trim_start_matches(|c: char| c.is_ascii_digit());
            let (name, data): (String, Value) =
                serde_json::from_str(json).with_context(|| format!("event frame {text:?}"))?;
            match name.as_str() {
                "message" => self.on_message(conn, shared, &data),
                "ai-response-stream" => {
                    let event: StreamEvent = serde_json::from_value(data)?;
                    self.on_chunk(shared, event);
                }
                _ => {}
            }
            return Ok(());
        }
        if let Some(rest) = text.strip_prefix("43") {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(0);
            let id: u32 = rest[..digits].parse().context("ack id")?;
            let Some(at) = self.pending.iter().position(|p| p.0 == id) else {
                stats.protocol_errors.fetch_add(1, Relaxed);
                shared.note_error(format!("ack for unknown id {id}"));
                return Ok(());
            };
            let (_, kind, sent) = self.pending.swap_remove(at);
            let ack: Vec<Ack> = serde_json::from_str(&rest[digits..])?;
            match ack.into_iter().next() {
                Some(Ack { ok: Some(ok), .. }) => {
                    stats
                        .ack_latency
                        .record_us(sent.elapsed().as_micros() as u64);
                    match kind {
                        Pending::Message => stats.acked.fetch_add(1, Relaxed),
                        Pending::Ask => {
                            if let Some(id) = ok.get("streamId").and_then(Value::as_str) {
                                self.asked.push(id.to_owned());
                            }
                            stats.ai_acked.fetch_add(1, Relaxed)
                        }
                    };
                }
                other => {
                    stats.ack_errors.fetch_add(1, Relaxed);
                    let error = other.and_then(|a| a.error);
                    shared.note_error(format!("{kind:?} refused: {error:?}"));
                }
            }
            return Ok(());
        }
        if text.starts_with("41") {
            bail!("the server disconnected the socket");
        }
        Ok(())
    }

    fn on_message(&mut self, conn: &Conn, shared: &Shared, data: &Value) {
        let stats = &shared.stats;
        let Some(stamp) = data
            .get("text")
            .and_then(Value::as_str)
            .and_then(|t| t.strip_prefix("lt:"))
        else {
            return;
        };
        let mut parts = stamp.splitn(3, ':');
        let (Some(sent_us), Some(sender)) = (parts.next(), parts.next()) else {
            return;
        };
        // Only the generator's own chat lines count (not AI prompts or others').
        stats.delivered.fetch_add(1, Relaxed);
        let now = now_us();
        stats.last_delivery_us.fetch_max(now, Relaxed);
        let sent_us = sent_us.parse::<u64>().ok();
        if sender.parse::<usize>().ok() == Some(conn.index) {
            // Our own line: latency is measured on other clients. The floor
            // has no acks: its echo to the sender is the ack.
            if shared.floor {
                stats.acked.fetch_add(1, Relaxed);
                if let Some(sent_us) = sent_us {
                    stats.ack_latency.record_us(now.saturating_sub(sent_us));
                }
            }
            return;
        }
        if let Some(sent_us) = sent_us {
            stats.message_latency.record_us(now.saturating_sub(sent_us));
        }
    }

    fn on_chunk(&mut self, shared: &Shared, event: StreamEvent) {
        let stats = &shared.stats;
        stats.ai_chunks.fetch_add(1, Relaxed);
        let now = Instant::now();
        match self.streams.iter().position(|s| s.0 == event.stream_id) {
            Some(at) => {
                let gap = now.duration_since(self.streams[at].1);
                stats.chunk_gap.record_us(gap.as_micros() as u64);
                self.streams[at].1 = now;
            }
            None => self.streams.push((event.stream_id.clone(), now)),
        }
        if event.done {
            self.streams.retain(|s| s.0 != event.stream_id);
            stats.ai_streams_seen_done.fetch_add(1, Relaxed);
            if let Some(at) = self.asked.iter().position(|s| *s == event.stream_id) {
                self.asked.swap_remove(at);
                stats.ai_done.fetch_add(1, Relaxed);
            }
        }
        if self.streams.is_empty() {
            self.streams.shrink_to_fit();
        }
    }
}
