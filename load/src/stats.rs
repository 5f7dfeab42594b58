//! What one worker counts while it runs: atomic counters, HDR histograms of
//! latencies, and their mergeable form that workers hand to the parent.

use std::sync::{
    Mutex,
    atomic::{AtomicU64, Ordering::Relaxed},
};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latencies are recorded in microseconds, up to one hour.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// A histogram that many connection tasks record into.
pub struct SharedHistogram(Mutex<Histogram<u64>>);

impl Default for SharedHistogram {
    fn default() -> Self {
        Self(Mutex::new(histogram()))
    }
}

impl SharedHistogram {
    pub fn record_us(&self, us: u64) {
        let mut h = self.0.lock().unwrap();
        h.saturating_record(us.max(1));
    }

    pub fn export(&self) -> Buckets {
        Buckets::from(&*self.0.lock().unwrap())
    }
}

/// A histogram as (value, count) pairs: merges across processes without loss.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Buckets(pub Vec<(u64, u64)>);

impl From<&Histogram<u64>> for Buckets {
    fn from(h: &Histogram<u64>) -> Self {
        Buckets(
            h.iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
        )
    }
}

impl Buckets {
    pub fn to_histogram(&self) -> Histogram<u64> {
        let mut h = histogram();
        for &(value, count) in &self.0 {
            h.saturating_record_n(value.max(1), count);
        }
        h
    }
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }
}

/// Live counters of one worker.
#[derive(Default)]
pub struct Stats {
    pub attempted: AtomicU64,
    pub established: AtomicU64,
    pub open: AtomicU64,
    pub connect_errors: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub ack_errors: AtomicU64,
    pub ack_timeouts: AtomicU64,
    pub unexpected_disconnects: AtomicU64,
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub delivered: AtomicU64,
    /// Microseconds since the Unix epoch of the latest delivery.
    pub last_delivery_us: AtomicU64,
    pub ai_asked: AtomicU64,
    pub ai_acked: AtomicU64,
    pub ai_done: AtomicU64,
    pub ai_chunks: AtomicU64,
    pub ai_streams_seen_done: AtomicU64,
    pub connect_latency: SharedHistogram,
    pub message_latency: SharedHistogram,
    pub ack_latency: SharedHistogram,
    pub chunk_gap: SharedHistogram,
}

/// A moment's counts, for the progress bar.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Progress {
    pub attempted: u64,
    pub open: u64,
    pub errors: u64,
    pub sent: u64,
    pub delivered: u64,
    pub ai_chunks: u64,
    pub ai_done: u64,
}

impl std::ops::AddAssign for Progress {
    fn add_assign(&mut self, o: Self) {
        self.attempted += o.attempted;
        self.open += o.open;
        self.errors += o.errors;
        self.sent += o.sent;
        self.delivered += o.delivered;
        self.ai_chunks += o.ai_chunks;
        self.ai_done += o.ai_done;
    }
}

impl Stats {
    pub fn errors(&self) -> u64 {
        self.connect_errors.load(Relaxed)
            + self.protocol_errors.load(Relaxed)
            + self.ack_errors.load(Relaxed)
            + self.ack_timeouts.load(Relaxed)
            + self.unexpected_disconnects.load(Relaxed)
    }

    pub fn progress(&self) -> Progress {
        Progress {
            attempted: self.attempted.load(Relaxed),
            open: self.open.load(Relaxed),
            errors: self.errors(),
            sent: self.sent.load(Relaxed),
            delivered: self.delivered.load(Relaxed),
            ai_chunks: self.ai_chunks.load(Relaxed),
            ai_done: self.ai_done.load(Relaxed),
        }
    }
}

