//! Prometheus metrics of one chat-server. Names are a contract: the operator's
//! autoscaler scrapes `chat_connected_sockets`, dashboards use the rest.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// Socket.IO sockets connected to this server.
    pub connected_sockets: IntGauge,
    /// Rooms with at least one member on this server.
    pub rooms: IntGauge,
    /// `message` events published to rooms (chat lines and AI prompts).
    pub messages_total: IntCounter,
    /// AI answers being streamed by this server now.
    pub ai_streams_active: IntGauge,
    /// AI answers finished, by outcome (`complete` or `error`).
    pub ai_streams_total: IntCounterVec,
    /// `ai-response-stream` events published.
    pub ai_stream_chunks_total: IntCounter,
    /// Provider tokens streamed.
    pub ai_tokens_total: IntCounter,
    /// From `ai-query` received to the first chunk emitted.
    pub ai_first_chunk_seconds: Histogram,
    /// From a `message` event received to its broadcast emitted.
    pub message_handling_seconds: Histogram,
    /// Events answered with an error ack, by event and code.
    pub events_rejected_total: IntCounterVec,
    /// 1 while this server drains.
    pub draining: IntGauge,
    /// Woken whenever an AI answer ends (not a metric).
    pub stream_ended: tokio::sync::Notify,
    /// Sockets still connected while draining.
    pub drain_remaining_sockets: IntGauge,
    /// 1 while this server sheds (refreshed at scrape time).
    pub shedding: IntGauge,
    /// Connections this server has shed.
    pub shed_connections_total: IntCounter,
    /// 1 while Redis answers (always 1 without Redis).
    pub redis_up: IntGauge,
    /// Adapter messages published to Redis.
    pub redis_publish_total: IntCounter,
    /// Pub/sub messages received from Redis, on every channel.
    pub redis_messages_received_total: IntCounter,
    /// Room event channels this server is subscribed to (crate::fanout).
    pub room_channels: IntGauge,
    /// Failed adapter operations (publish, subscribe, health ping).
    pub redis_errors_total: IntCounter,
    /// Room store reads or writes that failed.
    pub store_errors_total: IntCounter,
    /// From an event's origin timestamp to its arrival from another server.
    pub cross_server_delay_seconds: Histogram,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let metrics = Self {
            connected_sockets: IntGauge::new(
                chatscale_contract::admin::metrics::CONNECTED_SOCKETS,
                "Socket.IO sockets connected to this server",
            )
            .unwrap(),
            rooms: IntGauge::new(
                "chat_rooms",
                "Rooms with at least one member on this server",
            )
            .unwrap(),
            messages_total: IntCounter::new(
                "chat_messages_total",
                "message events published to rooms",
            )
            .unwrap(),
            ai_streams_active: IntGauge::new(
                "chat_ai_streams_active",
                "AI answers being streamed by this server",
            )
            .unwrap(),
            ai_streams_total: IntCounterVec::new(
                Opts::new("chat_ai_streams_total", "AI answers finished, by outcome"),
                &["outcome"],
            )
            .unwrap(),
            ai_stream_chunks_total: IntCounter::new(
                "chat_ai_stream_chunks_total",
                "ai-response-stream events published",
            )
            .unwrap(),
            ai_tokens_total: IntCounter::new("chat_ai_tokens_total", "AI provider tokens streamed")
                .unwrap(),
            ai_first_chunk_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "chat_ai_first_chunk_seconds",
                    "From ai-query received to the first chunk emitted",
                )
                .buckets(vec![
                    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ]),
            )
            .unwrap(),
            message_handling_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "chat_message_handling_seconds",
                    "From a message event received to its broadcast emitted",
                )
                .buckets(vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    1.0,
                ]),
            )
            .unwrap(),
            events_rejected_total: IntCounterVec::new(
                Opts::new(
                    "chat_events_rejected_total",
                    "Events answered with an error ack, by event and code",
                ),
                &["event", "code"],
            )
            .unwrap(),
            draining: IntGauge::new("chat_draining", "1 while this server drains").unwrap(),
            stream_ended: tokio::sync::Notify::new(),
            drain_remaining_sockets: IntGauge::new(
                "chat_drain_remaining_sockets",
                "Sockets still connected while draining",
            )
            .unwrap(),
            shedding: IntGauge::new("chat_shedding", "1 while this server sheds connections")
                .unwrap(),
            shed_connections_total: IntCounter::new(
                "chat_shed_connections_total",
                "Connections this server has shed (their transports closed)",
            )
            .unwrap(),
            redis_up: IntGauge::new(
                "chat_redis_up",
                "1 while Redis answers (always 1 without Redis)",
            )
            .unwrap(),
            redis_publish_total: IntCounter::new(
                "chat_redis_publish_total",
                "Adapter messages published to Redis",
            )
            .unwrap(),
            redis_messages_received_total: IntCounter::new(
                "chat_redis_messages_received_total",
                "Pub/sub messages received from Redis, on every channel",
            )
            .unwrap(),
            room_channels: IntGauge::new(
                "chat_room_channels",
                "Room event channels this server is subscribed to",
            )
            .unwrap(),
            redis_errors_total: IntCounter::new(
                "chat_redis_errors_total",
                "Failed adapter operations (publish, subscribe, health ping)",
            )
            .unwrap(),
            store_errors_total: IntCounter::new(
                "chat_store_errors_total",
                "Room store reads or writes that failed",
            )
            .unwrap(),
            cross_server_delay_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "chat_cross_server_delay_seconds",
                    "From an event's origin timestamp to its arrival from another server",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                ]),
            )
            .unwrap(),
            registry,
        };
        metrics.redis_up.set(1);
        // Every outcome is exported from the start, at 0: a series that
        // appears with its first increment hides that increment from rate(),
        // so the first failed answers would be missed by the alerts' ratio.
        for outcome in ["complete", "error", "interrupted"] {
            metrics.ai_streams_total.with_label_values(&[outcome]);
        }
        let collectors: [Box<dyn prometheus::core::Collector>; 21] = [
            Box::new(metrics.connected_sockets.clone()),
            Box::new(metrics.rooms.clone()),
            Box::new(metrics.messages_total.clone()),
            Box::new(metrics.ai_streams_active.clone()),
            Box::new(metrics.ai_streams_total.clone()),
            Box::new(metrics.ai_stream_chunks_total.clone()),
            Box::new(metrics.ai_tokens_total.clone()),
            Box::new(metrics.ai_first_chunk_seconds.clone()),
            Box::new(metrics.message_handling_seconds.clone()),
            Box::new(metrics.events_rejected_total.clone()),
            Box::new(metrics.draining.clone()),
            Box::new(metrics.drain_remaining_sockets.clone()),
            Box::new(metrics.shedding.clone()),
            Box::new(metrics.shed_connections_total.clone()),
            Box::new(metrics.redis_up.clone()),
            Box::new(metrics.redis_publish_total.clone()),
            Box::new(metrics.redis_messages_received_total.clone()),
            Box::new(metrics.room_channels.clone()),
            Box::new(metrics.redis_errors_total.clone()),
            Box::new(metrics.store_errors_total.clone()),
            Box::new(metrics.cross_server_delay_seconds.clone()),
        ];
        for collector in collectors {
            metrics.registry.register(collector).unwrap();
        }
        metrics
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding to memory cannot fail");
        String::from_utf8(out).expect("prometheus text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Counts an AI answer as active for as long as it lives, and wakes whoever
/// waits for answers to end (a drain) when it does.
pub struct ActiveStream<'a>(&'a Metrics);

