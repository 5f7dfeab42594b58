//! A socketioxide-redis `Driver` that survives Redis restarts. The stock
//! driver keeps a dead connection after Redis goes away and never
//! resubscribes; this one rides on a [`RedisConnection`], which reconnects
//! with backoff and resubscribes every channel by itself (standalone or
//! cluster), with short timeouts so a dead Redis fails fast.
//!
//! It also observes the traffic it carries: publishes, messages received
//! and failures for `chat_redis_publish_total`,
//! `chat_redis_messages_received_total` and `chat_redis_errors_total`, and,
//! for room events broadcast by another server, the delay since their
//! origin `ts`.

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{Arc, OnceLock, RwLock},
};

use redis::{PushInfo, PushKind, RedisError, Value as RedisValue};
use socketioxide_core::{
    Uid, Value,
    adapter::remote_packet::{RequestIn, RequestTypeIn},
    packet::PacketData,
};
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use tokio::sync::mpsc;

use super::connection::RedisConnection;
use crate::{admin::metrics::Metrics, protocol::now_ms};

type Handlers = Arc<RwLock<HashMap<String, Handler>>>;

/// Where a subscribed channel's messages go.
struct Handler {
    tx: mpsc::Sender<ChanItem>,
    /// An adapter channel, whose messages the observer reads; not a channel
    /// of chatscale's own (crate::fanout), whose messages are no adapter
    /// requests.
    observed: bool,
}

#[derive(Clone)]
pub struct ResilientDriver {
    conn: RedisConnection,
    handlers: Handlers,
    observer: Arc<Observer>,
}

/// Watches adapter traffic for metrics.
struct Observer {
    metrics: Arc<Metrics>,
    /// This server's adapter id, learnt from its first publish.
    own_node: OnceLock<Uid>,
}

impl ResilientDriver {
    /// Connects to `url` (a seed node when `cluster`).
    pub async fn connect(
        url: &str,
        cluster: bool,
        metrics: Arc<Metrics>,
    ) -> Result<Self, RedisError> {
        let handlers: Handlers = Arc::default();
        let observer = Arc::new(Observer {
            metrics,
            own_node: OnceLock::new(),
        });
        let (route_to, watch) = (handlers.clone(), observer.clone());
        let push = move |message: PushInfo| {
            route(message, &route_to, &watch);
            Ok::<(), Infallible>(())
        };
        let conn = RedisConnection::connect(url, cluster, push).await?;
        Ok(Self {
            conn,
            handlers,
            observer,
        })
    }

    /// The shared connection, for health pings (which also wake a reconnect).
    pub fn connection(&self) -> RedisConnection {
        self.conn.clone()
    }

    /// Subscribes to `chan`, a channel of chatscale's own (crate::fanout),
    /// not the adapter's: its messages go to `to`, unread by the adapter
    /// traffic observer. Returns once Redis has confirmed the subscription.
    pub async fn listen_own(
        &self,
        chan: String,
        to: mpsc::Sender<ChanItem>,
    ) -> Result<(), RedisError> {
        self.listen(chan, to, false).await
    }

    /// Unsubscribes a channel of [`ResilientDriver::listen_own`].
    pub async fn unlisten_own(&self, chan: &str) -> Result<(), RedisError> {
        self.unlisten(chan).await
    }

    async fn listen(
        &self,
        chan: String,
        tx: mpsc::Sender<ChanItem>,
        observed: bool,
    ) -> Result<(), RedisError> {
        self.handlers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(chan.clone(), Handler { tx, observed });
        if let Err(error) = self.conn.clone().subscribe(&chan).await {
            self.handlers
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&chan);
            return Err(self.failed(error));
        }
        Ok(())
    }

    async fn unlisten(&self, chan: &str) -> Result<(), RedisError> {
        self.handlers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(chan);
        self.conn
            .clone()
            .unsubscribe(chan)
            .await
            .map_err(|e| self.failed(e))
    }

    fn failed(&self, error: RedisError) -> RedisError {
        self.observer.metrics.redis_errors_total.inc();
        error
    }
}

