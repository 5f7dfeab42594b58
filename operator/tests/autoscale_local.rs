//! The autoscaler end to end on this machine, with no Kubernetes: a real
//! redis-server, real chat-server processes, real nginx with sticky
//! upstreams and real socket.io-client clients that follow the
//! reconnect-and-resume recipe (the JS fleet, `tests/js/tools/fleet.mjs`).
//! The autoscaler is the operator's own control loop
//! ([`Autoscaler::tick`]) on a [`LocalCluster`]: pods are chat-server
//! processes in fixed port slots, and marks and replicas act on them the way
//! a ReplicaSet does (marked pods go first).
//!
//! Connections ramp from 0 to 3x the target: it grows to 3 servers. One
//! server hangs (SIGSTOP), so its `/metrics` fail: nothing shrinks while the
//! load is low. It recovers: the two emptiest servers are drained and
//! stopped, and every remaining client holds every room event exactly once.
//!
//! A second test scales on Redis ops/s alone, read from the real Redis's
//! `INFO stats`: traffic through Redis adds a server, its end removes it.
//!
//! A third rebalances: two servers hold every client when a third starts
//! empty (a scale-up); the autoscaler asks the two to shed, their clients
//! reconnect through nginx to the new server, and the busiest server ends
//! within the dead zone of the mean, with no room event missing.

use std::{
    collections::BTreeSet,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use chatscale_operator::{
    api::AutoscalingSpec,
    autoscaler::{
        admin_client::AdminClient,
        collect::{self, Target},
        control::{Autoscaler, Cluster, Metrics, Timing},
        drain::Workload,
        status::AutoscalerStatus,
    },
    controller::Reason,
};
use chatscale_tests::{
    ChatServer, RedisServer, RedisTraffic, chat_server_bin, fleet::Fleet, free_port, wait_until,
};
use serde_json::{Value, json};
use tokio::process::Command;

const TOKEN: &str = "autoscale-local-test-token";
const TARGET: i32 = 10;
/// The Events of a scale-up and then a scale-down that drained its pods.
const UP_THEN_DRAINED_DOWN: [Reason; 4] = [
    Reason::ScaledUp,
    Reason::DrainStarted,
    Reason::DrainCompleted,
    Reason::ScaledDown,
];

/// Chat-server processes in fixed port slots (nginx knows every slot).
struct Pods {
    bin: PathBuf,
    args: Vec<String>,
    slots: Vec<(u16, u16)>,
    running: tokio::sync::Mutex<Vec<Option<ChatServer>>>,
    marked: Mutex<BTreeSet<String>>,
    /// Pods stopped by a scale-down, with whether they were marked.
    removed: Mutex<Vec<(String, bool)>>,
}

fn pod_name(slot: usize) -> String {
    format!("chat-{slot}")
}

impl Pods {
    async fn live(&self) -> usize {
        self.running.lock().await.iter().flatten().count()
    }

    async fn pid(&self, pod: &str) -> Option<u32> {
        let running = self.running.lock().await;
        (0..running.len())
            .find(|i| pod_name(*i) == pod)
            .and_then(|i| running[i].as_ref()?.pid())
    }

    async fn start(&self, slot: usize) -> anyhow::Result<ChatServer> {
        let (port, admin) = self.slots[slot];
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        ChatServer::start_on(&self.bin, port, admin, &args).await
    }
}

#[async_trait]
impl Workload for Pods {
    async fn mark_for_deletion(&self, pod: &str) -> anyhow::Result<()> {
        self.marked.lock().unwrap().insert(pod.to_owned());
        Ok(())
    }

    async fn unmark(&self, pod: &str) -> anyhow::Result<()> {
        self.marked.lock().unwrap().remove(pod);
        Ok(())
    }

    /// Starts servers in free slots, or stops marked servers first (then the highest slots).
    async fn set_replicas(&self, replicas: i32) -> anyhow::Result<()> {
        let mut running = self.running.lock().await;
        let want = replicas.max(0) as usize;
        while running.iter().flatten().count() < want {
            let slot = running
                .iter()
                .position(Option::is_none)
                .expect("a free slot");
            running[slot] = Some(self.start(slot).await?);
        }
        while running.iter().flatten().count() > want {
            let marked = self.marked.lock().unwrap().clone();
            let slot = (0..running.len())
                .find(|i| running[*i].is_some() && marked.contains(&pod_name(*i)))
                .or_else(|| (0..running.len()).rev().find(|i| running[*i].is_some()))
                .expect("a running pod");
            let server = running[slot].take().expect("running");
            let name = pod_name(slot);
            self.removed
                .lock()
                .unwrap()
                .push((name.clone(), marked.contains(&name)));
            self.marked.lock().unwrap().remove(&name);
            server.stop().await?;
        }
        Ok(())
    }

    async fn replace(&self, pod: &str) -> anyhow::Result<()> {
        let mut running = self.running.lock().await;
        let slot = (0..running.len())
            .find(|i| pod_name(*i) == pod)
            .expect("a known pod");
        if let Some(server) = running[slot].take() {
            server.stop().await?;
        }
        running[slot] = Some(self.start(slot).await?);
        Ok(())
    }
}

/// The pods as the autoscaler sees a cluster; Events and status are kept for the asserts.
struct LocalCluster {
    pods: Arc<Pods>,
    /// Where Redis ops/s are read (`INFO stats`), when the test scales on them.
    redis_url: Option<String>,
    events: Mutex<Vec<(Duration, Reason)>>,
    /// Every status the autoscaler wrote, in order.
    statuses: Mutex<Vec<Value>>,
    started: Instant,
}

impl LocalCluster {
    fn new(pods: Arc<Pods>, redis_url: Option<String>) -> Arc<Self> {
        Arc::new(Self {
            pods,
            redis_url,
            events: Mutex::default(),
            statuses: Mutex::default(),
            started: Instant::now(),
        })
    }

    /// The operator's control loop on this cluster, one evaluation a second.
    fn autoscale(
        self: &Arc<Self>,
        spec: AutoscalingSpec,
        metrics: Arc<Metrics>,
    ) -> tokio::task::JoinHandle<()> {
        let cluster = self.clone();
        let dynamic: Arc<dyn Cluster> = self.clone();
        tokio::spawn(async move {
            let mut autoscaler = Autoscaler::default();
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                let now = 1 + cluster.started.elapsed().as_secs();
                let timing = Timing {
                    drain_timeout: Duration::from_secs(30),
                    drain_stagger: Duration::from_secs(1),
                };
                if let Err(error) = autoscaler
                    .tick(&dynamic, &spec, timing, &metrics, now)
                    .await
                {
                    eprintln!("autoscaler tick failed: {error:#}");
                }
            }
        })
    }

    fn events(&self) -> Vec<Reason> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|(_, r)| *r)
            .collect()
    }
}

