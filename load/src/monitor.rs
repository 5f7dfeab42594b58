//! Redis commands sent by clients apart from those run inside scripts, with a
//! MONITOR connection (Redis 7.0 has no per-client command counter, and
//! `INFO commandstats` counts both). MONITOR prints one line per executed
//! command: `+TIME [DB ADDR] "NAME" ...`, where ADDR is `lua` for a command a
//! script ran. The window ends at a marker (an ECHO from another connection),
//! so every line before it has been read.

use std::{collections::BTreeMap, time::Duration};

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    task::JoinHandle,
};

use crate::procstat::{connect_redis as connect, is_counted};

/// What MONITOR showed over the window (PING and INFO left out, as in the
/// commandstats counts).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    /// Commands that came from a client connection (a script call is one).
    pub sent: u64,
    /// Commands run inside scripts (`redis.call` in EVAL/EVALSHA/FCALL).
    pub in_scripts: u64,
    pub sent_by_command: BTreeMap<String, u64>,
    pub in_scripts_by_command: BTreeMap<String, u64>,
}

/// A MONITOR connection being read.
pub struct Monitor {
    port: u16,
    marker: String,
    reader: JoinHandle<anyhow::Result<Counts>>,
}

/// Starts counting: returns once Redis has answered MONITOR with +OK.
pub async fn start(port: u16) -> anyhow::Result<Monitor> {
    let mut stream = BufReader::new(connect(port).await?);
    stream.get_mut().write_all(b"MONITOR\r\n").await?;
    let mut line = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_until(b'\n', &mut line))
        .await
        .context("Redis MONITOR timed out")??;
    if !line.starts_with(b"+OK") {
        bail!(
            "unexpected reply to MONITOR: {}",
            String::from_utf8_lossy(&line).trim_end()
        );
    }
    let marker = format!("chatscale-load-monitor-end-{}", std::process::id());
    let reader = tokio::spawn({
        let marker = marker.clone();
        async move {
            let mut counts = Counts::default();
            loop {
                line.clear();
                if stream.read_until(b'\n', &mut line).await? == 0 {
                    bail!("Redis closed the MONITOR connection");
                }
                let text = String::from_utf8_lossy(&line);
                if text.contains(&marker) {
                    return Ok(counts);
                }
                if let Some((in_script, name)) = parse_line(&text) {
                    if !is_counted(&name) {
                        continue;
                    }
                    let (total, by) = if in_script {
                        (&mut counts.in_scripts, &mut counts.in_scripts_by_command)
                    } else {
                        (&mut counts.sent, &mut counts.sent_by_command)
                    };
                    *total += 1;
                    *by.entry(name).or_default() += 1;
                }
            }
        }
    });
    Ok(Monitor {
        port,
        marker,
        reader,
    })
}

impl Monitor {
    /// Ends the window: sends the marker from another connection and returns
    /// the counts of every line before it.
    pub async fn stop(self) -> anyhow::Result<Counts> {
        let mut stream = connect(self.port).await?;
        stream
            .write_all(format!("ECHO {}\r\n", self.marker).as_bytes())
            .await?;
        let mut reply = [0u8; 256];
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut reply)).await;
        tokio::time::timeout(Duration::from_secs(60), self.reader)
            .await
            .context("the MONITOR lines did not reach the marker within 60 s")??
    }
}

/// `+1700000000.123456 [0 127.0.0.1:5000] "EVALSHA" "..."` to
/// (false, "evalsha"); `[0 lua] "INCR" ...` to (true, "incr").
pub fn parse_line(line: &str) -> Option<(bool, String)> {
    let line = line.strip_prefix('+')?;
    // The command name is the first quoted word; the client is in the
    // brackets before it (an IPv6 address has brackets of its own).
    let quote = line.find(" \"")?;
    let client = line[..quote].split_once('[')?.1.strip_suffix(']')?;
    let name = line[quote + 2..].split('"').next()?.to_ascii_lowercase();
    Some((client.ends_with(" lua"), name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_lines_are_parsed() {
        assert_eq!(
            parse_line("+1700000000.123456 [0 127.0.0.1:5000] \"EVALSHA\" \"ab\" \"1\"\r\n"),
            Some((false, "evalsha".to_owned()))
        );
        assert_eq!(
            parse_line("+1700000000.123457 [0 lua] \"INCR\" \"room:seq\"\r\n"),
            Some((true, "incr".to_owned()))
        );
        assert_eq!(
            parse_line("+1700000000.1 [3 [::1]:6000] \"publish\" \"c\" \"x y\"\r\n"),
            Some((false, "publish".to_owned()))
        );
        assert_eq!(parse_line("+OK\r\n"), None);
    }
}
