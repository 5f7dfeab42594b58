//! The receiving end: every room event another server published, on any
//! room channel this server listens on, goes to this server's members of
//! its room.

use std::sync::Arc;

use async_trait::async_trait;
use socketioxide::{SocketIo, adapter::Adapter};
use socketioxide_redis::drivers::ChanItem;
use tokio::sync::mpsc;

use super::{BUFFER, Listen};
use crate::{adapter::ResilientDriver, admin::metrics::Metrics, protocol::now_ms};

/// Subscribes channels on the Redis driver, their messages going to the
/// receiving task.
#[derive(Clone)]
pub struct DriverListener {
    driver: ResilientDriver,
    to: mpsc::Sender<ChanItem>,
}

impl DriverListener {
    /// A listener, and the messages of whatever it listens on, for [`receive`].
    pub fn new(driver: ResilientDriver) -> (Self, mpsc::Receiver<ChanItem>) {
        let (to, messages) = mpsc::channel(BUFFER);
        (Self { driver, to }, messages)
    }
}

#[async_trait]
impl Listen for DriverListener {
    async fn listen(&self, channel: &str) -> Result<(), redis::RedisError> {
        self.driver
            .listen_own(channel.to_owned(), self.to.clone())
            .await
    }

    async fn unlisten(&self, channel: &str) -> Result<(), redis::RedisError> {
        self.driver.unlisten_own(channel).await
    }
}

/// Emits each event of `messages` that did not come from `origin` (this
/// server) to this server's members of its room, until the senders are
/// gone. Redis restarts are the connection's business: it resubscribes by
/// itself.
pub fn receive<A: Adapter>(
    mut messages: mpsc::Receiver<ChanItem>,
    io: SocketIo<A>,
    metrics: Arc<Metrics>,
    origin: String,
) {
    tokio::spawn(async move {
        while let Some((_channel, payload)) = messages.recv().await {
            let Some((from, event)) = super::decode(&payload) else {
                tracing::warn!("a room event from Redis could not be read");
                continue;
            };
            if from == origin {
                continue;
            }
            metrics
                .cross_server_delay_seconds
                .observe(now_ms().saturating_sub(event.ts()) as f64 / 1000.0);
            let room = event.room().to_owned();
            if let Err(error) = event.emit_to(io.local().to(room.clone())).await {
                tracing::warn!(%error, %room, "some members did not receive an event");
            }
        }
    });
}
