//! The JS client fleet (`tests/js/tools/fleet.mjs`: official
//! socket.io-client clients that follow the README's resume recipe), driven
//! from a Rust test over its stdin and stdout, one JSON line each way.

use std::{process::Stdio, time::Duration};

use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
};

use crate::workspace_root;

/// A running fleet; killed when dropped.
pub struct Fleet {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    /// Where its clients connect.
    pub url: String,
}

impl Fleet {
    /// Starts `node fleet.mjs` with `env` (see the script for its variables).
    pub async fn start(env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut child = Command::new("node")
            .arg(workspace_root().join("tests/js/tools/fleet.mjs"))
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped")).lines();
        let mut fleet = Self {
            child,
            stdin,
            stdout,
            url: String::new(),
        };
        let first = fleet.answer().await?;
        fleet.url = first["url"].as_str().unwrap_or_default().to_owned();
        anyhow::ensure!(!fleet.url.is_empty(), "the fleet did not start: {first}");
        Ok(fleet)
    }

    /// The next JSON line; other lines (the clients' own logs) go to stderr.
    async fn answer(&mut self) -> anyhow::Result<Value> {
        loop {
            let Some(line) = self.stdout.next_line().await? else {
                anyhow::bail!("the fleet exited");
            };
            match serde_json::from_str(&line) {
                Ok(value) => return Ok(value),
                Err(_) => eprintln!("fleet: {line}"),
            }
        }
    }

    /// Sends one command and returns its answer (an error when it reports one).
    pub async fn call(&mut self, command: Value) -> anyhow::Result<Value> {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await?;
        let answer = tokio::time::timeout(Duration::from_secs(180), self.answer())
            .await
            .map_err(|_| anyhow::anyhow!("no answer to {command} within 180 s"))??;
        anyhow::ensure!(answer.get("error").is_none(), "{command}: {answer}");
        Ok(answer)
    }

    /// Closes every client and waits for the fleet to exit.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.call(serde_json::json!({"op": "stop"})).await?;
        self.child.wait().await?;
        Ok(())
    }
}
