//! Drain-aware scale-down against real chat-server processes on a real
//! redis-server (no Kubernetes): the emptiest pod is chosen, marked, drained
//! through its admin API, and only then are replicas lowered; a scale-up
//! during the drain cancels it; the drains of a multi-pod scale-down start
//! `stagger` apart.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use chatscale_contract::admin::{DrainState, DrainStatus};
use chatscale_operator::autoscaler::{
    admin_client::AdminClient,
    collect::{Target, scrape_all},
    drain::{DrainApi, Outcome, Pacing, Workload, pick, scale_down},
};
use chatscale_tests::{ChatServer, RedisServer, SocketClient, chat_server_bin};
use serde_json::json;

const TOKEN: &str = "scale-down-test-token";

#[derive(Default)]
struct RecordingWorkload {
    log: Mutex<Vec<String>>,
}

#[async_trait]
impl Workload for RecordingWorkload {
    async fn mark_for_deletion(&self, pod: &str) -> anyhow::Result<()> {
        self.log.lock().unwrap().push(format!("mark {pod}"));
        Ok(())
    }
    async fn unmark(&self, pod: &str) -> anyhow::Result<()> {
        self.log.lock().unwrap().push(format!("unmark {pod}"));
        Ok(())
    }
    async fn set_replicas(&self, replicas: i32) -> anyhow::Result<()> {
        self.log
            .lock()
            .unwrap()
            .push(format!("replicas {replicas}"));
        Ok(())
    }
    async fn replace(&self, pod: &str) -> anyhow::Result<()> {
        self.log.lock().unwrap().push(format!("replace {pod}"));
        Ok(())
    }
}