#[async_trait]
impl Cluster for LocalCluster {
    async fn targets(&self) -> anyhow::Result<Vec<Target>> {
        let running = self.pods.running.lock().await;
        Ok(running
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                Some(Target {
                    pod: pod_name(i),
                    admin: s.as_ref()?.admin_url.clone(),
                    ready: true,
                })
            })
            .collect())
    }

    async fn redis_ops(&self) -> Option<f64> {
        collect::redis_ops(self.redis_url.as_deref()?).await
    }

    async fn replicas(&self) -> anyhow::Result<i32> {
        Ok(self.pods.live().await as i32)
    }

    fn workload(&self) -> Arc<dyn Workload> {
        self.pods.clone()
    }

    async fn admin(&self) -> Arc<AdminClient> {
        Arc::new(AdminClient::new(TOKEN.into()))
    }

    async fn event(&self, reason: Reason, note: String) {
        let at = self.started.elapsed();
        eprintln!("[{:>6.2} s] {reason}: {note}", at.as_secs_f64());
        self.events.lock().unwrap().push((at, reason));
    }

    async fn status(&self, status: AutoscalerStatus) -> anyhow::Result<()> {
        // As the API server would get it.
        self.statuses
            .lock()
            .unwrap()
            .push(serde_json::to_value(status)?);
        Ok(())
    }
}

/// Sends SIG`name` to a process of this test.
async fn signal(name: &str, pid: u32) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .await?;
    anyhow::ensure!(status.success(), "kill -{name} {pid} failed");
    Ok(())
}

