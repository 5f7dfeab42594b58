//! The Grafana dashboard (`charts/chatscale-operator/dashboards/chatscale.json`)
//! proven on a real Prometheus: three real chat-servers on a real Redis with
//! real Socket.IO traffic (one of them draining), and the real operator
//! reconciling and autoscaling a ChatCluster on the control plane, scraped
//! by a real `prometheus` with the labels the chart's PodMonitor and
//! ServiceMonitor give. Every panel query and variable query of the
//! dashboard is run against it and must return series carrying the labels
//! its legend uses, with the values the test knows. Every `/metrics` we
//! serve must also pass `promtool check metrics`.

use std::{
    collections::BTreeSet,
    io::Write,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context, bail, ensure};
use chatscale_tests::{
    ChatServer, RedisServer, SocketClient, chat_server_bin, cluster::die_with_parent, free_port,
    wait_for, workspace_root,
};
use serde_json::{Value, json};

use crate::support::{ensure_chart_crd, example, manifest_file, plane};

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";
/// What `$__rate_interval` (and `$__range`) become: with a 1 s scrape
/// interval, 15 s holds about 15 samples and fits the test's run time.
const RATE_WINDOW: &str = "15s";
const RATE_WINDOW_SECONDS: u64 = 15;
/// The ChatCluster the chat-servers play the pods of (the PodMonitor's `chatcluster`).
const CHATCLUSTER: &str = "team-chat";
/// Clients on the pod that drains (it moves one a second, so some stay).
const CLIENTS_ON_DRAINING: usize = 20;
const ADMIN_TOKEN: &str = "dashboard-test-admin-token";

/// A temporary folder, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> anyhow::Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("{name}-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process (prometheus, the operator) killed and reaped on drop.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `command` so that it dies with the test, with stdout and stderr in `log`.
fn spawn(mut command: std::process::Command, log: &Path) -> anyhow::Result<Killed> {
    let out = std::fs::File::create(log)?;
    command
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    die_with_parent(&mut command);
    Ok(Killed(command.spawn().with_context(|| {
        format!("starting {:?}", command.get_program())
    })?))
}

/// Prometheus's HTTP API.
struct Prometheus {
    base: String,
    http: reqwest::Client,
}

impl Prometheus {
    /// GETs `path` with `params` and returns `data` of a `success` answer.
    async fn get(&self, path: &str, params: &[(&str, &str)]) -> anyhow::Result<Value> {
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.base))?;
        for (key, value) in params {
            url.query_pairs_mut().append_pair(key, value);
        }
        let body = self.http.get(url.clone()).send().await?.text().await?;
        let answer: Value =
            serde_json::from_str(&body).with_context(|| format!("{url}: not JSON: {body}"))?;
        ensure!(answer["status"] == "success", "{url}: {answer}");
        Ok(answer["data"].clone())
    }

    /// An instant query evaluated at `time` (Unix seconds): its result vector.
    async fn query(&self, query: &str, time: f64) -> anyhow::Result<Vec<Value>> {
        let data = self
            .get(
                "/api/v1/query",
                &[("query", query), ("time", &format!("{time:.3}"))],
            )
            .await
            .with_context(|| format!("query {query}"))?;
        ensure!(
            data["resultType"] == "vector",
            "{query}: resultType {} (a panel query must give a vector)",
            data["resultType"]
        );
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }
}

