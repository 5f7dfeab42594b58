//! The admin API on chat-server's admin port: what the kubelet probes, what
//! Prometheus and the operator's autoscaler scrape, and the drain API the
//! operator drives before it removes a pod.
//!
//! Drain API (needs `Authorization: Bearer <admin token>`):
//! - `GET    /drain`: the [`DrainStatus`];
//! - `POST   /drain`: starts a drain; `202 Accepted` with the status;
//! - `DELETE /drain`: cancels it; the status, or [`CANCEL_TOO_LATE`] once drained
//!   (a drained server cannot serve again).

use serde::{Deserialize, Serialize};

/// Prometheus text format.
pub const METRICS: &str = "/metrics";
/// Liveness: the process answers.
pub const HEALTHZ: &str = "/healthz";
/// Readiness: false while draining, so no new session lands here.
pub const READYZ: &str = "/readyz";
/// The drain API.
pub const DRAIN: &str = "/drain";

/// HTTP status of a `DELETE /drain` that came after the drain finished.
pub const CANCEL_TOO_LATE: u16 = 409;

/// `http://<address>` and a path of this API.
pub fn url(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}

/// Where a server is in its drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DrainState {
    Serving,
    Draining,
    /// Every client has left and every answer has ended: the pod may go.
    Drained,
}

/// The body of `GET /drain` (and of the other drain calls).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrainStatus {
    pub state: DrainState,
    /// Sockets still connected to this server.
    pub sockets: usize,
    /// AI answers this server is still streaming.
    pub active_streams: i64,
    /// Milliseconds since the Unix epoch; absent while serving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<u64>,
}

/// The metrics the operator reads from `/metrics` (chat-server exports more:
/// docs/monitoring.md lists them all).
pub mod metrics {
    /// Gauge: Socket.IO sockets connected to this server, the autoscaler's load signal.
    pub const CONNECTED_SOCKETS: &str = "chat_connected_sockets";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drain_status_reads_as_it_is_written() {
        let status = DrainStatus {
            state: DrainState::Drained,
            sockets: 0,
            active_streams: 0,
            started_at: Some(1),
        };
        let text = serde_json::to_string(&status).unwrap();
        assert_eq!(
            text,
            r#"{"state":"drained","sockets":0,"activeStreams":0,"startedAt":1}"#
        );
        assert_eq!(serde_json::from_str::<DrainStatus>(&text).unwrap(), status);
        assert!(
            serde_json::from_str::<DrainStatus>(
                r#"{"state":"done","sockets":0,"activeStreams":0}"#
            )
            .is_err()
        );
    }

    #[test]
    fn urls_join_once() {
        assert_eq!(
            url("http://10.0.0.1:9090", DRAIN),
            "http://10.0.0.1:9090/drain"
        );
        assert_eq!(
            url("http://10.0.0.1:9090/", METRICS),
            "http://10.0.0.1:9090/metrics"
        );
    }
}
