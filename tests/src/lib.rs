//! Test support shared by the workspace's end-to-end tests: start the real
//! chat-server binary on free ports, talk to it with a real Socket.IO client
//! (rust_socketio), and read its Prometheus metrics.

pub mod cluster;
pub mod fleet;

use std::{
    path::Path,
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, bail};
use futures::FutureExt;
use rust_socketio::{
    Event, Payload,
    asynchronous::{Client, ClientBuilder},
};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    process::{Child, Command},
    sync::{mpsc, oneshot},
};

/// The workspace's root folder.
pub fn workspace_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The chat-server binary: `CHAT_SERVER_BIN`, or the workspace's debug build
/// (`cargo test --workspace` builds it along with chat-server's own tests).
pub fn chat_server_bin() -> std::path::PathBuf {
    let bin = std::env::var("CHAT_SERVER_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target/debug/chat-server"));
    assert!(
        bin.exists(),
        "build chat-server first (make test-build, which make test runs)"
    );
    bin
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Polls `check` every 100 ms until it yields a value (or fails), for at
/// most `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        anyhow::ensure!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `check` every 100 ms until it holds, for at most `limit`; returns how long it took.
pub async fn wait_until<F, Fut>(
    what: &str,
    limit: Duration,
    mut check: F,
) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    wait_for(what, limit, || {
        let holds = check();
        async move { Ok(holds.await.then_some(())) }
    })
    .await?;
    Ok(start.elapsed())
}

/// A chat-server process; killed when dropped.
pub struct ChatServer {
    child: Child,
    /// `http://127.0.0.1:PORT`, Socket.IO and the demo page.
    pub url: String,
    /// `http://127.0.0.1:PORT`, metrics and health.
    pub admin_url: String,
    logs: Arc<Mutex<String>>,
}

impl ChatServer {
    /// Starts `bin` on free loopback ports with extra `args`, and waits until it listens.
    pub async fn start(bin: &Path, args: &[&str]) -> anyhow::Result<Self> {
        Self::start_on(bin, 0, 0, args).await
    }

    /// Starts `bin` on the given loopback ports (0: any free port).
    pub async fn start_on(
        bin: &Path,
        port: u16,
        admin_port: u16,
        args: &[&str],
    ) -> anyhow::Result<Self> {
        let (port, admin_port) = (port.to_string(), admin_port.to_string());
        let mut child = Command::new(bin)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port,
                "--admin-port",
                &admin_port,
            ])
            .args(args)
            .env("CHAT_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let logs = Arc::new(Mutex::new(String::new()));
        collect(child.stderr.take().expect("piped"), logs.clone(), None);
        let (listening, announced) = oneshot::channel();
        collect(
            child.stdout.take().expect("piped"),
            logs.clone(),
            Some(listening),
        );
        let line = tokio::time::timeout(Duration::from_secs(30), announced)
            .await
            .context("chat-server did not start within 30 s")?
            .with_context(|| format!("chat-server exited early:\n{}", logs.lock().unwrap()))?;
        // "chat-server listening on http://A (admin http://B)"
        let mut urls = line.split_whitespace().filter(|w| w.contains("http://"));
        let (Some(url), Some(admin)) = (urls.next(), urls.next()) else {
            bail!("unexpected start line: {line}");
        };
        Ok(Self {
            child,
            url: url.to_owned(),
            admin_url: admin.trim_end_matches(')').to_owned(),
            logs,
        })
    }

    /// Everything the server printed so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM and waits for the exit.
    pub async fn stop(mut self) -> anyhow::Result<ExitStatus> {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) with a pid we own and a valid signal number.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
        Ok(tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await??)
    }

    /// GETs a path on the admin port: (status, body).
    pub async fn admin_get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let response = reqwest::get(format!("{}{path}", self.admin_url)).await?;
        Ok((response.status().as_u16(), response.text().await?))
    }

    /// One sample's value from `/metrics` (labels ignored; the first sample wins).
    pub async fn metric(&self, name: &str) -> anyhow::Result<Option<f64>> {
        let (_, body) = self.admin_get("/metrics").await?;
        let lines = body.lines().map(|l| Ok(l.to_owned()));
        let scrape = prometheus_parse::Scrape::parse(lines)?;
        Ok(scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            }))
    }
}

/// Appends a child's output to `logs`; hands the "listening" line to `listening`.
fn collect(
    pipe: impl AsyncRead + Unpin + Send + 'static,
    logs: Arc<Mutex<String>>,
    mut listening: Option<oneshot::Sender<String>>,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("chat-server listening on")
                && let Some(tx) = listening.take()
            {
                let _ = tx.send(line.clone());
            }
            let mut logs = logs.lock().unwrap();
            logs.push_str(&line);
            logs.push('\n');
        }
    });
}