/// Everything one worker measured, in a form that adds up across workers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerResult {
    pub attempted: u64,
    pub established: u64,
    pub peak_open: u64,
    pub connect_errors: u64,
    pub protocol_errors: u64,
    pub ack_errors: u64,
    pub ack_timeouts: u64,
    pub unexpected_disconnects: u64,
    pub sent: u64,
    pub acked: u64,
    pub delivered: u64,
    /// Deliveries the sends should have produced on this worker's
    /// connections is not known locally; these two let the parent compute it.
    pub sent_per_room: Vec<u64>,
    pub members_per_room: Vec<u64>,
    pub ai_asked: u64,
    pub ai_acked: u64,
    pub ai_done: u64,
    pub ai_chunks: u64,
    pub ai_streams_seen_done: u64,
    pub ramp_seconds: f64,
    pub hold_seconds: f64,
    /// From the start of the hold to the last delivery.
    pub delivery_seconds: f64,
    pub stop_seconds: f64,
    pub connect_latency: Buckets,
    pub message_latency: Buckets,
    pub ack_latency: Buckets,
    pub chunk_gap: Buckets,
    /// Free-form first error messages, for the summary (at most a few).
    pub first_errors: Vec<String>,
}

impl WorkerResult {
    pub fn merge(&mut self, o: WorkerResult) {
        self.attempted += o.attempted;
        self.established += o.established;
        self.peak_open += o.peak_open;
        self.connect_errors += o.connect_errors;
        self.protocol_errors += o.protocol_errors;
        self.ack_errors += o.ack_errors;
        self.ack_timeouts += o.ack_timeouts;
        self.unexpected_disconnects += o.unexpected_disconnects;
        self.sent += o.sent;
        self.acked += o.acked;
        self.delivered += o.delivered;
        add_vec(&mut self.sent_per_room, &o.sent_per_room);
        add_vec(&mut self.members_per_room, &o.members_per_room);
        self.ai_asked += o.ai_asked;
        self.ai_acked += o.ai_acked;
        self.ai_done += o.ai_done;
        self.ai_chunks += o.ai_chunks;
        self.ai_streams_seen_done += o.ai_streams_seen_done;
        self.ramp_seconds = self.ramp_seconds.max(o.ramp_seconds);
        self.hold_seconds = self.hold_seconds.max(o.hold_seconds);
        self.delivery_seconds = self.delivery_seconds.max(o.delivery_seconds);
        self.stop_seconds = self.stop_seconds.max(o.stop_seconds);
        for (mine, theirs) in [
            (&mut self.connect_latency, o.connect_latency),
            (&mut self.message_latency, o.message_latency),
            (&mut self.ack_latency, o.ack_latency),
            (&mut self.chunk_gap, o.chunk_gap),
        ] {
            mine.0.extend(theirs.0);
        }
        for e in o.first_errors {
            if self.first_errors.len() < 5 {
                self.first_errors.push(e);
            }
        }
    }
}

fn add_vec(into: &mut Vec<u64>, from: &[u64]) {
    if into.len() < from.len() {
        into.resize(from.len(), 0);
    }
    for (a, b) in into.iter_mut().zip(from) {
        *a += b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_merge_without_loss() {
        let a = SharedHistogram::default();
        let b = SharedHistogram::default();
        for us in [1_000, 2_000, 3_000] {
            a.record_us(us);
        }
        b.record_us(100_000);
        let mut wa = WorkerResult {
            message_latency: a.export(),
            sent_per_room: vec![1, 2],
            ..Default::default()
        };
        let wb = WorkerResult {
            message_latency: b.export(),
            sent_per_room: vec![1, 1, 5],
            ..Default::default()
        };
        wa.merge(wb);
        let h = wa.message_latency.to_histogram();
        assert_eq!(h.len(), 4);
        let l = Latency::of(&h);
        assert!((l.p50_ms - 2.0).abs() < 0.01, "{l:?}");
        assert!((l.max_ms - 100.0).abs() < 0.1, "{l:?}");
        assert_eq!(wa.sent_per_room, vec![2, 3, 5]);
    }
}