/// Hands a pub/sub message to the adapter stream subscribed to its channel.
fn route(message: PushInfo, handlers: &Handlers, observer: &Observer) {
    if !matches!(message.kind, PushKind::Message | PushKind::SMessage) {
        return;
    }
    let mut data = message.data.into_iter();
    let (Some(RedisValue::BulkString(channel)), Some(RedisValue::BulkString(payload))) =
        (data.next(), data.next())
    else {
        return;
    };
    observer.metrics.redis_messages_received_total.inc();
    let Ok(channel) = String::from_utf8(channel) else {
        return;
    };
    let handlers = handlers.read().unwrap_or_else(|e| e.into_inner());
    let Some(handler) = handlers.get(&channel) else {
        return;
    };
    if handler.observed {
        observer.observe_incoming(&payload);
    }
    if let Err(error) = handler.tx.try_send((channel.clone(), payload)) {
        tracing::warn!(%error, %channel, "subscriber stream full; a message was dropped");
    }
}

impl Observer {
    fn learn_own_node(&self, payload: &[u8]) {
        if self.own_node.get().is_none()
            && let Ok(request) = rmp_serde::from_slice::<RequestIn>(payload)
        {
            let _ = self.own_node.set(request.node_id);
        }
    }

    /// Records `chat_cross_server_delay_seconds` for room events that another
    /// server broadcast (they carry their origin `ts`).
    fn observe_incoming(&self, payload: &[u8]) {
        let Ok(request) = rmp_serde::from_slice::<RequestIn>(payload) else {
            return;
        };
        if Some(&request.node_id) == self.own_node.get() {
            return;
        }
        let RequestTypeIn::Broadcast(packet) = request.r#type else {
            return;
        };
        let PacketData::Event(Value::Str(text, _), _) = packet.inner else {
            return;
        };
        if let Some(ts) = origin_ts(&text) {
            let delay_ms = now_ms().saturating_sub(ts);
            self.metrics
                .cross_server_delay_seconds
                .observe(delay_ms as f64 / 1000.0);
        }
    }
}

/// The `ts` of a serialized event `["name", {..., "ts": N}]`.
fn origin_ts(event: &str) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Stamped {
        ts: u64,
    }
    let (_name, stamped): (serde::de::IgnoredAny, Stamped) = serde_json::from_str(event).ok()?;
    Some(stamped.ts)
}

impl Driver for ResilientDriver {
    type Error = RedisError;

    async fn publish(&self, chan: String, val: Vec<u8>) -> Result<(), Self::Error> {
        self.observer.learn_own_node(&val);
        self.observer.metrics.redis_publish_total.inc();
        self.conn
            .clone()
            .publish(&chan, &val)
            .await
            .map_err(|e| self.failed(e))
    }

    async fn subscribe(
        &self,
        chan: String,
        size: usize,
    ) -> Result<MessageStream<ChanItem>, Self::Error> {
        let (tx, rx) = mpsc::channel(size);
        self.listen(chan, tx, true).await?;
        Ok(MessageStream::new(rx))
    }

    async fn unsubscribe(&self, chan: String) -> Result<(), Self::Error> {
        self.unlisten(&chan).await
    }

    async fn num_serv(&self, chan: &str) -> Result<u16, Self::Error> {
        self.conn
            .clone()
            .subscribers(chan)
            .await
            .map_err(|e| self.failed(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_ts_is_read_from_serialized_events() {
        assert_eq!(
            origin_ts(r#"["message",{"room":"r","ts":1234,"text":"x"}]"#),
            Some(1234)
        );
        assert_eq!(origin_ts(r#"["message","no object"]"#), None);
        assert_eq!(origin_ts("not json"), None);
    }
}
