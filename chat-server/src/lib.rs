//! chat-server: a Socket.IO v4 server for AI conversations. Rooms, chat
//! messages with contiguous per-room sequence numbers, AI answers streamed in
//! batched chunks, Prometheus metrics on a separate admin port.

pub mod adapter;
pub mod admin;
pub mod ai;
pub mod answers;
pub mod auth;
pub mod client_addr;
pub mod config;
pub mod events;
pub mod fuzzing;
pub mod limits;
pub mod origin;
pub mod protocol;
pub mod publish;
pub mod secret;
pub mod server;
pub mod state;
pub mod store;
pub mod web;
