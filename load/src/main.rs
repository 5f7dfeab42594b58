//! chatscale-load: opens many Socket.IO v4 connections to chat servers on this
//! machine, joins rooms, sends chat lines at a target rate, asks AI questions,
//! and reports end-to-end latency (HDR histograms), connect rate, errors, and
//! the RSS and CPU time of the target processes. Ramp, hold and stop phases;
//! bounded in count and time; loopback targets only.
//!
//! `--processes K` re-executes itself as K workers (each with its own open-file
//! limit) and merges their results.

mod client;
mod monitor;
mod polling;
mod procstat;
mod report;
mod stats;
mod target;
mod worker;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::{
    procstat::ProcSample,
    stats::{Progress, Stats, WorkerResult},
    worker::{Barrier, Slice},
};

/// Load generator for Socket.IO v4 chat servers (chatscale protocol).
#[derive(Parser, Debug, Clone)]
#[command(version)]
pub struct Args {
    /// Target servers, comma separated (http://127.0.0.1:3000,...). Loopback only.
    /// Connections are spread over them so that every room spans servers.
    #[arg(long, value_delimiter = ',', required = true)]
    pub url: Vec<String>,
    /// Connections in total (over all processes).
    #[arg(long, default_value_t = 100)]
    pub connections: usize,
    /// Rooms; connection g joins room g mod ROOMS.
    #[arg(long, default_value_t = 10)]
    pub rooms: usize,
    /// Chat lines per second offered in total during the hold (open loop).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// AI questions asked at the start of the hold (one per connection, 0..N).
    #[arg(long, default_value_t = 0)]
    pub ai_queries: usize,
    /// New connections per second during the ramp (in total).
    #[arg(long, default_value_t = 2000.0)]
    pub connect_rate: f64,
    /// Handshakes in flight at once, per process.
    #[arg(long, default_value_t = 256)]
    pub max_in_flight: usize,
    /// Seconds of hold (traffic, or idle connections).
    #[arg(long, default_value_t = 5.0)]
    pub hold_secs: f64,
    /// Seconds to wait after the ramp before sampling memory.
    #[arg(long, default_value_t = 1.0)]
    pub settle_secs: f64,
    /// At most this many seconds after the hold for answers and lines to arrive.
    #[arg(long, default_value_t = 30.0)]
    pub drain_secs: f64,
    /// Seconds allowed for one connection's handshake (TCP, upgrade, connect, join).
    #[arg(long, default_value_t = 20)]
    pub handshake_timeout_secs: u64,
    /// Hard limit on the whole run, in seconds.
    #[arg(long, default_value_t = 900)]
    pub max_secs: u64,
    /// Filler bytes in each chat line.
    #[arg(long, default_value_t = 64)]
    pub text_bytes: usize,
    /// Local source addresses to spread connections over (127.0.0.1 ...).
    #[arg(long, default_value_t = 8)]
    pub source_ips: usize,
    /// Client processes: re-executes itself as workers and merges their reports.
    #[arg(long, default_value_t = 1)]
    pub processes: usize,
    /// PIDs of the target server processes (RSS and CPU from /proc).
    #[arg(long, value_delimiter = ',')]
    pub pids: Vec<u32>,
    /// Port of a Redis on 127.0.0.1: `INFO commandstats` deltas over the hold.
    #[arg(long)]
    pub redis_port: Option<u16>,
    /// With `--redis-port`: also hold a MONITOR connection over the hold and
    /// count the commands clients sent apart from those run inside scripts.
    /// MONITOR slows Redis down: use it on a short run of its own.
    #[arg(long)]
    pub redis_monitor: bool,
    /// Transport: websocket, or polling (HTTP long-polling, two HTTP/1.1
    /// connections per client).
    #[arg(long, default_value = "websocket")]
    pub transport: String,
    /// Protocol: socketio (Engine.IO v4 / Socket.IO v4), or floor: the bare
    /// WebSocket protocol of chatscale-floor (`join <room>` answered by `ok`,
    /// then the stamped lines as plain text frames; no acks, so the sender's
    /// own copy of a line counts as its ack). Chat lines only: no AI questions.
    #[arg(long, default_value = "socketio")]
    pub protocol: String,
    /// Write the JSON report here ("-" for stdout).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// A label for the report (e.g. the server's name).
    #[arg(long, default_value = "")]
    pub label: String,
    /// Internal: run as worker I of K ("I/K").
    #[arg(long, hide = true)]
    pub worker: Option<String>,
}

