//! One owner for a running AI answer's life. Before it starts, its places
//! are reserved under the per-user and per-room caps, over every server
//! (`reservation`, counted in the `ledger`: in memory, or in Redis). It is
//! delivered to its room (`deliver`) and gives its places back when it ends.
//! While it runs, nothing is renewed per answer: each server sends one
//! heartbeat per second, and when a server's heartbeat lapses a survivor
//! closes each of its answers with a final `interrupted` chunk, once, and
//! gives their places back (`watch`).

mod deliver;
mod ledger;
mod memory;
mod redis;
mod reservation;
mod watch;

pub use deliver::deliver;
pub use ledger::{Answer, AnswerLedger, Busy, Caps};
pub use memory::MemoryLedger;
pub use redis::RedisLedger;
pub use reservation::{Answers, Reservation};
pub use watch::watch;
