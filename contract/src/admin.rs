//! The admin API on chat-server's admin port: what the kubelet probes, what
//! Prometheus and the operator's autoscaler scrape, and the drain API the
//! operator drives before it removes a pod.
//!
//! Drain API (needs `Authorization: Bearer <admin token>`):
//! - `GET    /drain`: the [`DrainStatus`];
//! - `POST   /drain`: starts a drain; `202 Accepted` with the status;
//! - `DELETE /drain`: cancels it; the status, or [`CANCEL_TOO_LATE`] once drained
//!   (a drained server cannot serve again).
//!
//! Shed API, for rebalancing (same token):
//! - `GET    /shed`: the [`ShedStatus`];
//! - `POST   /shed` with a [`ShedRequest`]: refuses new sessions (503, and
//!   `/readyz` 503) and closes that many connections' transports at that
//!   rate, refusing until [`SHED_HOLD_SECONDS`] after the request or after
//!   the last close; it replaces a shed in progress. `202 Accepted` with the status. A body that
//!   is not a valid [`ShedRequest`] gets `400` and changes nothing; a server
//!   that drains answers [`SHED_WHILE_DRAINING`] and changes nothing;
//! - `DELETE /shed`: stops shedding (new sessions are welcome again); the status.

use serde::{Deserialize, Serialize};

/// Prometheus text format.
pub const METRICS: &str = "/metrics";
/// Liveness: the process answers.
pub const HEALTHZ: &str = "/healthz";
/// Readiness: false while draining, so no new session lands here.
pub const READYZ: &str = "/readyz";
/// The drain API.
pub const DRAIN: &str = "/drain";

/// The shed API.
pub const SHED: &str = "/shed";

/// HTTP status of a `DELETE /drain` that came after the drain finished.
pub const CANCEL_TOO_LATE: u16 = 409;
/// HTTP status of a `POST /shed` to a server that drains (it moves every
/// client already).
pub const SHED_WHILE_DRAINING: u16 = 409;
/// The highest shed rate a server accepts, connections per second.
pub const SHED_RATE_MAX: u32 = 10_000;

/// The readiness probe the operator gives chat-server pods: `/readyz` every
/// this many seconds...
pub const READINESS_PERIOD_SECONDS: u32 = 5;
/// ...and not Ready after this many failures in a row.
pub const READINESS_FAILURES: u32 = 2;

/// How long a shed request makes a server refuse new sessions (and answer
/// `/readyz` 503): this long after the request, or after its last close if
/// that comes later. Load balancers that route by endpoints (ingress
/// controllers, Gateways) keep sending a pod's cookie-pinned clients back to
/// it until the kubelet has seen it not Ready (up to period × failures) and
/// the endpoints have dropped it; the extra 10 s cover that update and the
/// clients' reconnection delay, and let the operator renew a refusal every
/// `intervalSeconds` (15 by default) without a gap.
pub const SHED_HOLD_SECONDS: u64 = (READINESS_PERIOD_SECONDS * READINESS_FAILURES) as u64 + 10;

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

/// The body of `POST /shed`: refuse new sessions for [`SHED_HOLD_SECONDS`],
/// and move `connections` clients off this server (0: none, refuse only), at
/// most `per_second` of them per second (1..=[`SHED_RATE_MAX`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShedRequest {
    pub connections: u64,
    pub per_second: u32,
}

impl ShedRequest {
    /// Why a request is refused, if it is.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=SHED_RATE_MAX).contains(&self.per_second) {
            return Err(format!("perSecond must be 1..{SHED_RATE_MAX}"));
        }
        Ok(())
    }
}

/// Whether a server sheds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShedState {
    /// Not shedding: new sessions are welcome (unless the server drains).
    Idle,
    /// Closing connections' transports; new sessions get 503.
    Shedding,
}

/// The body of `GET /shed` (and of the other shed calls).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShedStatus {
    pub state: ShedState,
    /// Connections still to close in the shed in progress.
    pub remaining: u64,
    /// Connections this server has shed since it started.
    pub shed_total: u64,
    /// Sockets connected to this server now.
    pub sockets: usize,
}

/// The metrics the operator reads from `/metrics` (chat-server exports more:
/// docs/monitoring.md lists them all).
pub mod metrics {
    /// Gauge: Socket.IO sockets connected to this server, the autoscaler's load signal.
    pub const CONNECTED_SOCKETS: &str = "chat_connected_sockets";
    /// Gauge: 1 while this server sheds connections for a rebalance, else 0.
    pub const SHEDDING: &str = "chat_shedding";
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
    fn shed_requests_are_checked() {
        let ok: ShedRequest = serde_json::from_str(r#"{"connections":8,"perSecond":20}"#).unwrap();
        assert_eq!(ok.check(), Ok(()));
        for (body, refused) in [
            (r#"{"connections":0,"perSecond":20}"#, false),
            (r#"{"connections":8,"perSecond":0}"#, true),
            (r#"{"connections":8,"perSecond":10001}"#, true),
        ] {
            let request: ShedRequest = serde_json::from_str(body).unwrap();
            assert_eq!(request.check().is_err(), refused, "{body}");
        }
        for malformed in [
            r#"{"connections":-1,"perSecond":20}"#,
            r#"{"connections":8}"#,
            r#"{"connections":8,"perSecond":20,"extra":1}"#,
            r#""8""#,
        ] {
            assert!(
                serde_json::from_str::<ShedRequest>(malformed).is_err(),
                "{malformed}"
            );
        }
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