/// A Socket.IO client (rust_socketio) that records every event it receives.
/// Use it from a multi-thread Tokio runtime: on a current-thread runtime its
/// ack callbacks were seen to go missing now and then.
pub struct SocketClient {
    client: Client,
    events: mpsc::UnboundedReceiver<(String, Value)>,
}

impl SocketClient {
    /// Connects and waits for the namespace to be joined (the server's CONNECT
    /// answer): rust_socketio's `connect` returns before that.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let (tx, events) = mpsc::unbounded_channel();
        let (opened, open) = oneshot::channel();
        let opened = Mutex::new(Some(opened));
        let client = ClientBuilder::new(url)
            .namespace("/")
            .on(Event::Connect, move |_, _| {
                if let Some(opened) = opened.lock().unwrap().take() {
                    let _ = opened.send(());
                }
                async {}.boxed()
            })
            .on_any(move |event, payload, _| {
                if let Payload::Text(values) = payload {
                    let value = values.into_iter().next().unwrap_or(Value::Null);
                    let _ = tx.send((event.to_string(), value));
                }
                async {}.boxed()
            })
            .connect()
            .await?;
        tokio::time::timeout(Duration::from_secs(10), open)
            .await
            .context("no CONNECT answer within 10 s")??;
        Ok(Self { client, events })
    }

    /// Emits `event` with `data` and returns the server's ack.
    pub async fn ask(&self, event: &str, data: Value) -> anyhow::Result<Value> {
        let (tx, rx) = oneshot::channel();
        let tx = Mutex::new(Some(tx));
        self.client
            .emit_with_ack(event, data, Duration::from_secs(5), move |payload, _| {
                if let (Some(tx), Payload::Text(values)) = (tx.lock().unwrap().take(), payload) {
                    // rust_socketio hands ack arguments over as one array.
                    let first = match values.into_iter().next() {
                        Some(Value::Array(args)) => args.into_iter().next(),
                        other => other,
                    };
                    let _ = tx.send(first.unwrap_or(Value::Null));
                }
                async {}.boxed()
            })
            .await?;
        Ok(tokio::time::timeout(Duration::from_secs(5), rx).await??)
    }

    /// The next event received, with its payload.
    pub async fn next_event(&mut self) -> anyhow::Result<(String, Value)> {
        tokio::time::timeout(Duration::from_secs(10), self.events.recv())
            .await?
            .context("the client stopped")
    }

    pub async fn disconnect(self) -> anyhow::Result<()> {
        Ok(self.client.disconnect().await?)
    }
}

/// A real redis-server on a free loopback port, without persistence; killed when dropped.
pub struct RedisServer {
    child: Child,
    pub url: String,
}

impl RedisServer {
    pub async fn start() -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting redis-server (Debian package redis-server)")?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if tokio::time::Instant::now() > deadline {
                bail!("redis-server did not listen on {port}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Self {
            child,
            url: format!("redis://127.0.0.1:{port}"),
        })
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}

/// Load on a Redis, for tests that watch its ops/s: pipelines of 50 INCRs
/// back to back (thousands of commands a second) until `stop`.
pub struct RedisTraffic {
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl RedisTraffic {
    pub async fn start(url: &str) -> anyhow::Result<Self> {
        use std::sync::atomic::{AtomicBool, Ordering};
        let mut conn = redis::Client::open(url)?
            .get_multiplexed_async_connection()
            .await?;
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut pipe = redis::pipe();
                for _ in 0..50 {
                    pipe.cmd("INCR").arg("traffic").ignore();
                }
                while !stop.load(Ordering::Relaxed) {
                    let sent: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
                    if sent.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Self { stop, task })
    }

    pub async fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.task.await;
    }
}

/// Checks Kubernetes objects (YAML, one or more documents) against the
/// Kubernetes 1.33 OpenAPI schemas with `kubernetes-validate --strict` (PyPI,
/// installed by `make deps`). `Err` carries what it printed.
pub fn kubernetes_validate(name: &str, yaml: &str) -> Result<(), String> {
    let file = std::env::temp_dir().join(format!(
        "chatscale-validate-{}-{}",
        std::process::id(),
        name.replace('/', "_")
    ));
    std::fs::write(&file, yaml).map_err(|e| format!("{name}: {e}"))?;
    let output = std::process::Command::new("kubernetes-validate")
        .args(["--strict", "-k", "1.33.0", "--quiet"])
        .arg(&file)
        .output()
        .expect("kubernetes-validate (PyPI) is missing: run `make deps`");
    let _ = std::fs::remove_file(&file);
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{name}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}
