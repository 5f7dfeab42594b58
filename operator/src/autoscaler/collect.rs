//! The collector: what the autoscaler decides on. Every running chat-server
//! pod's admin `/metrics` is scraped concurrently (bounded in-flight, a
//! timeout per pod) and parsed with prometheus-parse; Redis throughput comes
//! from `INFO stats`. A ready pod that does not answer makes the connection
//! total unknown, so the policy holds instead of shrinking blind.

use std::time::Duration;

use chatscale_contract::admin::{
    self,
    metrics::{CONNECTED_SOCKETS, SHEDDING},
};
use futures::{StreamExt, stream};

use super::{
    decide::{Busiest, Signals},
    rebalance::Load,
};

/// What one pod's `/metrics` said.
#[derive(Debug, Clone, PartialEq)]
pub struct PodMetrics {
    pub connections: u64,
    /// It sheds connections for a rebalance (`chat_shedding` is 1).
    pub shedding: bool,
}

/// A pod to scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub pod: String,
    /// The pod's admin API, `http://<pod ip>:9090`.
    pub admin: String,
    /// Ready pods must report; starting pods may not yet.
    pub ready: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scrape {
    pub target: Target,
    pub metrics: Result<PodMetrics, String>,
}

/// Reads the gauge the autoscaler needs from Prometheus text.
pub fn parse(text: &str) -> Result<PodMetrics, String> {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).map_err(|e| e.to_string())?;
    let gauge = |name: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .and_then(|s| match s.value {
                prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v)
                | prometheus_parse::Value::Counter(v) => Some(v),
                _ => None,
            })
    };
    let connections =
        gauge(CONNECTED_SOCKETS).ok_or(format!("no {CONNECTED_SOCKETS} in /metrics"))?;
    Ok(PodMetrics {
        connections: connections.max(0.0) as u64,
        // Servers from before rebalancing do not export it: they never shed.
        shedding: gauge(SHEDDING).is_some_and(|v| v > 0.0),
    })
}

/// Scrapes every target, at most `in_flight` at once, each within `timeout`.
pub async fn scrape_all(targets: Vec<Target>, in_flight: usize, timeout: Duration) -> Vec<Scrape> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("a plain HTTP client builds");
    stream::iter(targets)
        .map(|target| {
            let client = client.clone();
            async move {
                let metrics = scrape_one(&client, &admin::url(&target.admin, admin::METRICS)).await;
                Scrape { target, metrics }
            }
        })
        .buffer_unordered(in_flight.max(1))
        .collect()
        .await
}

async fn scrape_one(client: &reqwest::Client, url: &str) -> Result<PodMetrics, String> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("scrape failed: {e}"))?;
    if !response.status().is_success() {
        return Err(format!(
            "scrape answered HTTP {}",
            response.status().as_u16()
        ));
    }
    parse(&response.text().await.map_err(|e| e.to_string())?)
}

/// The policy's input: total connections if every ready pod reported, and
/// the busiest ready pod unless rebalancing can move its connections.
pub fn signals(scrapes: &[Scrape], redis_ops: Option<f64>, can_rebalance: bool) -> Signals {
    let complete = scrapes.iter().all(|s| s.metrics.is_ok() || !s.target.ready);
    let total = scrapes
        .iter()
        .filter_map(|s| s.metrics.as_ref().ok())
        .map(|m| m.connections)
        .sum();
    let stuck = Busiest::of(&loads(scrapes)).filter(|_| complete && !can_rebalance);
    Signals {
        connections: complete.then_some(total),
        redis_ops,
        stuck,
    }
}

/// The pods that serve, for rebalancing: the ready pods that reported, and
/// the pods that shed (a shedding pod is not Ready, so that load balancers
/// that route by endpoints place new sessions elsewhere, but its connections
/// are part of the mean).
pub fn loads(scrapes: &[Scrape]) -> Vec<Load<String>> {
    scrapes
        .iter()
        .filter_map(|s| {
            let metrics = s.metrics.as_ref().ok()?;
            (s.target.ready || metrics.shedding).then_some(())?;
            Some(Load {
                pod: s.target.pod.clone(),
                connections: metrics.connections,
                shedding: metrics.shedding,
            })
        })
        .collect()
}

/// `instantaneous_ops_per_sec` from Redis `INFO stats`; `None` if Redis cannot be read.
pub async fn redis_ops(url: &str) -> Option<f64> {
    let client = redis::Client::open(url).ok()?;
    let mut conn = tokio::time::timeout(
        Duration::from_secs(3),
        client.get_multiplexed_async_connection(),
    )
    .await
    .ok()?
    .ok()?;
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut conn)
        .await
        .ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix("instantaneous_ops_per_sec:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# HELP chat_connected_sockets Socket.IO sockets connected to this server\n\
        # TYPE chat_connected_sockets gauge\nchat_connected_sockets 42\n\
        # TYPE chat_ai_streams_active gauge\nchat_ai_streams_active 3\n\
        # TYPE chat_draining gauge\nchat_draining 0\n";

    #[test]
    fn parses_the_chat_server_gauges() {
        assert_eq!(
            parse(SAMPLE).unwrap(),
            PodMetrics {
                connections: 42,
                shedding: false
            }
        );
        let shedding = format!("{SAMPLE}# TYPE chat_shedding gauge\nchat_shedding 1\n");
        assert!(parse(&shedding).unwrap().shedding);
        assert!(parse("# nothing here\nother_metric 1\n").is_err());
    }

    fn target(pod: &str, admin: String, ready: bool) -> Target {
        Target {
            pod: pod.into(),
            admin,
            ready,
        }
    }

    /// A local HTTP server standing in for a pod's admin port.
    async fn pod(behaviour: &'static str) -> String {
        use axum::{Router, http::StatusCode, routing::get};
        let app = Router::new().route(
            admin::METRICS,
            get(move || async move {
                match behaviour {
                    "ok" => (StatusCode::OK, SAMPLE.to_owned()),
                    "broken" => (StatusCode::INTERNAL_SERVER_ERROR, String::new()),
                    _ => {
                        std::future::pending::<()>().await;
                        unreachable!()
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{address}")
    }

    #[tokio::test]
    async fn a_silent_ready_pod_makes_the_total_unknown() {
        let (a, b, hung, broken) = (
            pod("ok").await,
            pod("ok").await,
            pod("hang").await,
            pod("broken").await,
        );
        let all_ok = scrape_all(
            vec![target("a", a.clone(), true), target("b", b.clone(), true)],
            4,
            Duration::from_secs(2),
        )
        .await;
        assert_eq!(signals(&all_ok, None, true).connections, Some(84));
        assert_eq!(
            signals(&all_ok, None, false).stuck,
            Some(Busiest {
                connections: 42,
                ready: 2
            }),
            "without rebalancing the busiest pod counts"
        );

        let started = std::time::Instant::now();
        let with_hung = scrape_all(
            vec![target("a", a.clone(), true), target("h", hung, true)],
            4,
            Duration::from_millis(300),
        )
        .await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the timeout bounds the scrape"
        );
        assert_eq!(
            signals(&with_hung, None, true).connections,
            None,
            "a ready pod did not answer"
        );

        let starting = scrape_all(
            vec![target("a", a, true), target("s", broken, false)],
            4,
            Duration::from_secs(2),
        )
        .await;
        assert_eq!(
            signals(&starting, Some(10.0), true),
            Signals::new(Some(42), Some(10.0)),
            "a starting pod may be silent"
        );
    }
}
