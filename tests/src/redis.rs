//! A real redis-server for tests, and load on it for tests that watch its ops/s.

use std::{process::Stdio, sync::Arc, time::Duration};

use anyhow::Context;
use tokio::process::{Child, Command};

/// A real redis-server on a free loopback port, without persistence; killed when dropped.
pub struct RedisServer {
    child: Child,
    pub url: String,
}

impl RedisServer {
    pub async fn start() -> anyhow::Result<Self> {
        let port = crate::free_port();
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
        crate::wait_until(
            &format!("redis-server listening on {port}"),
            Duration::from_secs(10),
            || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
            },
        )
        .await?;
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
