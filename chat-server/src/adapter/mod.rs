//! Many servers act as one through Redis: the socketioxide-redis adapter
//! (broadcasts reach every server's sockets) over a driver that survives
//! Redis restarts, and a health loop that keeps `chat_redis_up` true to the
//! facts and wakes reconnects when Redis comes back.

mod connection;
mod driver;

pub use connection::RedisConnection;
pub use driver::ResilientDriver;

use std::{sync::Arc, time::Duration};

use crate::admin::metrics::Metrics;

/// The adapter type every handler is instantiated with when Redis is configured.
pub type RedisAdapter<E> = socketioxide_redis::CustomRedisAdapter<E, ResilientDriver>;

/// How often Redis is pinged. A ping also makes an idle connection notice that
/// Redis came back, so subscriptions are restored without waiting for traffic.
const HEALTH_INTERVAL: Duration = Duration::from_millis(500);

/// Adds `protocol=resp3` to a Redis URL that does not choose a protocol: the
/// adapter receives pub/sub messages as RESP3 pushes on a shared connection.
pub fn resp3_url(url: &str) -> String {
    if url.contains("protocol=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&protocol=resp3")
    } else {
        format!("{url}?protocol=resp3")
    }
}

/// Pings Redis forever on each connection, setting `chat_redis_up`.
pub fn watch_health(connections: Vec<RedisConnection>, metrics: Arc<Metrics>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(HEALTH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_up = true;
        loop {
            tick.tick().await;
            let mut up = true;
            for conn in &connections {
                let mut conn = conn.clone();
                let ping = redis::cmd("PING");
                let answer = tokio::time::timeout(
                    HEALTH_INTERVAL * 4,
                    ping.query_async::<String>(&mut conn),
                )
                .await;
                up &= matches!(answer, Ok(Ok(_)));
            }
            if !up {
                metrics.redis_errors_total.inc();
            }
            if up != was_up {
                if up {
                    tracing::info!("Redis is reachable again");
                } else {
                    tracing::warn!("Redis is unreachable; serving local clients only");
                }
            }
            metrics.redis_up.set(i64::from(up));
            was_up = up;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp3_is_added_only_when_no_protocol_is_chosen() {
        assert_eq!(resp3_url("redis://h:1"), "redis://h:1?protocol=resp3");
        assert_eq!(
            resp3_url("redis://h:1/0?timeout=1"),
            "redis://h:1/0?timeout=1&protocol=resp3"
        );
        assert_eq!(
            resp3_url("redis://h:1?protocol=resp3"),
            "redis://h:1?protocol=resp3"
        );
    }
}
