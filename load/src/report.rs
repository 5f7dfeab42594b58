//! The JSON report and the plain summary printed at the end of a run.

use std::{collections::BTreeMap, time::Duration};

use serde::Serialize;

use crate::{
    Args, Sampler,
    stats::{Latency, WorkerResult},
};

#[derive(Debug, Serialize)]
pub struct Report {
    pub label: String,
    pub targets: Vec<String>,
    pub transport: String,
    pub processes: usize,
    pub config: Config,
    pub phases: Phases,
    pub connections: Connections,
    pub messages: Messages,
    pub ai: Ai,
    pub errors: Errors,
    pub servers: Vec<ServerProcess>,
    pub server_totals: ServerTotals,
    /// Present with `--redis-port`.
    pub redis: Option<Redis>,
}

#[derive(Debug, Serialize)]
pub struct Config {
    pub connections: usize,
    pub rooms: usize,
    pub rate: f64,
    pub ai_queries: usize,
    pub connect_rate: f64,
    pub hold_secs: f64,
    pub text_bytes: usize,
    pub source_ips: usize,
}

#[derive(Debug, Serialize)]
pub struct Phases {
    pub ramp_seconds: f64,
    /// The hold and the drain after it (answers finishing, last lines arriving).
    pub hold_seconds: f64,
    pub stop_seconds: f64,
    pub total_seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct Connections {
    pub attempted: u64,
    pub established: u64,
    pub failed: u64,
    pub open_at_ramp_end: u64,
    pub connects_per_second: f64,
    /// TCP connect to join ack.
    pub connect_latency: Latency,
}

#[derive(Debug, Serialize)]
pub struct Messages {
    pub sent: u64,
    pub acked: u64,
    /// The generator's chat lines received by all clients (the sender's echo
    /// included; AI prompts and other lines are not counted).
    pub delivered: u64,
    /// What the sent lines should have produced (room members that joined).
    pub expected_deliveries: u64,
    pub lost: u64,
    /// Deliveries over the time from the start of the hold to the last delivery.
    pub delivered_per_second: f64,
    /// Send to receive on another client (not the sender's own echo).
    pub latency: Latency,
    /// Send to ack, at the sender.
    pub ack_latency: Latency,
}

#[derive(Debug, Serialize)]
pub struct Ai {
    pub asked: u64,
    pub acked: u64,
    /// Answers whose last chunk (done) reached the client that asked.
    pub answers_done: u64,
    /// `ai-response-stream` events received by all clients.
    pub chunk_events: u64,
    /// Streams seen to the end by a client (asker and other room members).
    pub streams_received: u64,
    /// Chunk events per answer per receiving client.
    pub chunks_per_answer: f64,
    /// Time between consecutive chunks of one stream at one client.
    pub chunk_gap: Latency,
}

#[derive(Debug, Serialize)]
pub struct Errors {
    pub total: u64,
    pub connect: u64,
    pub protocol: u64,
    pub ack_refused: u64,
    pub ack_missing: u64,
    pub disconnects: u64,
    pub first: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ServerProcess {
    pub pid: u32,
    pub rss_start_bytes: u64,
    pub rss_ramped_bytes: u64,
    pub rss_held_bytes: u64,
    pub cpu_ramp_seconds: f64,
    pub cpu_hold_seconds: f64,
    /// The kernel's part of `cpu_hold_seconds`.
    pub cpu_hold_system_seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct ServerTotals {
    /// Sum of RSS growth over the ramp, divided by the connections established.
    pub rss_per_connection_bytes: f64,
    /// Sum of RSS after the ramp, divided by the connections established.
    pub rss_total_per_connection_bytes: f64,
    pub cpu_hold_seconds: f64,
    pub cpu_hold_system_seconds: f64,
    /// CPU seconds of the servers over the hold per million deliveries.
    pub cpu_seconds_per_million_delivered: f64,
}

#[derive(Debug, Serialize)]
pub struct Redis {
    /// Command calls over the hold (INFO and PING left out).
    pub commands: BTreeMap<String, u64>,
    pub total_commands: u64,
    pub commands_per_answer: f64,
    /// With `--redis-monitor`: the same window seen through MONITOR.
    pub monitor: Option<Monitor>,
}

#[derive(Debug, Serialize)]
pub struct Monitor {
    #[serde(flatten)]
    pub counts: crate::monitor::Counts,
    /// Commands the clients sent (a script call counts once), per answer.
    pub sent_per_answer: f64,
    /// Sent plus those run inside scripts, per answer.
    pub executed_per_answer: f64,
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

pub fn build(args: &Args, r: &WorkerResult, sampler: &Sampler, total: Duration) -> Report {
    let procs = sampler.procs.lock().unwrap();
    let at = |phase: &str, i: usize| {
        procs
            .get(phase)
            .and_then(|v| v.get(i).copied())
            .unwrap_or_default()
    };
    let servers: Vec<ServerProcess> = args
        .pids
        .iter()
        .enumerate()
        .map(|(i, &pid)| ServerProcess {
            pid,
            rss_start_bytes: at("start", i).rss_bytes,
            rss_ramped_bytes: at("ramped", i).rss_bytes,
            rss_held_bytes: at("held", i).rss_bytes,
            cpu_ramp_seconds: at("ramped", i).cpu_seconds - at("start", i).cpu_seconds,
            cpu_hold_seconds: at("held", i).cpu_seconds - at("ramped", i).cpu_seconds,
            cpu_hold_system_seconds: at("held", i).cpu_system_seconds
                - at("ramped", i).cpu_system_seconds,
        })
        .collect();
    let established = r.established as f64;
    let rss_growth: f64 = servers
        .iter()
        .map(|s| s.rss_ramped_bytes as f64 - s.rss_start_bytes as f64)
        .sum();
    let rss_total: f64 = servers.iter().map(|s| s.rss_ramped_bytes as f64).sum();
    let cpu_hold: f64 = servers.iter().map(|s| s.cpu_hold_seconds).sum();
    let expected: u64 = r
        .sent_per_room
        .iter()
        .zip(&r.members_per_room)
        .map(|(s, m)| s * m)
        .sum();
    let redis = sampler.redis_port.map(|_| {
        let stats = sampler.redis.lock().unwrap();
        let empty = BTreeMap::new();
        let before = stats.get("ramped").unwrap_or(&empty);
        let after = stats.get("held").unwrap_or(&empty);
        let commands: BTreeMap<String, u64> = after
            .iter()
            .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
            .filter(|(_, v)| *v > 0)
            .collect();
        let total_commands = commands.values().sum();
        let answers = r.ai_done as f64;
        let monitor = sampler
            .monitored
            .lock()
            .unwrap()
            .clone()
            .map(|counts| Monitor {
                sent_per_answer: ratio(counts.sent as f64, answers),
                executed_per_answer: ratio((counts.sent + counts.in_scripts) as f64, answers),
                counts,
            });
        Redis {
            commands_per_answer: ratio(total_commands as f64, answers),
            commands,
            total_commands,
            monitor,
        }
    });
    Report {
        label: args.label.clone(),
        targets: args.url.clone(),
        transport: args.transport.clone(),
        processes: args.processes.max(1),
        config: Config {
            connections: args.connections,
            rooms: args.rooms,
            rate: args.rate,
            ai_queries: args.ai_queries,
            connect_rate: args.connect_rate,
            hold_secs: args.hold_secs,
            text_bytes: args.text_bytes,
            source_ips: args.source_ips,
        },
        phases: Phases {
            ramp_seconds: r.ramp_seconds,
            hold_seconds: r.hold_seconds,
            stop_seconds: r.stop_seconds,
            total_seconds: total.as_secs_f64(),
        },
        connections: Connections {
            attempted: r.attempted,
            established: r.established,
            failed: r.connect_errors,
            open_at_ramp_end: r.peak_open,
            connects_per_second: ratio(established, r.ramp_seconds),
            connect_latency: Latency::of(&r.connect_latency.to_histogram()),
        },
        messages: Messages {
            sent: r.sent,
            acked: r.acked,
            delivered: r.delivered,
            expected_deliveries: expected,
            lost: expected.saturating_sub(r.delivered),
            delivered_per_second: ratio(r.delivered as f64, r.delivery_seconds),
            latency: Latency::of(&r.message_latency.to_histogram()),
            ack_latency: Latency::of(&r.ack_latency.to_histogram()),
        },
        ai: Ai {
            asked: r.ai_asked,
            acked: r.ai_acked,
            answers_done: r.ai_done,
            chunk_events: r.ai_chunks,
            streams_received: r.ai_streams_seen_done,
            chunks_per_answer: ratio(r.ai_chunks as f64, r.ai_streams_seen_done as f64),
            chunk_gap: Latency::of(&r.chunk_gap.to_histogram()),
        },
        errors: Errors {
            total: r.connect_errors
                + r.protocol_errors
                + r.ack_errors
                + r.ack_timeouts
                + r.unexpected_disconnects,
            connect: r.connect_errors,
            protocol: r.protocol_errors,
            ack_refused: r.ack_errors,
            ack_missing: r.ack_timeouts,
            disconnects: r.unexpected_disconnects,
            first: r.first_errors.clone(),
        },
        server_totals: ServerTotals {
            rss_per_connection_bytes: ratio(rss_growth, established),
            rss_total_per_connection_bytes: ratio(rss_total, established),
            cpu_hold_seconds: cpu_hold,
            cpu_hold_system_seconds: servers.iter().map(|s| s.cpu_hold_system_seconds).sum(),
            cpu_seconds_per_million_delivered: ratio(cpu_hold * 1e6, r.delivered as f64),
        },
        servers,
        redis,
    }
}

/// A few plain lines for people.
pub fn summary(r: &Report) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    let label = if r.label.is_empty() {
        String::new()
    } else {
        format!(" [{}]", r.label)
    };
    line(format!(
        "chatscale-load{label}: {} targets, {} process(es), {:.1} s",
        r.targets.len(),
        r.processes,
        r.phases.total_seconds
    ));
    let c = &r.connections;
    line(format!(
        "  connections: {}/{} established, {} failed, {:.0}/s over a {:.1} s ramp, connect p50 {:.1} ms p99 {:.1} ms",
        c.established,
        c.attempted,
        c.failed,
        c.connects_per_second,
        r.phases.ramp_seconds,
        c.connect_latency.p50_ms,
        c.connect_latency.p99_ms
    ));
    let m = &r.messages;
    if m.sent > 0 {
        line(format!(
            "  messages: {} sent, {} acked, {} delivered ({:.0}/s), {} lost; latency p50 {:.2} ms p99 {:.2} ms max {:.1} ms",
            m.sent,
            m.acked,
            m.delivered,
            m.delivered_per_second,
            m.lost,
            m.latency.p50_ms,
            m.latency.p99_ms,
            m.latency.max_ms
        ));
    }
    let a = &r.ai;
    if a.asked > 0 {
        line(format!(
            "  ai: {} asked, {} answered; {:.1} chunk events per answer; gap between chunks p50 {:.1} ms p99 {:.1} ms",
            a.asked, a.answers_done, a.chunks_per_answer, a.chunk_gap.p50_ms, a.chunk_gap.p99_ms
        ));
    }
    if !r.servers.is_empty() {
        let t = &r.server_totals;
        line(format!(
            "  servers: RSS +{:.1} KB per connection ({:.1} KB incl. baseline); {:.2} CPU s over the hold, {:.2} of it in the kernel ({:.1} CPU s per million delivered)",
            t.rss_per_connection_bytes / 1024.0,
            t.rss_total_per_connection_bytes / 1024.0,
            t.cpu_hold_seconds,
            t.cpu_hold_system_seconds,
            t.cpu_seconds_per_million_delivered
        ));
    }
    if let Some(redis) = &r.redis {
        line(format!(
            "  redis: {} commands over the hold, {:.1} per answer",
            redis.total_commands, redis.commands_per_answer
        ));
        if let Some(m) = &redis.monitor {
            line(format!(
                "  redis MONITOR: {} sent by clients, {} inside scripts; {:.1} sent and {:.1} executed per answer",
                m.counts.sent, m.counts.in_scripts, m.sent_per_answer, m.executed_per_answer
            ));
        }
    }
    let e = &r.errors;
    line(format!(
        "  errors: {} (connect {}, protocol {}, refused acks {}, missing acks {}, disconnects {})",
        e.total, e.connect, e.protocol, e.ack_refused, e.ack_missing, e.disconnects
    ));
    for first in &e.first {
        line(format!("    {first}"));
    }
    out
}