impl<'a> ActiveStream<'a> {
    pub fn start(metrics: &'a Metrics) -> Self {
        metrics.ai_streams_active.inc();
        Self(metrics)
    }
}

impl Drop for ActiveStream<'_> {
    fn drop(&mut self) {
        self.0.ai_streams_active.dec();
        self.0.stream_ended.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_contract_metric_is_exposed() {
        let metrics = Metrics::new();
        metrics
            .ai_streams_total
            .with_label_values(&["complete"])
            .inc();
        metrics
            .events_rejected_total
            .with_label_values(&["join", "invalid_room"])
            .inc();
        let text = metrics.render();
        for name in [
            "chat_connected_sockets",
            "chat_rooms",
            "chat_messages_total",
            "chat_ai_streams_active",
            "chat_ai_stream_chunks_total",
            "chat_ai_tokens_total",
            "chat_ai_first_chunk_seconds_bucket",
            "chat_message_handling_seconds_bucket",
            "chat_draining",
            "chat_drain_remaining_sockets",
            "chat_shedding",
            "chat_shed_connections_total",
            "chat_redis_up",
            "chat_redis_publish_total",
            "chat_redis_errors_total",
            "chat_redis_messages_received_total",
            "chat_room_channels",
            "chat_cross_server_delay_seconds_bucket",
            "chat_ai_streams_total",
            "chat_events_rejected_total",
        ] {
            assert!(
                text.contains(&format!("\n{name}")),
                "{name} missing from\n{text}"
            );
        }
    }

    #[test]
    fn an_active_stream_counts_until_dropped() {
        let metrics = Metrics::new();
        {
            let _a = ActiveStream::start(&metrics);
            let _b = ActiveStream::start(&metrics);
            assert_eq!(metrics.ai_streams_active.get(), 2);
        }
        assert_eq!(metrics.ai_streams_active.get(), 0);
    }
}
