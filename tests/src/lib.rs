//! Test support shared by the workspace's end-to-end tests, one job per
//! module: the real chat-server binary as a process, a real Socket.IO client,
//! a real redis-server, waiting for conditions, schema checks of Kubernetes
//! objects, the JS client fleet, and the test control plane (`cluster`).

mod chat_server;
pub mod cluster;
pub mod fleet;
mod paths;
mod redis;
mod schemas;
mod socket_client;
mod wait;

pub use chat_server::ChatServer;
pub use paths::{chat_server_bin, free_port, workspace_root};
pub use redis::{RedisServer, RedisTraffic};
pub use schemas::kubernetes_validate;
pub use socket_client::SocketClient;
pub use wait::{wait_for, wait_until};