/// `slots` port slots of chat-servers on `redis`, with the drain API's token.
fn pods(redis: &RedisServer, slots: usize) -> anyhow::Result<Arc<Pods>> {
    let token_file = std::env::temp_dir().join(format!(
        "chatscale-autoscale-{}-{}",
        std::process::id(),
        redis.url.rsplit(':').next().unwrap_or_default()
    ));
    std::fs::write(&token_file, TOKEN)?;
    Ok(Arc::new(Pods {
        bin: chat_server_bin(),
        args: [
            "--redis-url",
            redis.url.as_str(),
            "--admin-token-file",
            token_file.to_str().unwrap(),
            "--demo-answer-tokens",
            "40",
            "--drain-jitter-ms",
            "500",
        ]
        .map(String::from)
        .to_vec(),
        slots: (0..slots).map(|_| (free_port(), free_port())).collect(),
        running: tokio::sync::Mutex::new((0..slots).map(|_| None).collect()),
        marked: Mutex::default(),
        removed: Mutex::default(),
    }))
}

/// The JS fleet's nginx in front of every port slot, and the slots' addresses.
async fn fleet_in_front_of(pods: &Pods) -> anyhow::Result<(Fleet, Vec<String>)> {
    let upstreams: Vec<String> = pods
        .slots
        .iter()
        .map(|(p, _)| format!("127.0.0.1:{p}"))
        .collect();
    let fleet = Fleet::start(&[("FLEET_UPSTREAMS", &upstreams.join(","))]).await?;
    Ok((fleet, upstreams))
}

