//! Abuse limits: token buckets for events per socket and per user and for
//! new connections per source address. A refused event is answered with
//! `rate_limited` and `retryAfterMs`; a socket that keeps sending past its
//! limit is disconnected. Buckets are per server process; concurrent AI answers
//! are counted over every server (`ai::slots`).

use std::{collections::HashMap, hash::Hash, net::IpAddr, sync::Mutex, time::Duration};

use tokio::time::Instant;

use crate::protocol::{ChatError, ErrorCode};

/// A socket is cut off after `flood_disconnect_after` refusals at once, or
/// more than that many per this many seconds.
const FLOOD_WINDOW_SECS: f64 = 10.0;

/// Maps with more entries than this drop their idle entries on insert.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitsConfig {
    /// Events per second per socket (0: no limit) and the burst above it.
    pub events_per_sec: u32,
    pub events_burst: u32,
    /// Events per second per authenticated user, over all their sockets (0: no limit).
    pub user_events_per_sec: u32,
    /// Refusals (at once, or per 10 seconds) after which a socket is disconnected (0: never).
    pub flood_disconnect_after: u32,
    /// New connections per minute per source address (0: no limit).
    pub connections_per_minute_per_ip: u32,
    pub max_ai_answers_per_user: u32,
    pub max_ai_answers_per_room: u32,
    pub max_rooms_per_socket: usize,
}

/// A token bucket: `rate` tokens per second, at most `burst` saved up.
#[derive(Debug, Clone)]
pub struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl Bucket {
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        let burst = burst.max(1.0);
        Self {
            tokens: burst,
            rate,
            burst,
            last: now,
        }
    }

    /// Takes one token, or says how long until one is there.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / self.rate;
            Err(Duration::from_secs_f64(wait.min(3600.0)))
        }
    }

    /// Full again by `now`: forgetting it changes nothing.
    fn idle(&self, now: Instant) -> bool {
        self.tokens + now.saturating_duration_since(self.last).as_secs_f64() * self.rate
            >= self.burst
    }
}

/// Buckets by key, created full on first use.
#[derive(Debug)]
struct Buckets<K> {
    rate: f64,
    burst: f64,
    map: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            map: Mutex::default(),
        }
    }

    fn take(&self, key: &K, now: Instant) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > PRUNE_ABOVE && !map.contains_key(key) {
            map.retain(|_, bucket| !bucket.idle(now));
        }
        map.entry(key.clone())
            .or_insert_with(|| Bucket::new(self.rate, self.burst, now))
            .take(now)
    }
}

/// The limits one server enforces, shared by every socket.
#[derive(Debug)]
pub struct Limits {
    pub config: LimitsConfig,
    users: Buckets<String>,
    connections: Buckets<IpAddr>,
}

pub fn rate_limited(what: &str, retry_after: Duration) -> ChatError {
    let ms = retry_after.as_millis().clamp(1, u64::MAX as u128) as u64;
    let mut error = ChatError::new(
        ErrorCode::RateLimited,
        format!("{what}; retry after {ms} ms"),
    );
    error.retry_after_ms = Some(ms);
    error
}

impl Limits {
    pub fn new(config: LimitsConfig) -> Self {
        let user_rate = f64::from(config.user_events_per_sec);
        let per_minute = f64::from(config.connections_per_minute_per_ip);
        Self {
            users: Buckets::new(user_rate, user_rate * 2.0),
            connections: Buckets::new(per_minute / 60.0, per_minute),
            config,
        }
    }

    /// A fresh per-socket event bucket, or `None` without a per-socket limit.
    pub fn socket_bucket(&self, now: Instant) -> Option<Bucket> {
        (self.config.events_per_sec > 0).then(|| {
            Bucket::new(
                f64::from(self.config.events_per_sec),
                f64::from(self.config.events_burst.max(self.config.events_per_sec)),
                now,
            )
        })
    }

    /// A fresh per-socket refusal budget, or `None` when floods are never cut off.
    pub fn strike_bucket(&self, now: Instant) -> Option<Bucket> {
        let after = f64::from(self.config.flood_disconnect_after);
        (after > 0.0).then(|| Bucket::new(after / FLOOD_WINDOW_SECS, after, now))
    }

    /// One event of an authenticated user.
    pub fn user_event(&self, user: &str, now: Instant) -> Result<(), ChatError> {
        self.users
            .take(&user.to_owned(), now)
            .map_err(|wait| rate_limited("too many events from this user", wait))
    }

    /// One new connection from `ip`.
    pub fn connection(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        self.connections.take(&ip, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LimitsConfig {
        LimitsConfig {
            events_per_sec: 10,
            events_burst: 20,
            user_events_per_sec: 5,
            flood_disconnect_after: 3,
            connections_per_minute_per_ip: 2,
            max_ai_answers_per_user: 2,
            max_ai_answers_per_room: 3,
            max_rooms_per_socket: 32,
        }
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let start = Instant::now();
        let mut bucket = Bucket::new(10.0, 20.0, start);
        for _ in 0..20 {
            assert!(bucket.take(start).is_ok());
        }
        let wait = bucket.take(start).unwrap_err();
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100));
        assert!(bucket.take(start + Duration::from_millis(100)).is_ok());
        assert!(bucket.take(start + Duration::from_millis(100)).is_err());
        // Never more than the burst, however long it rested.
        let later = start + Duration::from_secs(3600);
        for _ in 0..20 {
            assert!(bucket.take(later).is_ok());
        }
        assert!(bucket.take(later).is_err());
    }

    #[test]
    fn users_and_addresses_have_their_own_buckets() {
        let limits = Limits::new(config());
        let now = Instant::now();
        for _ in 0..10 {
            assert!(limits.user_event("ann", now).is_ok());
        }
        let refused = limits.user_event("ann", now).unwrap_err();
        assert_eq!(refused.code, ErrorCode::RateLimited);
        assert!(refused.retry_after_ms.unwrap() > 0);
        assert!(limits.user_event("bob", now).is_ok());

        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert!(limits.connection(a, now).is_ok());
        assert!(limits.connection(a, now).is_ok());
        let wait = limits.connection(a, now).unwrap_err();
        assert!(wait > Duration::from_secs(29) && wait <= Duration::from_secs(30));
        assert!(limits.connection(b, now).is_ok());
    }

    #[test]
    fn zero_means_no_limit() {
        let limits = Limits::new(LimitsConfig {
            user_events_per_sec: 0,
            connections_per_minute_per_ip: 0,
            events_per_sec: 0,
            ..config()
        });
        let now = Instant::now();
        for _ in 0..10_000 {
            assert!(limits.user_event("ann", now).is_ok());
            assert!(limits.connection("10.0.0.1".parse().unwrap(), now).is_ok());
        }
        assert!(limits.socket_bucket(now).is_none());
    }

    #[test]
    fn idle_buckets_are_forgotten_when_the_map_is_large() {
        let buckets = Buckets::<u32>::new(1.0, 1.0);
        let now = Instant::now();
        for key in 0..=PRUNE_ABOVE as u32 {
            buckets.take(&key, now).unwrap();
        }
        let later = now + Duration::from_secs(2);
        buckets.take(&u32::MAX, later).unwrap();
        assert_eq!(buckets.map.lock().unwrap().len(), 1);
    }
}
