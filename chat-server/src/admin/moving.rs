//! Moving one client off this server, the step the drain and a shed share:
//! `server-draining {reconnectAfterMs}`, then its transport is closed (no
//! Socket.IO DISCONNECT), so that a stock socket.io-client sees "transport
//! close" and reconnects by itself, and one that follows the resume recipe
//! resumes where it was. Each socket is moved once, whoever asks first.

use rand::Rng;
use serde::Serialize;
use socketioxide::{adapter::Adapter, extract::SocketRef};

/// The event a client gets just before its transport is closed.
pub const SERVER_DRAINING: &str = "server-draining";

/// `server-draining {reconnectAfterMs}`
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ServerDraining {
    reconnect_after_ms: u64,
}

/// Marks (in its extensions) a socket whose transport is being closed: it
/// stays in the namespace until its session is closed, a moment later.
#[derive(Debug, Clone, Copy)]
struct Moving;

/// Whether this socket's transport is being closed already.
pub fn is_moving<A: Adapter>(socket: &SocketRef<A>) -> bool {
    socket.extensions.get::<Moving>().is_some()
}

/// Tells the client to move (a random delay up to `jitter_ms`) and closes its
/// transport. False, and nothing sent, when it is being moved already.
pub fn move_client<A: Adapter>(socket: &SocketRef<A>, jitter_ms: u64) -> bool {
    if socket.extensions.insert(Moving).is_some() {
        return false;
    }
    let delay = rand::rng().random_range(0..=jitter_ms);
    let _ = socket.emit(
        SERVER_DRAINING,
        &ServerDraining {
            reconnect_after_ms: delay,
        },
    );
    socket.close_transport();
    true
}
