//! Socket.IO event handlers of namespace `/`. Each client event has its own
//! file, and [`each`] is the one table of them: registration, validation
//! ([`validate::check_event`]) and the fuzzer all walk it. Every event answers
//! its ack with `{ok: ...}` or `{error: {code, message}}`. Events without a
//! handler are ignored by socketioxide.

// A handler file whose event is missing from the table is dead code: make
// that a compile error, not a warning.
#![deny(dead_code)]

mod admit;
mod ai_query;
pub mod client_event;
mod connect;
mod disconnect;
mod in_order;
mod join;
mod leave;
mod message;
mod resume;
pub mod validate;

use socketioxide::{SocketIo, adapter::Adapter, extract::SocketRef, handler::ConnectHandler};
use socketioxide_core::adapter::DefinedAdapter;

use client_event::{ClientEvent, ForEachEvent};

/// Every client event the server handles. Adding one: its handler file
/// (a unit struct implementing [`ClientEvent`]) and a line here.
pub fn each(visit: &mut impl ForEachEvent) {
    visit.event(join::Join);
    visit.event(leave::Leave);
    visit.event(message::Message);
    visit.event(ai_query::AiQuery);
    visit.event(resume::Resume);
}

/// The names of every client event, in table order.
pub fn names() -> Vec<&'static str> {
    struct Names(Vec<&'static str>);
    impl ForEachEvent for Names {
        fn event<E: ClientEvent>(&mut self, _: E) {
            self.0.push(E::NAME);
        }
    }
    let mut names = Names(Vec::new());
    each(&mut names);
    names.0
}

/// Serves namespace `/` on `io`. Both connect middlewares run before the
/// CONNECT answer goes out: [`connect::admit_socket`] first, then
/// [`register_events`], so a refused socket gets no handlers, and an event a
/// client sends right after connecting always finds its handler (socketioxide
/// runs the connect handler only after the CONNECT answer, too late for that).
pub fn serve<A: Adapter + DefinedAdapter>(io: &SocketIo<A>) -> A::InitRes {
    // `with` puts a middleware before those already there.
    io.ns(
        "/",
        on_connect.with(register_events).with(connect::admit_socket),
    )
}

async fn on_connect<A: Adapter>(socket: SocketRef<A>) {
    tracing::debug!(sid = %socket.id, "socket connected");
}

/// Registers the handler of every event of the table on a new socket.
async fn register_events<A: Adapter>(socket: SocketRef<A>) -> Result<(), std::convert::Infallible> {
    struct Register<'a, A: Adapter>(&'a SocketRef<A>);
    impl<A: Adapter> ForEachEvent for Register<'_, A> {
        fn event<E: ClientEvent>(&mut self, event: E) {
            event.register(self.0);
        }
    }
    each(&mut Register(&socket));
    disconnect::register(&socket);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_fit_the_fuzz_input_format() {
        let names = names();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        // The fuzz input's first line names its event.
        assert!(
            names
                .iter()
                .all(|name| !name.is_empty() && !name.contains('\n'))
        );
    }
}
