//! chat-server: a Socket.IO v4 server for AI conversations. Rooms, chat
//! messages with contiguous per-room sequence numbers, AI answers streamed in
//! batched chunks, Prometheus metrics on a separate admin port.

pub mod adapter;
mod admin;
mod ai;
pub mod answers;
pub mod auth;
mod client_addr;
pub mod config;
mod events;
pub mod fanout;
pub mod fuzzing;
mod limits;
mod origin;
pub mod protocol;
mod publish;
mod secret;
pub mod server;
mod state;
pub mod store;
mod web;