fn spec() -> AutoscalingSpec {
    let mut spec = AutoscalingSpec {
        enabled: true,
        min_replicas: 1,
        max_replicas: 3,
        target_connections_per_pod: TARGET,
        target_redis_ops_per_pod: 0,
        interval_seconds: 1,
        ..Default::default()
    };
    spec.behavior.scale_down.stabilization_window_seconds = 5;
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ramps_up_to_three_servers_and_drains_back_to_one_losing_nothing() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let pods = pods(&redis, 3)?;
    pods.set_replicas(1).await?;
    let (mut fleet, upstreams) = fleet_in_front_of(&pods).await?;
    let cluster = LocalCluster::new(pods.clone(), None);
    let metrics = Arc::new(Metrics::default());
    let autoscaler = cluster.autoscale(spec(), metrics.clone());
    eprintln!("nginx at {} in front of {upstreams:?}", fleet.url);

    // Ramp: 6 clients a second up to 30, three times the target of one server.
    let ramp = Instant::now();
    for _ in 0..5 {
        let open = fleet.call(json!({"op": "open", "count": 6})).await?;
        eprintln!(
            "[{:>6.2} s] {} connections",
            cluster.started.elapsed().as_secs_f64(),
            open["open"]
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let loaded = ramp.elapsed();
    wait_until("3 servers", Duration::from_secs(60), || async {
        pods.live().await == 3
    })
    .await?;
    let scale_up = ramp.elapsed();
    fleet.call(json!({"op": "talk"})).await?;

    // The load drops to 6 clients spread over the servers, and one server hangs.
    let kept = fleet.call(json!({"op": "keep", "count": 6})).await?;
    eprintln!("kept {kept}");
    let drop = Instant::now();
    let hung = pods.pid("chat-2").await.expect("chat-2 runs");
    signal("STOP", hung).await?;
    let failures = metrics.scrape_failures.get();
    let holds = metrics.decisions.with_label_values(&["hold"]).get();
    // Four evaluations (each waits 2 s for the hung pod): longer than the 5 s window.
    wait_until("4 blind evaluations", Duration::from_secs(60), || async {
        metrics.decisions.with_label_values(&["hold"]).get() >= holds + 4
    })
    .await?;
    assert_eq!(pods.live().await, 3, "no scale-down on missing metrics");
    assert!(metrics.scrape_failures.get() >= failures + 4);
    assert!(!cluster.events().contains(&Reason::DrainStarted));
    signal("CONT", hung).await?;
    let recovered = Instant::now();

    wait_until("1 server", Duration::from_secs(90), || async {
        pods.live().await == 1
    })
    .await?;
    // The drain reports its outcome as it ends, just after stopping the pods.
    wait_until("ScaledDown", Duration::from_secs(10), || async {
        cluster.events().contains(&Reason::ScaledDown)
    })
    .await?;
    let (scale_down, after_recovery) = (drop.elapsed(), recovered.elapsed());
    let report = fleet.call(json!({"op": "finish"})).await?;
    eprintln!("fleet report {report}");
    eprintln!(
        "timings: 30 connections after {:.1} s, 3 servers after {:.1} s; \
         load dropped -> 1 server after {:.1} s ({:.1} s after the hung server recovered)",
        loaded.as_secs_f64(),
        scale_up.as_secs_f64(),
        scale_down.as_secs_f64(),
        after_recovery.as_secs_f64()
    );

    let removed = pods.removed.lock().unwrap().clone();
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(
        removed.iter().all(|(_, marked)| *marked),
        "only marked pods went: {removed:?}"
    );
    let events = cluster.events();
    for reason in UP_THEN_DRAINED_DOWN {
        assert!(events.contains(&reason), "{reason} in {events:?}");
    }
    // Status is written whole every time (server-side apply drops the fields
    // its manager leaves out): once set, lastScaleTime stays in every write.
    let statuses = cluster.statuses.lock().unwrap().clone();
    let first_scale = statuses
        .iter()
        .position(|s| s.get("lastScaleTime").is_some())
        .expect("a scale was reported in status");
    for status in &statuses[first_scale..] {
        for field in [
            "connections",
            "drainingPods",
            "lastScaleTime",
            "lastScaleReason",
        ] {
            assert!(status.get(field).is_some(), "{field} missing from {status}");
        }
    }
    assert_eq!(statuses.last().unwrap()["drainingPods"], json!([]));
    assert_eq!(report["clients"], 6);
    assert_eq!(report["missing"], 0, "{report}");
    assert!(report["final"].as_u64().unwrap() > 50, "{report}");
    assert!(report["answers"].as_u64().unwrap() > 0, "{report}");
    assert!(
        report["moved"].as_u64().unwrap() >= 1,
        "clients moved off drained servers: {report}"
    );

    autoscaler.abort();
    fleet.stop().await?;
    pods.set_replicas(0).await?;
    redis.stop().await?;
    Ok(())
}

/// Connections per pod, as the autoscaler scrapes them.
async fn spread(cluster: &LocalCluster) -> anyhow::Result<Vec<(String, u64)>> {
    let scrapes = collect::scrape_all(cluster.targets().await?, 4, Duration::from_secs(2)).await;
    let mut spread = Vec::new();
    for scrape in scrapes {
        let metrics = scrape.metrics.map_err(anyhow::Error::msg)?;
        spread.push((scrape.target.pod, metrics.connections));
    }
    spread.sort();
    Ok(spread)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_new_server_gets_its_share_by_rebalancing_losing_nothing() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let pods = pods(&redis, 3)?;
    pods.set_replicas(2).await?;
    let (mut fleet, _) = fleet_in_front_of(&pods).await?;
    let cluster = LocalCluster::new(pods.clone(), None);
    // 36 clients on 2 servers; the third starts empty, as after a scale-up.
    fleet.call(json!({"op": "open", "count": 36})).await?;
    fleet.call(json!({"op": "talk"})).await?;
    pods.set_replicas(3).await?;
    let before = spread(&cluster).await?;
    eprintln!("before rebalancing: {before:?}");
    assert_eq!(before.iter().map(|(_, c)| c).sum::<u64>(), 36, "{before:?}");
    assert_eq!(before[2].1, 0, "the new server starts empty: {before:?}");

    // Sized so that nothing scales: only rebalancing can move clients.
    let mut spec = spec();
    spec.min_replicas = 3;
    spec.max_replicas = 3;
    spec.target_connections_per_pod = 100;
    spec.rebalance.after_seconds = 2;
    spec.rebalance.connections_per_second = 5;
    let dead_zone = 1.0 + f64::from(spec.rebalance.dead_zone_percent) / 100.0;
    let metrics = Arc::new(Metrics::default());
    let autoscaler = cluster.autoscale(spec, metrics.clone());
    let started = Instant::now();
    let balanced = wait_until(
        "the busiest server in the zone",
        Duration::from_secs(60),
        || async {
            let Ok(now) = spread(&cluster).await else {
                return false;
            };
            let total: u64 = now.iter().map(|(_, c)| c).sum();
            let busiest = now.iter().map(|(_, c)| *c).max().unwrap_or(0);
            total == 36 && busiest as f64 <= dead_zone * total as f64 / 3.0
        },
    )
    .await?;
    let after = spread(&cluster).await?;
    eprintln!(
        "after rebalancing ({:.1} s): {after:?}",
        started.elapsed().as_secs_f64()
    );
    wait_until("RebalanceCompleted", Duration::from_secs(20), || async {
        cluster.events().contains(&Reason::RebalanceCompleted)
    })
    .await?;
    autoscaler.abort();
    let report = fleet.call(json!({"op": "finish"})).await?;
    eprintln!("fleet report {report}; rebalanced within {balanced:?}");

    assert!(
        after[2].1 >= 8,
        "the moved clients reconnected to the new server: {after:?}"
    );
    let events = cluster.events();
    assert!(events.contains(&Reason::RebalanceStarted), "{events:?}");
    assert!(!events.contains(&Reason::RebalanceFailed), "{events:?}");
    assert!(!events.contains(&Reason::ScaledUp) && !events.contains(&Reason::DrainStarted));
    assert!(metrics.shed_connections.get() >= 8);
    let shed_in_status = cluster
        .statuses
        .lock()
        .unwrap()
        .iter()
        .any(|s| s["sheddingPods"].as_array().is_some_and(|p| !p.is_empty()));
    assert!(shed_in_status, "status named the shedding pods");
    assert_eq!(report["clients"], 36, "{report}");
    assert_eq!(report["missing"], 0, "{report}");
    assert!(report["answers"].as_u64().unwrap() > 0, "{report}");

    fleet.stop().await?;
    pods.set_replicas(0).await?;
    redis.stop().await?;
    Ok(())
}

/// Message throughput alone, seen as Redis ops/s with no connections at all,
/// scales up; when it ends, the extra server is drained and removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_throughput_alone_scales_up_and_back_down() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let pods = pods(&redis, 2)?;
    pods.set_replicas(1).await?;
    let cluster = LocalCluster::new(pods.clone(), Some(redis.url.clone()));
    let mut spec = AutoscalingSpec {
        enabled: true,
        min_replicas: 1,
        max_replicas: 2,
        target_connections_per_pod: 1000,
        target_redis_ops_per_pod: 1000,
        interval_seconds: 1,
        ..Default::default()
    };
    spec.behavior.scale_down.stabilization_window_seconds = 3;
    let autoscaler = cluster.autoscale(spec, Arc::new(Metrics::default()));

    // Traffic through Redis: thousands of ops/s.
    let traffic = RedisTraffic::start(&redis.url).await?;
    let up = wait_until("2 servers", Duration::from_secs(30), || async {
        pods.live().await == 2
    })
    .await?;
    let last_reason = || {
        cluster
            .statuses
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find_map(|s| s["lastScaleReason"].as_str().map(String::from))
    };
    // The status follows the scale.
    wait_until("the scale in status", Duration::from_secs(10), || async {
        last_reason().is_some()
    })
    .await?;
    let reason = last_reason().unwrap_or_default();
    eprintln!("scaled up after {up:?}: {reason}");
    assert!(reason.contains("Redis"), "scaled on Redis ops/s: {reason}");

    traffic.stop().await;
    let down = wait_until("1 server", Duration::from_secs(60), || async {
        pods.live().await == 1
    })
    .await?;
    eprintln!("back to 1 server {down:?} after the traffic stopped");
    wait_until("ScaledDown", Duration::from_secs(10), || async {
        cluster.events().contains(&Reason::ScaledDown)
    })
    .await?;
    let events = cluster.events();
    for reason in UP_THEN_DRAINED_DOWN {
        assert!(events.contains(&reason), "{reason} in {events:?}");
    }
    let removed = pods.removed.lock().unwrap().clone();
    assert!(
        removed.len() == 1 && removed[0].1,
        "one marked pod went: {removed:?}"
    );

    autoscaler.abort();
    pods.set_replicas(0).await?;
    redis.stop().await?;
    Ok(())
}