/// Samples of the targets at each phase boundary.
#[derive(Default)]
struct Sampler {
    pids: Vec<u32>,
    redis_port: Option<u16>,
    procs: Mutex<BTreeMap<&'static str, Vec<ProcSample>>>,
    redis: Mutex<BTreeMap<&'static str, BTreeMap<String, u64>>>,
    /// With `--redis-monitor`: MONITOR from "ramped" to "held".
    redis_monitor: bool,
    monitor: tokio::sync::Mutex<Option<monitor::Monitor>>,
    monitored: Mutex<Option<monitor::Counts>>,
    bar: Option<ProgressBar>,
}

impl Sampler {
    async fn take(&self, phase: &'static str) -> anyhow::Result<()> {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("phase: {phase}"));
        }
        let samples = self
            .pids
            .iter()
            .map(|&pid| procstat::sample(pid))
            .collect::<anyhow::Result<Vec<_>>>()?;
        self.procs.lock().unwrap().insert(phase, samples);
        if let Some(port) = self.redis_port {
            // The MONITOR window holds the commandstats window.
            if self.redis_monitor && phase == "ramped" {
                *self.monitor.lock().await = Some(monitor::start(port).await?);
            }
            let stats = procstat::redis_commandstats(port).await?;
            self.redis.lock().unwrap().insert(phase, stats);
            if phase == "held"
                && let Some(running) = self.monitor.lock().await.take()
            {
                *self.monitored.lock().unwrap() = Some(running.stop().await?);
            }
        }
        Ok(())
    }
}

/// In one process the worker samples at its own barriers.
struct LocalBarrier<'a>(&'a Sampler);

impl Barrier for LocalBarrier<'_> {
    async fn wait(&self, phase: &'static str) -> anyhow::Result<()> {
        self.0.take(phase).await
    }
}

/// A worker process tells the parent on stdout and waits for "go" on stdin.
struct RemoteBarrier(tokio::sync::Mutex<tokio::io::Lines<BufReader<tokio::io::Stdin>>>);

impl Barrier for RemoteBarrier {
    async fn wait(&self, phase: &'static str) -> anyhow::Result<()> {
        emit(&WorkerLine::Barrier(phase.to_owned()));
        let line = self.0.lock().await.next_line().await?;
        match line.as_deref() {
            Some("go") => Ok(()),
            other => bail!("worker: expected \"go\" from the parent, got {other:?}"),
        }
    }
}

/// What a worker process prints on stdout, one JSON object a line.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum WorkerLine {
    Progress(Progress),
    Barrier(String),
    Result(Box<WorkerResult>),
}

fn emit(line: &WorkerLine) {
    println!("{}", serde_json::to_string(line).expect("serializable"));
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let max = Duration::from_secs(args.max_secs);
    let result = runtime.block_on(async {
        match tokio::time::timeout(max, run(args.clone())).await {
            Ok(result) => result,
            Err(_) => bail!("the run took longer than --max-secs {}", args.max_secs),
        }
    });
    // Connections still closing must not hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.transport != "websocket" && args.transport != "polling" {
        bail!("--transport {}: use websocket or polling", args.transport);
    }
    match args.protocol.as_str() {
        "socketio" => {}
        "floor" if args.transport != "websocket" => {
            bail!("--protocol floor speaks WebSocket only (no --transport polling)")
        }
        "floor" if args.ai_queries > 0 => {
            bail!("--protocol floor has no AI answers (no --ai-queries)")
        }
        "floor" => {}
        other => bail!("--protocol {other}: use socketio or floor"),
    }
    if args.redis_monitor && args.redis_port.is_none() {
        bail!("--redis-monitor needs --redis-port");
    }
    let targets = args
        .url
        .iter()
        .map(|u| target::parse(u))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if args.connections == 0 || args.rooms == 0 {
        bail!("--connections and --rooms must be at least 1");
    }
    if let Some(worker) = &args.worker {
        let (i, k) = worker.split_once('/').context("--worker takes I/K")?;
        let slice = Slice {
            index: i.parse()?,
            count: k.parse()?,
        };
        check_open_files(slice.range(args.connections).len())?;
        let stats = Arc::new(Stats::default());
        let progress = {
            let stats = stats.clone();
            tokio::spawn(async move {
                loop {
                    emit(&WorkerLine::Progress(stats.progress()));
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            })
        };
        let barrier = RemoteBarrier(tokio::sync::Mutex::new(
            BufReader::new(tokio::io::stdin()).lines(),
        ));
        let result = worker::run(&args, &targets, slice, stats, &barrier).await?;
        progress.abort();
        emit(&WorkerLine::Result(Box::new(result)));
        return Ok(());
    }

    let started = Instant::now();
    let bar = progress_bar(&args);
    let sampler = Sampler {
        pids: args.pids.clone(),
        redis_port: args.redis_port,
        redis_monitor: args.redis_monitor,
        bar: Some(bar.clone()),
        ..Default::default()
    };
    sampler.take("start").await?;
    let result = if args.processes <= 1 {
        check_open_files(args.connections)?;
        let stats = Arc::new(Stats::default());
        let ticker = {
            let (stats, bar) = (stats.clone(), bar.clone());
            tokio::spawn(async move {
                loop {
                    show(&bar, stats.progress());
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        };
        let slice = Slice { index: 0, count: 1 };
        let result = worker::run(&args, &targets, slice, stats, &LocalBarrier(&sampler)).await;
        ticker.abort();
        result?
    } else {
        run_processes(&args, &sampler, &bar).await?
    };
    bar.finish_and_clear();
    let report = report::build(&args, &result, &sampler, started.elapsed());
    let json = serde_json::to_string_pretty(&report)?;
    match args.json.as_deref() {
        Some(path) if path.as_os_str() == "-" => println!("{json}"),
        Some(path) => std::fs::write(path, &json)
            .with_context(|| format!("writing the report to {}", path.display()))?,
        None => {}
    }
    eprintln!("{}", report::summary(&report));
    Ok(())
}

fn progress_bar(args: &Args) -> ProgressBar {
    let bar = ProgressBar::new(args.connections as u64);
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(5));
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} open  {msg}",
        )
        .expect("valid template"),
    );
    bar.set_message("phase: ramp");
    bar
}

