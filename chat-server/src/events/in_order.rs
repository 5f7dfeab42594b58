//! One socket's events are handled in the order it sent them, like Node's
//! Socket.IO does. socketioxide runs every handler as its own task, so two
//! messages sent back to back could otherwise be published swapped. Extractors
//! run synchronously, in arrival order, before the task is spawned: the
//! [`InOrder`] extractor takes a ticket there, and the handler waits until
//! its ticket is served before doing anything.

use std::{
    collections::BTreeSet,
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use socketioxide::{
    adapter::Adapter,
    handler::{FromMessageParts, Value},
    socket::Socket,
};
use tokio::sync::Notify;

/// Per-socket ticket counter and the ticket being served. It lives as long
/// as its socket, so it is kept small: a `Notify` needs no allocation of its
/// own, where a watch channel took about 400 bytes per socket.
struct Sequencer {
    next_ticket: AtomicU64,
    serving: AtomicU64,
    /// Woken whenever `serving` moves on.
    moved: Notify,
    /// Tickets given up (events refused on arrival): passed over when reached.
    /// Also held while `serving` moves on, so that it moves one step at a time.
    skipped: Mutex<BTreeSet<u64>>,
}

impl Sequencer {
    fn new() -> Self {
        Self {
            next_ticket: AtomicU64::new(0),
            serving: AtomicU64::new(0),
            moved: Notify::new(),
            skipped: Mutex::default(),
        }
    }

    fn serving(&self) -> u64 {
        self.serving.load(Ordering::Acquire)
    }

    /// Serves the next ticket that was not given up. Callers hold `skipped`.
    fn advance(&self, skipped: &mut BTreeSet<u64>) {
        let mut now = self.serving() + 1;
        while skipped.remove(&now) {
            now += 1;
        }
        self.serving.store(now, Ordering::Release);
        self.moved.notify_waiters();
    }
}

/// Must be a handler's last parameter, so that it is only taken once every
/// other extractor has succeeded (a taken ticket must always be served).
pub struct InOrder {
    sequencer: Arc<Sequencer>,
    ticket: u64,
}

/// The ticket being served: while alive, this socket's later events wait;
/// dropping it serves the next ticket.
pub struct Serving(Arc<Sequencer>);

impl InOrder {
    /// Waits until every earlier event of this socket has been handled.
    pub async fn wait(self) -> Serving {
        loop {
            // Registered before the check, so that a move in between wakes it.
            let moved = self.sequencer.moved.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            if self.sequencer.serving() == self.ticket {
                break;
            }
            moved.await;
        }
        Serving(self.sequencer)
    }

    /// Gives the ticket up without waiting: for an event answered at once (a
    /// rate-limited one), so that a flood never queues behind earlier events.
    pub fn skip(self) {
        let mut skipped = self
            .sequencer
            .skipped
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if self.sequencer.serving() == self.ticket {
            self.sequencer.advance(&mut skipped);
        } else {
            skipped.insert(self.ticket);
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let mut skipped = self.0.skipped.lock().unwrap_or_else(|e| e.into_inner());
        self.0.advance(&mut skipped);
    }
}

impl<A: Adapter> FromMessageParts<A> for InOrder {
    type Error = Infallible;

    fn from_message_parts(
        socket: &Arc<Socket<A>>,
        _: &mut Value,
        _: &Option<i64>,
    ) -> Result<Self, Infallible> {
        let sequencer = socket
            .extensions
            .get::<Arc<Sequencer>>()
            .unwrap_or_else(|| {
                let fresh = Arc::new(Sequencer::new());
                socket.extensions.insert(fresh.clone());
                fresh
            });
        let ticket = sequencer.next_ticket.fetch_add(1, Ordering::Relaxed);
        Ok(InOrder { sequencer, ticket })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sequencer() -> Arc<Sequencer> {
        Arc::new(Sequencer::new())
    }

    #[tokio::test]
    async fn skipped_tickets_are_passed_over() {
        let sequencer = sequencer();
        let (first, second, third, fourth) = (
            ticket(&sequencer),
            ticket(&sequencer),
            ticket(&sequencer),
            ticket(&sequencer),
        );
        // Given up early (second), and once its ticket is served (third).
        second.skip();
        let serving = first.wait().await;
        drop(serving);
        third.skip();
        let _serving = fourth.wait().await;
        assert_eq!(sequencer.serving(), 3);
    }

    fn ticket(sequencer: &Arc<Sequencer>) -> InOrder {
        InOrder {
            sequencer: sequencer.clone(),
            ticket: sequencer.next_ticket.fetch_add(1, Ordering::Relaxed),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tickets_are_served_in_order_whatever_order_tasks_run_in() {
        let sequencer = sequencer();
        let tickets: Vec<InOrder> = (0..50).map(|_| ticket(&sequencer)).collect();
        let (done, mut order) = tokio::sync::mpsc::unbounded_channel();
        // Spawn in reverse: the last ticket's task starts first.
        let tasks: Vec<_> = tickets
            .into_iter()
            .enumerate()
            .rev()
            .map(|(i, ticket)| {
                let done = done.clone();
                tokio::spawn(async move {
                    let _serving = ticket.wait().await;
                    tokio::task::yield_now().await;
                    done.send(i).unwrap();
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        drop(done);
        let mut seen = Vec::new();
        while let Some(i) = order.recv().await {
            seen.push(i);
        }
        assert_eq!(seen, (0..50).collect::<Vec<_>>());
    }
}
