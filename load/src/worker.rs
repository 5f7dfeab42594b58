//! One worker: its share of the connections, ramped, held under load, stopped.
//! Between phases it waits at a barrier, where the parent (or, in a single
//! process, the worker itself) samples the target processes.

use std::{
    sync::{Arc, atomic::Ordering::Relaxed},
    time::{Duration, Instant},
};

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::{
    Args,
    client::{self, Cmd, Conn, Shared},
    stats::{Stats, WorkerResult},
    target::{self, Target},
};

/// Which slice of the global connections this worker owns.
#[derive(Debug, Clone, Copy)]
pub struct Slice {
    pub index: usize,
    pub count: usize,
}

impl Slice {
    /// Contiguous blocks, so that every worker has members in every room.
    pub fn range(&self, total: usize) -> std::ops::Range<usize> {
        let lo = total * self.index / self.count;
        let hi = total * (self.index + 1) / self.count;
        lo..hi
    }
}

/// The room of global connection `g`.
pub fn room_of(g: usize, rooms: usize) -> usize {
    g % rooms
}

/// The server of global connection `g`: members of one room are spread over
/// the servers (`g / rooms`), so room traffic crosses servers.
pub fn server_of(g: usize, rooms: usize, servers: usize) -> usize {
    (g / rooms) % servers
}

