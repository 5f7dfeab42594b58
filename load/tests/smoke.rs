//! Smoke runs of chatscale-load against the real chat-server binary: a few
//! hundred connections for a few seconds, in one process, in two worker
//! processes, and over HTTP long-polling. They check the report is complete and consistent and that no
//! error happened; they assert no timing (numbers come from `make bench`).

use std::process::{Command, Output};

use chatscale_tests::{ChatServer, chat_server_bin};
use serde_json::Value;

/// The PID of our child process running `bin` (the server the helper started).
fn child_pid(bin: &std::path::Path) -> u32 {
    let me = std::process::id().to_string();
    let bin = std::fs::canonicalize(bin).unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let parent = status
                .lines()
                .find_map(|l| l.strip_prefix("PPid:"))
                .map(str::trim);
            parent == Some(me.as_str())
                && std::fs::read_link(format!("/proc/{pid}/exe")).ok().as_ref() == Some(&bin)
        })
        .expect("the chat-server child process")
}

fn load(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chatscale-load"))
        .args(args)
        .output()
        .expect("running chatscale-load")
}

fn u(report: &Value, path: &str) -> u64 {
    report
        .pointer(path)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{path} missing or not a count in {report:#}"))
}

fn f(report: &Value, path: &str) -> f64 {
    report
        .pointer(path)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{path} missing or not a number in {report:#}"))
}

/// Runs the generator and returns its JSON report, after checking it ended well.
fn run(url: &str, pid: u32, connections: usize, rooms: usize, extra: &[&str]) -> Value {
    let dir = std::env::temp_dir().join(format!("chatscale-load-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join(format!("report-{connections}-{}.json", extra.len()));
    let (connections, rooms, pid) = (connections.to_string(), rooms.to_string(), pid.to_string());
    let mut args = vec![
        "--url",
        url,
        "--connections",
        &connections,
        "--rooms",
        &rooms,
        "--rate",
        "200",
        "--ai-queries",
        "10",
        "--hold-secs",
        "2",
        "--settle-secs",
        "0",
        "--max-secs",
        "120",
        "--pids",
        &pid,
        "--json",
        json.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = load(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chatscale-load failed:\n{stderr}");
    assert!(stderr.contains("errors: 0 "), "summary:\n{stderr}");
    serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
}

/// Every field is there and the counts agree with each other.
fn check(report: &Value, connections: u64, rooms: u64) {
    assert_eq!(u(report, "/errors/total"), 0, "{report:#}");
    for field in [
        "/errors/connect",
        "/errors/protocol",
        "/errors/ack_refused",
        "/errors/ack_missing",
        "/errors/disconnects",
    ] {
        assert_eq!(u(report, field), 0, "{field}");
    }
    assert_eq!(u(report, "/connections/attempted"), connections);
    assert_eq!(u(report, "/connections/established"), connections);
    assert_eq!(u(report, "/connections/failed"), 0);
    assert_eq!(u(report, "/connections/open_at_ramp_end"), connections);
    assert_eq!(u(report, "/connections/connect_latency/count"), connections);
    assert!(f(report, "/connections/connects_per_second") > 0.0);

    // 200 lines/s for 2 s, open loop: 400 (the last tick may come a moment early).
    let sent = u(report, "/messages/sent");
    assert!((390..=400).contains(&sent), "sent {sent}");
    assert_eq!(u(report, "/messages/acked"), sent);
    // Every line reaches every member of its room, the sender included.
    let delivered = u(report, "/messages/delivered");
    assert_eq!(u(report, "/messages/expected_deliveries"), delivered);
    assert_eq!(u(report, "/messages/lost"), 0);
    let members = connections / rooms;
    assert_eq!(delivered, sent * members);
    // Latency is recorded on the other members only.
    assert_eq!(u(report, "/messages/latency/count"), delivered - sent);
    assert_eq!(u(report, "/messages/ack_latency/count"), sent + 10);
    let latency = f(report, "/messages/latency/p50_ms");
    assert!(latency > 0.0 && latency <= f(report, "/messages/latency/max_ms"));
    assert!(f(report, "/messages/delivered_per_second") > 0.0);

    // Ten answers, each seen to the end by every member of its room.
    assert_eq!(u(report, "/ai/asked"), 10);
    assert_eq!(u(report, "/ai/acked"), 10);
    assert_eq!(u(report, "/ai/answers_done"), 10);
    assert_eq!(u(report, "/ai/streams_received"), 10 * members);
    let chunks = u(report, "/ai/chunk_events");
    assert!(chunks >= 10 * members * 2, "chunks {chunks}");
    assert!(f(report, "/ai/chunks_per_answer") >= 2.0);
    // One gap per chunk after the first, per stream and receiver.
    assert_eq!(
        u(report, "/ai/chunk_gap/count"),
        chunks - u(report, "/ai/streams_received")
    );

    let servers = report
        .pointer("/servers")
        .and_then(Value::as_array)
        .unwrap();
    assert_eq!(servers.len(), 1);
    assert!(u(&servers[0], "/rss_ramped_bytes") > 1 << 20);
    assert!(u(&servers[0], "/rss_held_bytes") > 1 << 20);
    assert!(f(&servers[0], "/cpu_hold_seconds") > 0.0);
    assert!(f(report, "/server_totals/rss_total_per_connection_bytes") > 0.0);
    assert!(f(report, "/server_totals/cpu_seconds_per_million_delivered") > 0.0);
    for phase in [
        "ramp_seconds",
        "hold_seconds",
        "stop_seconds",
        "total_seconds",
    ] {
        assert!(f(report, &format!("/phases/{phase}")) > 0.0, "{phase}");
    }
    assert!(report.get("redis").is_some_and(Value::is_null));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_few_hundred_connections_chat_and_ask_without_errors() {
    let bin = chat_server_bin();
    // Short, fast answers: 40 tokens at 200 per second.
    let server = ChatServer::start(
        &bin,
        &["--demo-tokens-per-sec", "200", "--demo-answer-tokens", "40"],
    )
    .await
    .unwrap();
    let pid = child_pid(&bin);
    let url = server.url.clone();

    let one = tokio::task::spawn_blocking({
        let url = url.clone();
        move || run(&url, pid, 300, 30, &[])
    })
    .await
    .unwrap();
    check(&one, 300, 30);
    assert_eq!(u(&one, "/processes"), 1);

    // The same load from two worker processes, merged into one report.
    let two = tokio::task::spawn_blocking({
        let url = url.clone();
        move || run(&url, pid, 200, 20, &["--processes", "2"])
    })
    .await
    .unwrap();
    check(&two, 200, 20);
    assert_eq!(u(&two, "/processes"), 2);

    // HTTP long-polling instead of WebSocket.
    let polling =
        tokio::task::spawn_blocking(move || run(&url, pid, 100, 10, &["--transport", "polling"]))
            .await
            .unwrap();
    check(&polling, 100, 10);
    assert_eq!(
        polling.pointer("/transport").and_then(Value::as_str),
        Some("polling")
    );
}

#[test]
fn targets_off_this_machine_are_refused() {
    for url in ["http://10.0.0.8:3000", "http://192.168.0.1:80"] {
        let out = load(&["--url", url, "--connections", "1"]);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("not a loopback address"), "{stderr}");
    }
}
