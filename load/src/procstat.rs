//! Samples of the target processes (RSS and CPU time from /proc, when the
//! servers run on this machine and their PIDs are given) and of a local
//! Redis (`INFO commandstats`, for commands per answer).

use std::{collections::BTreeMap, time::Duration};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// One look at one process.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct ProcSample {
    pub rss_bytes: u64,
    /// utime + stime, in seconds.
    pub cpu_seconds: f64,
    /// stime alone (the kernel's share: for loopback TCP, a send also runs
    /// the receiving side of the stack).
    pub cpu_system_seconds: f64,
}

/// RSS (VmRSS) and utime+stime of `pid`.
pub fn sample(pid: u32) -> anyhow::Result<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status (is the process running?)"))?;
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces: count fields after its ')'.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("unexpected /proc/PID/stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) are utime and stime; `after` starts at field 3.
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i - 3)
            .and_then(|v| v.parse().ok())
            .context("unexpected /proc/PID/stat")
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(ProcSample {
        rss_bytes: rss_kb * 1024,
        cpu_seconds: (ticks(14)? + ticks(15)?) as f64 / hz,
        cpu_system_seconds: ticks(15)? as f64 / hz,
    })
}

/// A connection to the Redis on 127.0.0.1:`port`.
pub async fn connect_redis(port: u16) -> anyhow::Result<TcpStream> {
    tokio::time::timeout(
        Duration::from_secs(5),
        TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    .context("connecting to Redis timed out")?
    .with_context(|| format!("connecting to Redis on 127.0.0.1:{port}"))
}

/// Whether a command counts: `info` and `ping` (ours and health checks) do not.
pub fn is_counted(name: &str) -> bool {
    name != "info" && name != "ping"
}

/// `INFO commandstats` of the Redis on 127.0.0.1:`port`: calls per counted
/// command (lower case).
pub async fn redis_commandstats(port: u16) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut stream = connect_redis(port).await?;
    stream.write_all(b"INFO commandstats\r\n").await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    // A bulk string: `$LEN\r\n...\r\n`.
    let body = loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .context("Redis INFO timed out")??;
        if n == 0 {
            bail!("Redis closed the connection");
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(header_end) = text.find("\r\n") {
            if !text.starts_with('$') {
                bail!("unexpected Redis reply: {}", &text[..header_end]);
            }
            let len: usize = text[1..header_end].parse()?;
            if buf.len() >= header_end + 2 + len {
                break String::from_utf8_lossy(&buf[header_end + 2..header_end + 2 + len])
                    .into_owned();
            }
        }
    };
    Ok(parse_commandstats(&body))
}

/// `cmdstat_incr:calls=3,usec=...` lines to {"incr": 3}.
pub fn parse_commandstats(body: &str) -> BTreeMap<String, u64> {
    body.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))?
                .parse()
                .ok()?;
            let name = name.to_ascii_lowercase();
            is_counted(&name).then_some((name, calls))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_sampled() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_bytes > 1024 * 1024, "{s:?}");
        assert!(s.cpu_seconds >= 0.0);
        assert!(sample(u32::MAX).is_err());
    }

    #[test]
    fn commandstats_are_parsed() {
        let body = "# Commandstats\r\ncmdstat_incr:calls=3,usec=10,usec_per_call=3.33\r\n\
                    cmdstat_info:calls=9,usec=1\r\ncmdstat_publish:calls=12,usec=5\r\n";
        let stats = parse_commandstats(body);
        assert_eq!(stats.get("incr"), Some(&3));
        assert_eq!(stats.get("publish"), Some(&12));
        assert!(!stats.contains_key("info"));
    }
}