/// Called at each phase boundary: "ramped" and "held".
pub trait Barrier {
    fn wait(&self, phase: &'static str) -> impl Future<Output = anyhow::Result<()>>;
}

pub async fn run(
    args: &Args,
    targets: &[Target],
    slice: Slice,
    stats: Arc<Stats>,
    barrier: &impl Barrier,
) -> anyhow::Result<WorkerResult> {
    let total = args.connections;
    let rooms = args.rooms.max(1);
    let range = slice.range(total);
    let share = |global: f64| global * range.len() as f64 / total.max(1) as f64;
    let shared = Arc::new(Shared {
        stats: stats.clone(),
        text_bytes: args.text_bytes,
        handshake_timeout: Duration::from_secs(args.handshake_timeout_secs),
        polling: args.transport == "polling",
        floor: args.protocol == "floor",
        errors: Default::default(),
    });
    let targets: Vec<Arc<Target>> = targets.iter().cloned().map(Arc::new).collect();
    let room_names: Vec<Arc<str>> = (0..rooms)
        .map(|r| Arc::from(format!("load-{r}").as_str()))
        .collect();
    let stop = CancellationToken::new();
    let slots = Arc::new(Semaphore::new(args.max_in_flight.max(1)));

    // Ramp: open connections at the target rate, with a bounded number of
    // handshakes in flight.
    let ramp_started = Instant::now();
    let rate = share(args.connect_rate).max(1.0);
    let mut senders = Vec::with_capacity(range.len());
    let mut tasks = tokio::task::JoinSet::new();
    for (i, g) in range.clone().enumerate() {
        let due = ramp_started + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let permit = slots.clone().acquire_owned().await?;
        let (tx, rx) = mpsc::unbounded_channel();
        senders.push(tx);
        let conn = Conn {
            index: g,
            room: room_names[room_of(g, rooms)].clone(),
            target: targets[server_of(g, rooms, targets.len())].clone(),
            source: target::source_ip(g, args.source_ips),
        };
        tasks.spawn(client::run(conn, shared.clone(), rx, stop.clone(), permit));
    }
    // Every attempt ends in a connection or an error; tasks that end early are
    // the failures, so wait on the counters.
    let settle_deadline = Instant::now() + Duration::from_secs(args.handshake_timeout_secs + 5);
    while stats.established.load(Relaxed) + stats.connect_errors.load(Relaxed) < range.len() as u64
        && Instant::now() < settle_deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ramp_seconds = ramp_started.elapsed().as_secs_f64();
    let peak_open = stats.open.load(Relaxed);
    if args.settle_secs > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(args.settle_secs)).await;
    }
    barrier.wait("ramped").await?;

    // Hold: AI questions at once, chat lines at the target rate (open loop).
    let hold_started = Instant::now();
    let hold_started_us = client::now_us();
    let asks = args.ai_queries.min(total);
    for g in 0..asks {
        if range.contains(&g) {
            let _ = senders[g - range.start].send(Cmd::Ask);
        }
    }
    let mut sent_per_room = vec![0u64; rooms];
    let msg_rate = share(args.rate);
    let hold = Duration::from_secs_f64(args.hold_secs);
    if msg_rate > 0.0 && !senders.is_empty() {
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut scheduled: u64 = 0;
        let mut next_sender = 0usize;
        while hold_started.elapsed() < hold {
            tick.tick().await;
            // Never more than the hold's worth, even when a tick comes late.
            let elapsed = hold_started.elapsed().min(hold);
            let due = (elapsed.as_secs_f64() * msg_rate) as u64;
            while scheduled < due {
                scheduled += 1;
                // Round robin over this worker's connections: consecutive
                // connections are in different rooms.
                let i = next_sender % senders.len();
                next_sender += 1;
                if senders[i].send(Cmd::Message).is_ok() {
                    sent_per_room[room_of(range.start + i, rooms)] += 1;
                }
            }
        }
    } else {
        tokio::time::sleep_until((hold_started + hold).into()).await;
    }
    // Let the answers finish and the last lines arrive (bounded).
    let drain_deadline = Instant::now() + Duration::from_secs_f64(args.drain_secs);
    let mut last = (u64::MAX, Instant::now());
    while Instant::now() < drain_deadline {
        let answers_pending = stats.ai_done.load(Relaxed) < stats.ai_acked.load(Relaxed)
            || stats.ai_acked.load(Relaxed) + stats.ack_errors.load(Relaxed)
                < stats.ai_asked.load(Relaxed);
        let acks_pending =
            stats.acked.load(Relaxed) + stats.ack_errors.load(Relaxed) < stats.sent.load(Relaxed);
        let delivered = stats.delivered.load(Relaxed);
        if delivered != last.0 {
            last = (delivered, Instant::now());
        }
        let quiet = last.1.elapsed() > Duration::from_millis(300);
        if !answers_pending && !acks_pending && quiet {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hold_seconds = hold_started.elapsed().as_secs_f64();
    barrier.wait("held").await?;

    // Stop: close every connection.
    let stop_started = Instant::now();
    stop.cancel();
    drop(senders);
    let _ = tokio::time::timeout(Duration::from_secs(15), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    let stop_seconds = stop_started.elapsed().as_secs_f64();

    // Planned members: with no connect errors, every one of them joined.
    let mut members_per_room = vec![0u64; rooms];
    for g in range.clone() {
        members_per_room[room_of(g, rooms)] += 1;
    }
    let first_errors = shared.errors.lock().unwrap().clone();
    Ok(WorkerResult {
        attempted: stats.attempted.load(Relaxed),
        established: stats.established.load(Relaxed),
        peak_open,
        connect_errors: stats.connect_errors.load(Relaxed),
        protocol_errors: stats.protocol_errors.load(Relaxed),
        ack_errors: stats.ack_errors.load(Relaxed),
        ack_timeouts: stats.ack_timeouts.load(Relaxed),
        unexpected_disconnects: stats.unexpected_disconnects.load(Relaxed),
        sent: stats.sent.load(Relaxed),
        acked: stats.acked.load(Relaxed),
        delivered: stats.delivered.load(Relaxed),
        sent_per_room,
        members_per_room,
        ai_asked: stats.ai_asked.load(Relaxed),
        ai_acked: stats.ai_acked.load(Relaxed),
        ai_done: stats.ai_done.load(Relaxed),
        ai_chunks: stats.ai_chunks.load(Relaxed),
        ai_streams_seen_done: stats.ai_streams_seen_done.load(Relaxed),
        ramp_seconds,
        hold_seconds,
        delivery_seconds: stats
            .last_delivery_us
            .load(Relaxed)
            .saturating_sub(hold_started_us) as f64
            / 1e6,
        stop_seconds,
        connect_latency: stats.connect_latency.export(),
        message_latency: stats.message_latency.export(),
        ack_latency: stats.ack_latency.export(),
        chunk_gap: stats.chunk_gap.export(),
        first_errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_cover_everything_once() {
        let total = 1001;
        let mut seen = vec![0; total];
        for index in 0..3 {
            for g in (Slice { index, count: 3 }).range(total) {
                seen[g] += 1;
            }
        }
        assert!(seen.iter().all(|&n| n == 1));
    }

    #[test]
    fn room_members_are_spread_over_servers() {
        let rooms = 30;
        let servers: std::collections::BTreeSet<_> = (0..300)
            .filter(|&g| room_of(g, rooms) == 7)
            .map(|g| server_of(g, rooms, 3))
            .collect();
        assert_eq!(servers.len(), 3);
    }
}