async fn cluster(count: usize, extra: &[&str]) -> anyhow::Result<(RedisServer, Vec<ChatServer>)> {
    let redis = RedisServer::start().await?;
    let token = std::env::temp_dir().join(format!("chatscale-token-{}", std::process::id()));
    std::fs::write(&token, TOKEN)?;
    let mut servers = Vec::new();
    for _ in 0..count {
        let mut args = vec![
            "--redis-url",
            redis.url.as_str(),
            "--admin-token-file",
            token.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        servers.push(ChatServer::start(&chat_server_bin(), &args).await?);
    }
    Ok((redis, servers))
}

/// A drain timeout in seconds, a poll interval in milliseconds, no stagger.
fn pacing(timeout_seconds: u64, poll_ms: u64) -> Pacing {
    Pacing {
        timeout: Duration::from_secs(timeout_seconds),
        poll: Duration::from_millis(poll_ms),
        stagger: Duration::ZERO,
    }
}

fn targets(servers: &[ChatServer]) -> Vec<Target> {
    servers
        .iter()
        .enumerate()
        .map(|(i, s)| Target {
            pod: format!("pod-{i}"),
            admin: s.admin_url.clone(),
            ready: true,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emptiest_pod_is_drained_before_replicas_go_down() -> anyhow::Result<()> {
    let (_redis, mut servers) = cluster(2, &[]).await?;
    let mut busy = Vec::new();
    for _ in 0..3 {
        let client = SocketClient::connect(&servers[0].url).await?;
        client.ask("join", json!({"room": "r"})).await?;
        busy.push(client);
    }
    let mut quiet = SocketClient::connect(&servers[1].url).await?;
    quiet.ask("join", json!({"room": "r"})).await?;

    let scrapes = scrape_all(targets(&servers), 4, Duration::from_secs(2)).await;
    let victims: Vec<(String, String)> = pick(&scrapes, 1)
        .iter()
        .map(|s| (s.target.pod.clone(), s.target.admin.clone()))
        .collect();
    assert_eq!(
        victims[0].0, "pod-1",
        "the pod with one connection, not three"
    );

    let workload = RecordingWorkload::default();
    let outcome = scale_down(
        &workload,
        &AdminClient::new(TOKEN.into()),
        &victims,
        1,
        pacing(30, 100),
        &|| false,
    )
    .await?;
    assert_eq!(outcome, Outcome::Completed);
    assert_eq!(*workload.log.lock().unwrap(), ["mark pod-1", "replicas 1"]);
    // The quiet client was told to move before being disconnected.
    let (event, payload) = quiet.next_event().await?;
    assert_eq!(event, "server-draining");
    assert!(payload["reconnectAfterMs"].is_u64());
    assert_eq!(servers[1].admin_get("/readyz").await?.0, 503);
    assert!(servers[0].is_running() && servers[1].is_running());
    assert!(
        servers.remove(1).stop().await?.success(),
        "a drained server exits 0 on SIGTERM"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_up_during_the_drain_cancels_it() -> anyhow::Result<()> {
    let (_redis, servers) = cluster(1, &["--demo-answer-tokens", "2000"]).await?;
    // A 40-second AI answer keeps the drain from finishing.
    let client = SocketClient::connect(&servers[0].url).await?;
    client.ask("join", json!({"room": "r"})).await?;
    client
        .ask("ai-query", json!({"room": "r", "prompt": "a long one"}))
        .await?;
    let victims = vec![("pod-0".to_owned(), servers[0].admin_url.clone())];
    let workload = RecordingWorkload::default();
    let polls = Arc::new(AtomicBool::new(false));
    let seen = polls.clone();
    let outcome = scale_down(
        &workload,
        &AdminClient::new(TOKEN.into()),
        &victims,
        0,
        pacing(30, 50),
        // The first check runs after the drain started: the scale-up arrives then.
        &move || seen.swap(true, Ordering::SeqCst),
    )
    .await?;
    assert_eq!(outcome, Outcome::Cancelled);
    assert_eq!(
        *workload.log.lock().unwrap(),
        ["mark pod-0", "unmark pod-0"],
        "replicas untouched"
    );
    assert_eq!(
        servers[0].admin_get("/readyz").await?.0,
        200,
        "serving again"
    );
    assert!(polls.load(Ordering::SeqCst));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_fails_the_scale_down_without_touching_replicas() -> anyhow::Result<()> {
    let (_redis, servers) = cluster(1, &[]).await?;
    let victims = vec![("pod-0".to_owned(), servers[0].admin_url.clone())];
    let workload = RecordingWorkload::default();
    let result = scale_down(
        &workload,
        &AdminClient::new("wrong".into()),
        &victims,
        0,
        pacing(5, 50),
        &|| false,
    )
    .await;
    assert!(result.unwrap_err().to_string().contains("401"));
    assert_eq!(
        *workload.log.lock().unwrap(),
        ["mark pod-0"],
        "no replicas change"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drains_of_a_multi_pod_scale_down_start_stagger_apart() -> anyhow::Result<()> {
    let (_redis, servers) = cluster(3, &[]).await?;
    let victims: Vec<(String, String)> = (1..3)
        .map(|i| (format!("pod-{i}"), servers[i].admin_url.clone()))
        .collect();
    let admin = AdminClient::new(TOKEN.into());
    let workload = RecordingWorkload::default();
    let stagger = Duration::from_millis(1500);
    let outcome = scale_down(
        &workload,
        &admin,
        &victims,
        1,
        Pacing {
            stagger,
            ..pacing(30, 50)
        },
        &|| false,
    )
    .await?;
    assert_eq!(outcome, Outcome::Completed);
    assert_eq!(
        *workload.log.lock().unwrap(),
        ["mark pod-1", "mark pod-2", "replicas 1"]
    );
    let mut started = Vec::new();
    for (_, url) in &victims {
        assert_eq!(admin.state(url).await?, DrainState::Drained);
        let status: DrainStatus = serde_json::from_str(&get_drain(url).await?)?;
        started.push(
            status
                .started_at
                .expect("a drained server says when it started"),
        );
    }
    // Milliseconds of two clocks reading: a few of slack below.
    let apart = Duration::from_millis(started[1] - started[0]);
    assert!(
        apart + Duration::from_millis(20) >= stagger && apart < stagger + Duration::from_secs(2),
        "the second drain started {apart:?} after the first, not {stagger:?}"
    );
    Ok(())
}

/// `GET /drain` with the token, as text.
async fn get_drain(admin_url: &str) -> anyhow::Result<String> {
    Ok(reqwest::Client::new()
        .get(format!("{admin_url}/drain"))
        .bearer_auth(TOKEN)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?)
}
