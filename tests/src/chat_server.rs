//! The real chat-server binary as a child process on loopback ports, with its
//! logs collected and its Prometheus metrics readable.

use std::{
    path::Path,
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, bail};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    process::{Child, Command},
    sync::oneshot,
};

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