fn show(bar: &ProgressBar, p: Progress) {
    bar.set_position(p.open);
    let phase = bar.message();
    let phase = phase.split("  ").next().unwrap_or("").to_owned();
    bar.set_message(format!(
        "{phase}  sent {} delivered {} chunks {} answers {} errors {}",
        p.sent, p.delivered, p.ai_chunks, p.ai_done, p.errors
    ));
}

/// Raises the soft open-file limit to the hard one and checks that `conns`
/// sockets fit.
fn check_open_files(conns: usize) -> anyhow::Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid resource and struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
    let needed = conns as u64 + 64;
    if needed > limit.rlim_cur {
        bail!(
            "{conns} connections need about {needed} open files but this process may have {}; \
             use --processes to spread them",
            limit.rlim_cur
        );
    }
    Ok(())
}

/// Runs `--processes K` workers (this binary again), passes the barriers when
/// all have reached them, and merges the results.
async fn run_processes(
    args: &Args,
    sampler: &Sampler,
    bar: &ProgressBar,
) -> anyhow::Result<WorkerResult> {
    let k = args.processes;
    let exe = std::env::current_exe()?;
    let passthrough: Vec<String> = std::env::args().skip(1).collect();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, WorkerLine)>();
    let mut stdins = Vec::new();
    let mut children = Vec::new();
    for i in 0..k {
        let mut child = tokio::process::Command::new(&exe)
            .args(&passthrough)
            .args(["--worker", &format!("{i}/{k}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting a worker process")?;
        stdins.push(child.stdin.take().expect("piped"));
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(parsed) = serde_json::from_str::<WorkerLine>(&line) {
                    let _ = tx.send((i, parsed));
                }
            }
        });
        children.push(child);
    }
    drop(tx);
    let mut progress = vec![Progress::default(); k];
    let mut at_barrier: BTreeMap<String, usize> = BTreeMap::new();
    let mut merged = WorkerResult::default();
    let mut results = 0;
    while results < k {
        let Some((i, line)) = rx.recv().await else {
            bail!("a worker process ended without a result (see its errors above)");
        };
        match line {
            WorkerLine::Progress(p) => {
                progress[i] = p;
                let mut sum = Progress::default();
                for p in &progress {
                    sum += *p;
                }
                show(bar, sum);
            }
            WorkerLine::Barrier(phase) => {
                let n = at_barrier.entry(phase.clone()).or_default();
                *n += 1;
                if *n == k {
                    let phase: &'static str = match phase.as_str() {
                        "ramped" => "ramped",
                        "held" => "held",
                        other => bail!("unknown phase {other}"),
                    };
                    sampler.take(phase).await?;
                    for stdin in &mut stdins {
                        stdin.write_all(b"go\n").await?;
                    }
                }
            }
            WorkerLine::Result(result) => {
                merged.merge(*result);
                results += 1;
            }
        }
    }
    for mut child in children {
        let status = child.wait().await?;
        if !status.success() {
            bail!("a worker process failed: {status}");
        }
    }
    Ok(merged)
}