/// A sample's value (NaN when it is not a number).
fn value(series: &Value) -> f64 {
    series["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The value of the series whose label `label` is `is`.
fn value_where(result: &[Value], label: &str, is: &str) -> Option<f64> {
    result.iter().find(|s| s["metric"][label] == is).map(value)
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

/// Grafana's variables as the test has them.
fn substitute(expr: &str, namespace: &str) -> String {
    let mut out = expr.to_owned();
    for (variable, value) in [
        ("namespace", namespace),
        ("chatcluster", CHATCLUSTER),
        ("__rate_interval", RATE_WINDOW),
        ("__interval", "1s"),
        ("__range", RATE_WINDOW),
    ] {
        out = out
            .replace(&format!("${{{variable}}}"), value)
            .replace(&format!("${variable}"), value);
    }
    out
}

/// The labels a legend format names (`{{pod}}` → `pod`).
fn legend_labels(legend: &str) -> Vec<String> {
    legend
        .split("{{")
        .skip(1)
        .filter_map(|part| part.split_once("}}"))
        .map(|(label, _)| label.trim().to_owned())
        .collect()
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<Value> {
    fn walk(list: &Value, out: &mut Vec<Value>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel.clone());
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// `promtool check metrics` on one exposition: passes, and prints what it says.
async fn promtool_check(what: &str, url: &str) -> anyhow::Result<()> {
    let body = reqwest::get(url).await?.error_for_status()?.text().await?;
    let mut child = std::process::Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting promtool: install Debian's prometheus package")?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(body.as_bytes())?;
    let output = child.wait_with_output()?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!(
        "promtool check metrics, {what} ({} lines): exit {:?}, output: {:?}",
        body.lines().count(),
        output.status.code(),
        said.trim()
    );
    ensure!(
        output.status.success(),
        "promtool check metrics failed on {what}:\n{said}"
    );
    Ok(())
}

/// Traffic until aborted, as a live cluster has it: messages from `a` and
/// `b` in turn into the room that spans the servers, five a second, and
/// every second an AI question and a refused (empty) message. Counters
/// with labels appear at their first increment, so `rate()` sees an
/// increase only from the second one on: the traffic keeps coming.
async fn talk(a: SocketClient, b: SocketClient) -> anyhow::Result<()> {
    for i in 0u64.. {
        let from = if i % 2 == 0 { &a } else { &b };
        let ack = from
            .ask(
                "message",
                json!({"room": "lobby", "text": format!("hello {i}")}),
            )
            .await?;
        ensure!(ack.get("ok").is_some(), "message {i}: {ack}");
        if i % 5 == 0 {
            let ack = a
                .ask(
                    "ai-query",
                    json!({"room": "lobby", "prompt": format!("question {i}")}),
                )
                .await?;
            ensure!(ack.get("ok").is_some(), "ai-query {i}: {ack}");
            let ack = b
                .ask("message", json!({"room": "lobby", "text": ""}))
                .await?;
            ensure!(
                ack.get("error").is_some(),
                "an empty message was accepted: {ack}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// A value a panel query must show, checked on its result.
type Expectation = Box<dyn Fn(&[Value]) -> Result<(), String>>;

/// Every series' value holds `check`.
fn all(what: &'static str, check: impl Fn(f64) -> bool + 'static) -> Expectation {
    Box::new(move |result| {
        for series in result {
            if !check(value(series)) {
                return Err(format!("{what}: got {series}"));
            }
        }
        Ok(())
    })
}

/// The series whose `label` is `is` holds `check`.
fn one(
    label: &'static str,
    is: &'static str,
    what: &'static str,
    check: impl Fn(f64) -> bool + 'static,
) -> Expectation {
    Box::new(move |result| match value_where(result, label, is) {
        Some(v) if check(v) => Ok(()),
        Some(v) => Err(format!("{label}={is}: {what}, got {v}")),
        None => Err(format!("no series with {label}={is}")),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_dashboard_query_has_data_on_a_real_prometheus() -> anyhow::Result<()> {
    for tool in [PROMETHEUS, PROMTOOL] {
        ensure!(
            Path::new(tool).exists(),
            "{tool} is missing: install Debian's prometheus package (apt-get install prometheus)"
        );
    }
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(
        workspace_root().join("charts/chatscale-operator/dashboards/chatscale.json"),
    )?)?;
    let dir = TempDir::new("chatscale-dashboard")?;

    // The operator against the control plane, watching a namespace of its own.
    ensure_chart_crd()?;
    let ns = plane().namespace("dashboard").await?;
    let operator_port = free_port();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_chatscale-operator"));
    command
        .args([
            "run",
            "--http-address",
            &format!("127.0.0.1:{operator_port}"),
            "--lease-namespace",
            &ns,
            "--identity",
            &format!("{ns}-operator"),
            "--watch-namespace",
            &ns,
        ])
        .env("KUBECONFIG", &plane().kubeconfig)
        .env("RUST_LOG", "info")
        .env("POD_NAME", format!("{ns}-operator"));
    let operator_log = dir.0.join("operator.log");
    let _operator = spawn(command, &operator_log)?;
    let operator_metrics = format!("http://127.0.0.1:{operator_port}/metrics");

    // Three chat-servers on one Redis: the pods of one ChatCluster.
    let redis = RedisServer::start().await?;
    let token_file = dir.0.join("admin-token");
    std::fs::write(&token_file, ADMIN_TOKEN)?;
    let token_path = token_file.display().to_string();
    let args = [
        "--redis-url",
        redis.url.as_str(),
        "--demo-answer-tokens",
        "20",
        "--demo-tokens-per-sec",
        "400",
        "--drain-rate",
        "1",
        "--drain-timeout",
        "300s",
        "--connections-per-minute-per-ip",
        "0",
        "--admin-token-file",
        token_path.as_str(),
    ];
    let bin = chat_server_bin();
    let servers = [
        ChatServer::start(&bin, &args).await?,
        ChatServer::start(&bin, &args).await?,
        ChatServer::start(&bin, &args).await?,
    ];
    let pods = [
        format!("{CHATCLUSTER}-a"),
        format!("{CHATCLUSTER}-b"),
        format!("{CHATCLUSTER}-c"),
    ];

    // Prometheus with the labels the PodMonitor and the ServiceMonitor give.
    let chat_targets: Vec<Value> = servers
        .iter()
        .zip(&pods)
        .map(|(server, pod)| {
            json!({
                "targets": [server.admin_url.trim_start_matches("http://")],
                "labels": {"namespace": ns, "pod": pod, "chatcluster": CHATCLUSTER,
                    "container": "chat-server", "endpoint": "admin"},
            })
        })
        .collect();
    let config = json!({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": format!("{ns}/chatscale-operator-chat-servers"), "metrics_path": "/metrics",
             "static_configs": chat_targets},
            {"job_name": "chatscale-operator-metrics", "metrics_path": "/metrics",
             "static_configs": [{"targets": [format!("127.0.0.1:{operator_port}")],
                "labels": {"namespace": ns, "service": "chatscale-operator-metrics",
                    "pod": format!("{ns}-operator"), "container": "operator",
                    "endpoint": "http-metrics"}}]},
        ],
    });
    // JSON is YAML.
    let config_file = dir.0.join("prometheus.yml");
    std::fs::write(&config_file, serde_json::to_vec_pretty(&config)?)?;
    let prometheus_port = free_port();
    let mut command = std::process::Command::new(PROMETHEUS);
    command.args([
        format!("--config.file={}", config_file.display()),
        format!("--storage.tsdb.path={}", dir.0.join("tsdb").display()),
        format!("--web.listen-address=127.0.0.1:{prometheus_port}"),
        "--log.level=warn".to_owned(),
    ]);
    let prometheus_log = dir.0.join("prometheus.log");
    let _prometheus = spawn(command, &prometheus_log)?;
    let prometheus = Prometheus {
        base: format!("http://127.0.0.1:{prometheus_port}"),
        http: reqwest::Client::new(),
    };
    let logs = || {
        format!(
            "\nprometheus:\n{}\noperator:\n{}",
            std::fs::read_to_string(&prometheus_log).unwrap_or_default(),
            std::fs::read_to_string(&operator_log).unwrap_or_default()
        )
    };
    let up = wait_for(
        "every target scraped and up",
        Duration::from_secs(30),
        || async {
            let Ok(data) = prometheus.get("/api/v1/targets", &[]).await else {
                return Ok(None);
            };
            let targets = data["activeTargets"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let healthy = targets.iter().filter(|t| t["health"] == "up").count();
            Ok((targets.len() == 4 && healthy == 4).then_some(healthy))
        },
    )
    .await
    .with_context(logs)?;
    println!("prometheus: {up} targets up");

    // A ChatCluster for the operator, autoscaling every second: its pods are
    // kwok's (no chat-server runs in them), so its scrapes of them fail.
    let mut cluster = example("minimal", &ns)?;
    cluster["spec"]["autoscaling"] = json!({"enabled": true, "intervalSeconds": 1});
    let file = manifest_file(&format!("{ns}-chatcluster"), &cluster)?;
    plane().run_ok("kubectl", &["apply", "-f", &file.display().to_string()])?;

    // Traffic: a room spanning the three servers, an AI answer on each, a refused message.
    let [a, b, c] = &servers;
    let mut on_a = Vec::new();
    for _ in 0..4 {
        on_a.push(SocketClient::connect(&a.url).await?);
    }
    let mut on_b = Vec::new();
    for _ in 0..3 {
        on_b.push(SocketClient::connect(&b.url).await?);
    }
    let mut on_c = Vec::new();
    for _ in 0..CLIENTS_ON_DRAINING {
        on_c.push(SocketClient::connect(&c.url).await?);
    }
    for client in [&on_a[0], &on_b[0], &on_c[0]] {
        let ack = client.ask("join", json!({"room": "lobby"})).await?;
        ensure!(ack.get("ok").is_some(), "join: {ack}");
    }
    for (client, room) in [
        (&on_a[1], "ask-a"),
        (&on_b[1], "ask-b"),
        (&on_c[1], "ask-c"),
    ] {
        ensure!(
            client
                .ask("join", json!({"room": room}))
                .await?
                .get("ok")
                .is_some()
        );
        let ack = client
            .ask("ai-query", json!({"room": room, "prompt": "hello"}))
            .await?;
        ensure!(ack.get("ok").is_some(), "ai-query: {ack}");
    }
    let refused = on_a[2]
        .ask("message", json!({"room": "lobby", "text": ""}))
        .await?;
    ensure!(
        refused.get("error").is_some(),
        "an empty message was accepted: {refused}"
    );
    for server in &servers {
        wait_for(
            "the AI answers finished",
            Duration::from_secs(20),
            || async {
                let tokens = server.metric("chat_ai_tokens_total").await?;
                let active = server.metric("chat_ai_streams_active").await?;
                Ok((tokens >= Some(20.0) && active == Some(0.0)).then_some(()))
            },
        )
        .await?;
    }
    // Live traffic from here until the queries are done.
    let talking = {
        let a0 = on_a.remove(0);
        let b0 = on_b.remove(0);
        tokio::spawn(talk(a0, b0))
    };

    // Until Prometheus has a full rate window of samples of every target
    // and has seen the operator's autoscaler decide.
    let covered = format!(
        "min(count_over_time(up[{RATE_WINDOW}])) >= {}",
        RATE_WINDOW_SECONDS - 2
    );
    let decided = "sum(chatscale_autoscaler_decisions_total) > 0";
    wait_for(
        "a full rate window and the autoscaler's decisions in Prometheus",
        Duration::from_secs(60),
        || async {
            let time = now();
            for query in [covered.as_str(), decided] {
                if prometheus.query(query, time).await?.is_empty() {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        },
    )
    .await
    .with_context(logs)?;

    // C drains: one client a second leaves, the others are still there while we look.
    let response = reqwest::Client::new()
        .post(format!("{}/drain", c.admin_url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?;
    ensure!(
        response.status().is_success(),
        "POST /drain: {}",
        response.status()
    );
    let draining = format!("chat_draining{{pod=\"{}\"}} == 1", pods[2]);
    let at = wait_for(
        "Prometheus to see the drain",
        Duration::from_secs(10),
        || async {
            let time = now();
            Ok((!prometheus.query(&draining, time).await?.is_empty()).then_some(time))
        },
    )
    .await
    .with_context(logs)?;
    ensure!(
        !talking.is_finished(),
        "the talking clients stopped: {:?}",
        talking.await
    );

    // What the test knows each panel shows (by title and legend format).
    let served = (on_a.len() + 1 + on_b.len() + 1) as f64;
    let on_draining = CLIENTS_ON_DRAINING as f64;
    let pods_c = pods[2].clone();
    let positive = |v: f64| v > 0.0;
    let expectations: Vec<(&str, &str, Expectation)> = vec![
        (
            "Connections per ChatCluster",
            "{{namespace}}/{{chatcluster}}",
            Box::new(move |r| {
                let v = value_where(r, "chatcluster", CHATCLUSTER).unwrap_or(f64::NAN);
                (v > served && v <= served + on_draining)
                    .then_some(())
                    .ok_or(format!(
                        "{served} on A and B plus 1..={on_draining} on C, got {v}"
                    ))
            }),
        ),
        (
            "Connections per pod",
            "{{pod}}",
            Box::new(move |r| {
                let [a, b, c] = [0, 1, 2].map(|i| {
                    value_where(r, "pod", &format!("{CHATCLUSTER}-{}", ["a", "b", "c"][i]))
                });
                (a == Some(4.0)
                    && b == Some(3.0)
                    && c.is_some_and(|c| (1.0..=on_draining).contains(&c)))
                .then_some(())
                .ok_or(format!(
                    "a=4, b=3, c in 1..={on_draining}: got {a:?} {b:?} {c:?}"
                ))
            }),
        ),
        (
            "Chat pods (ready to serve) and draining",
            "serving {{chatcluster}}",
            all("2 serving", |v| v == 2.0),
        ),
        (
            "Chat pods (ready to serve) and draining",
            "draining {{chatcluster}}",
            all("1 draining", |v| v == 1.0),
        ),
        (
            "Sockets still on draining pods",
            "{{pod}}",
            Box::new(move |r| match value_where(r, "pod", &pods_c) {
                Some(v) if (1.0..=on_draining).contains(&v) => Ok(()),
                other => Err(format!(
                    "{pods_c}: 1..={on_draining} sockets left, got {other:?}"
                )),
            }),
        ),
        (
            "Messages per second",
            "{{chatcluster}}",
            all("> 0", positive),
        ),
        (
            "AI answers streaming now",
            "{{chatcluster}}",
            all("0 or the 1 the talk asked", |v| v == 0.0 || v == 1.0),
        ),
        (
            "AI answers finished, by outcome",
            "{{outcome}}",
            one("outcome", "complete", "> 0", positive),
        ),
        (
            "AI time to first chunk (p50, p95)",
            "p50",
            all("> 0", positive),
        ),
        (
            "AI time to first chunk (p50, p95)",
            "p95",
            all("> 0", positive),
        ),
        (
            "Message handling latency (p99)",
            "p99",
            all("> 0", positive),
        ),
        (
            "Cross-server delay through Redis (p99)",
            "p99",
            all("> 0", positive),
        ),
        (
            "Redis: up, pub/sub, errors",
            "up {{chatcluster}}",
            all("1", |v| v == 1.0),
        ),
        (
            "Redis: up, pub/sub, errors",
            "pub/sub received/s {{chatcluster}}",
            all("> 0", positive),
        ),
        (
            "Redis: up, pub/sub, errors",
            "adapter publish/s {{chatcluster}}",
            all(">= 0", |v| v >= 0.0),
        ),
        (
            "Redis: up, pub/sub, errors",
            "errors/s {{chatcluster}}",
            all("0", |v| v == 0.0),
        ),
        (
            "Redis: up, pub/sub, errors",
            "store errors/s {{chatcluster}}",
            all("0", |v| v == 0.0),
        ),
        (
            "Rejected events, by code",
            "{{event}} {{code}}",
            one("event", "message", "> 0", positive),
        ),
        (
            "Autoscaler decisions, by direction",
            "{{direction}}",
            one("direction", "hold", "> 0", positive),
        ),
        (
            "Operator reconciles and failures",
            "reconciles/s",
            all("> 0", positive),
        ),
        (
            "Operator reconciles and failures",
            "failures/s",
            all("0", |v| v == 0.0),
        ),
        (
            "Operator reconciles and failures",
            "scrape failures/s",
            all(">= 0", |v| v >= 0.0),
        ),
    ];

    let mut problems = Vec::new();
    let mut checked = 0;
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().unwrap_or_default();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let Some(expr) = target["expr"].as_str() else {
                continue;
            };
            let legend = target["legendFormat"].as_str().unwrap_or_default();
            let query = substitute(expr, &ns);
            if query.contains('$') {
                problems.push(format!(
                    "{title}: a variable the test does not know: {query}"
                ));
                continue;
            }
            let result = prometheus.query(&query, at).await?;
            println!(
                "panel {title:?} [{legend}]: {query} -> {} series, first value {}; all: {}",
                result.len(),
                result.first().map(value).unwrap_or(f64::NAN),
                result
                    .iter()
                    .map(|s| {
                        let labels: Vec<String> = legend_labels(legend)
                            .iter()
                            .map(|l| format!("{l}={}", s["metric"][l].as_str().unwrap_or("")))
                            .collect();
                        format!("{{{}}} {}", labels.join(","), value(s))
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            checked += 1;
            if result.is_empty() {
                problems.push(format!("{title} [{legend}]: no series for {query}"));
                continue;
            }
            for label in legend_labels(legend) {
                if let Some(bare) = result.iter().find(|s| s["metric"].get(&label).is_none()) {
                    problems.push(format!(
                        "{title} [{legend}]: a series without the label {label}: {bare}"
                    ));
                }
            }
            for (_, _, check) in expectations
                .iter()
                .filter(|(t, l, _)| *t == title && *l == legend)
            {
                if let Err(e) = check(&result) {
                    problems.push(format!("{title} [{legend}]: {e}"));
                }
            }
        }
    }
    ensure!(
        checked >= expectations.len(),
        "only {checked} panel queries in the dashboard"
    );
    for (title, legend, _) in &expectations {
        let found = panels(&dashboard).iter().any(|p| {
            p["title"] == *title
                && p["targets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|t| t["legendFormat"] == *legend)
        });
        if !found {
            problems.push(format!("the dashboard has no panel {title} [{legend}]"));
        }
    }

    // The variables: label_values(METRIC, LABEL) as Grafana asks for them.
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["type"] != "query" {
            continue;
        }
        let name = variable["name"].as_str().unwrap_or_default();
        let definition = variable["query"]["query"]
            .as_str()
            .or(variable["definition"].as_str())
            .unwrap_or_default();
        let Some((selector, label)) = definition
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .and_then(|q| q.rsplit_once(','))
        else {
            bail!("variable {name}: not label_values(METRIC, LABEL): {definition}");
        };
        let selector = substitute(selector.trim(), &ns);
        let label = label.trim();
        let data = prometheus
            .get(
                &format!("/api/v1/label/{label}/values"),
                &[
                    ("match[]", &selector),
                    ("start", &format!("{:.3}", at - RATE_WINDOW_SECONDS as f64)),
                    ("end", &format!("{at:.3}")),
                ],
            )
            .await?;
        let values: BTreeSet<String> = data
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        println!("variable {name}: label_values({selector}, {label}) -> {values:?}");
        let want = if label == "namespace" {
            ns.as_str()
        } else {
            CHATCLUSTER
        };
        if !values.contains(want) {
            problems.push(format!("variable {name}: {want} not among {values:?}"));
        }
    }

    // promtool on every /metrics we serve: after traffic, the draining one, the operator.
    for (server, pod) in servers.iter().zip(&pods) {
        promtool_check(
            &format!("chat-server {pod}"),
            &format!("{}/metrics", server.admin_url),
        )
        .await?;
    }
    promtool_check("operator", &operator_metrics).await?;

    talking.abort();
    ensure!(
        problems.is_empty(),
        "dashboard problems:\n{}",
        problems.join("\n")
    );
    plane().run_ok("kubectl", &["delete", "namespace", &ns, "--wait=false"])?;
    drop(servers);
    redis.stop().await?;
    Ok(())
}
