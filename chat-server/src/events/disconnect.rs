//! When a socket goes away: it is no longer a member of its rooms here, so
//! this server may stop listening on their channels (crate::fanout), and
//! whatever waits for its departure (the token expiry timer) is told.
//! socketioxide keeps one disconnect handler per socket: this is it.

use socketioxide::{
    adapter::Adapter,
    extract::{SocketRef, State},
};
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// Cancelled when the socket disconnects (a socket extension).
#[derive(Clone, Default)]
pub(super) struct Departure(pub CancellationToken);

pub(super) fn register<A: Adapter>(socket: &SocketRef<A>) {
    socket.on_disconnect(on_disconnect::<A>);
}

async fn on_disconnect<A: Adapter>(socket: SocketRef<A>, State(state): State<AppState>) {
    // Not `socket.rooms()`: a client that sends DISCONNECT and then closes
    // its transport can have them emptied before this handler runs
    // (docs/socketioxide.md).
    state.room_subscriptions.disconnected(socket.id);
    if let Some(Departure(gone)) = socket.extensions.get::<Departure>() {
        gone.cancel();
    }
}
