//! What every client event declares about itself, so that registration,
//! validation and the fuzzer all work from the one table in
//! [`super::each`] instead of keeping their own lists of names.

use std::fmt::Display;

use serde_json::Value;
use socketioxide::{adapter::Adapter, extract::SocketRef};

use crate::protocol::ChatError;

/// A client event: implemented by a unit struct in the event's handler file
/// and listed once in [`super::each`].
pub trait ClientEvent {
    /// The Socket.IO event name clients emit.
    const NAME: &'static str;
    /// The payload once decoded and checked.
    type Request;

    /// Decodes and checks the payload, as the handler does before it touches
    /// anything: pure, so a refused event changes nothing.
    fn validate<E: Display>(data: Result<Value, E>) -> Result<Self::Request, ChatError>;

    /// Registers the event's handler on a socket, under [`Self::NAME`].
    fn register<A: Adapter>(self, socket: &SocketRef<A>);
}

/// Something done once for every client event of the table.
pub trait ForEachEvent {
    fn event<E: ClientEvent>(&mut self, event: E);
}
