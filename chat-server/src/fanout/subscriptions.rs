//! Per-room channels: a server listens on a room's channel while it has at
//! least one member of the room, and stops when the last one leaves.
//!
//! The one rule that keeps events from being lost at the moment a server
//! starts listening: a join waits until the room's channel is subscribed
//! (Redis has answered the SUBSCRIBE) before the room's state is read for
//! its answer. Redis runs commands one at a time, and the append script
//! publishes in the same step that gives out the `roomSeq`, so every event
//! with a `roomSeq` above the one the join read was published after the
//! subscription took effect and reaches this server. Events at or below it
//! are the past, which a client asks for with `resume` (the room log).
//!
//! Members are counted by socket id, so a socket that leaves twice (a
//! `leave`, then its disconnect) is one departure; the rooms of each socket
//! are kept here too, so that a disconnect needs nothing from socketioxide. Subscribing and
//! unsubscribing one room's channel are serialised by a lock of its own: a
//! join that races with the last member's departure waits for the
//! unsubscribe and subscribes again.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use socketioxide::socket::Sid;

use super::Fanout;
use crate::admin::metrics::Metrics;

/// Starting and stopping to listen on a channel (the Redis driver; a
/// recording fake in tests).
#[async_trait]
pub trait Listen: Send + Sync + 'static {
    /// Resolves once Redis has confirmed the subscription.
    async fn listen(&self, channel: &str) -> Result<(), redis::RedisError>;
    async fn unlisten(&self, channel: &str) -> Result<(), redis::RedisError>;
}

/// Which rooms' channels this server listens on, from who is a member of
/// which room here. Does nothing without per-room channels.
pub struct RoomSubscriptions {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    listener: Arc<dyn Listen>,
    fanout: Fanout,
    metrics: Arc<Metrics>,
    members: Mutex<Members>,
}

/// Who is in which room here, both ways.
#[derive(Default)]
struct Members {
    rooms: HashMap<String, Room>,
    of_socket: HashMap<Sid, Vec<String>>,
}

/// A room with members on this server.
struct Room {
    members: HashSet<Sid>,
    /// Whether its channel is subscribed; held while (un)subscribing.
    subscribed: Arc<tokio::sync::Mutex<bool>>,
}

impl RoomSubscriptions {
    /// No per-room channels: the memory store, or the shared channel.
    pub fn none() -> Self {
        Self { inner: None }
    }

    pub fn new(listener: Arc<dyn Listen>, fanout: Fanout, metrics: Arc<Metrics>) -> Self {
        Self {
            inner: Some(Arc::new(Inner {
                listener,
                fanout,
                metrics,
                members: Mutex::default(),
            })),
        }
    }

    /// Socket `sid` became a member of `room`. It counts from this call on;
    /// the future resolves once the room's channel is subscribed. If it
    /// fails, the caller takes the socket out of the room and calls
    /// [`RoomSubscriptions::left`].
    pub fn joined(
        &self,
        room: &str,
        sid: Sid,
    ) -> impl Future<Output = Result<(), redis::RedisError>> + Send + 'static {
        let subscribing = self.inner.clone().map(|inner| {
            let subscribed = {
                let mut guard = inner.lock();
                let Members { rooms, of_socket } = &mut *guard;
                let entry = rooms.entry(room.to_owned()).or_insert_with(|| Room {
                    members: HashSet::new(),
                    subscribed: Arc::default(),
                });
                if entry.members.insert(sid) {
                    of_socket.entry(sid).or_default().push(room.to_owned());
                }
                entry.subscribed.clone()
            };
            (inner, room.to_owned(), subscribed)
        });
        async move {
            let Some((inner, room, subscribed)) = subscribing else {
                return Ok(());
            };
            let mut subscribed = subscribed.lock().await;
            if !*subscribed {
                tracing::debug!(%room, "subscribing to the room's channel");
                inner.listener.listen(&inner.fanout.channel(&room)).await?;
                *subscribed = true;
                inner.metrics.room_channels.inc();
            }
            Ok(())
        }
    }

    /// Socket `sid` is no longer a member of `room` (it left, failed to
    /// join, or disconnected). The last member's departure unsubscribes the
    /// room's channel, in the background. Calling it again, or for a room
    /// the socket never joined, does nothing.
    pub fn left(&self, room: &str, sid: Sid) {
        let Some(inner) = &self.inner else { return };
        let mut members = inner.lock();
        if let Some(rooms) = members.of_socket.get_mut(&sid) {
            rooms.retain(|r| r != room);
            if rooms.is_empty() {
                members.of_socket.remove(&sid);
            }
        }
        inner.leave(&mut members, room, sid);
    }

    /// Socket `sid` disconnected: it left every room it was in here.
    pub fn disconnected(&self, sid: Sid) {
        let Some(inner) = &self.inner else { return };
        let mut members = inner.lock();
        for room in members.of_socket.remove(&sid).unwrap_or_default() {
            inner.leave(&mut members, &room, sid);
        }
    }

    /// How many rooms have members here (their channels are subscribed, or
    /// about to be, or being unsubscribed).
    #[cfg(test)]
    fn rooms_with_members(&self) -> usize {
        self.inner
            .as_ref()
            .map_or(0, |inner| inner.lock().rooms.len())
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Members> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `sid` out of `room`'s members; the last one out starts the
    /// unsubscribe.
    fn leave(self: &Arc<Self>, members: &mut Members, room: &str, sid: Sid) {
        let Some(entry) = members.rooms.get_mut(room) else {
            return;
        };
        if !entry.members.remove(&sid) || !entry.members.is_empty() {
            return;
        }
        let subscribed = entry.subscribed.clone();
        tokio::spawn(self.clone().release(room.to_owned(), subscribed));
    }

    /// Unsubscribes `room`'s channel unless a member came back meanwhile,
    /// then forgets the room if it is still empty.
    async fn release(self: Arc<Self>, room: String, subscribed: Arc<tokio::sync::Mutex<bool>>) {
        let mut is_subscribed = subscribed.lock().await;
        let empty = |members: &Members| {
            members
                .rooms
                .get(&room)
                .is_none_or(|entry| entry.members.is_empty())
        };
        if !empty(&self.lock()) {
            return;
        }
        if *is_subscribed {
            tracing::debug!(%room, "unsubscribing from the room's channel");
            if let Err(error) = self.listener.unlisten(&self.fanout.channel(&room)).await {
                tracing::warn!(%error, %room, "unsubscribing a room channel failed");
            }
            *is_subscribed = false;
            self.metrics.room_channels.dec();
        }
        let mut members = self.lock();
        if empty(&members)
            && members
                .rooms
                .get(&room)
                .is_some_and(|entry| Arc::ptr_eq(&entry.subscribed, &subscribed))
        {
            members.rooms.remove(&room);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RoomChannels;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;
    use tokio::sync::Semaphore;

    /// Records what was asked of Redis; `listen` waits for a permit of
    /// `subscribe_gate`, `unlisten` (once recorded) for one of `unsubscribe_gate`.
    struct Recorder {
        calls: Mutex<Vec<String>>,
        subscribe_gate: Semaphore,
        unsubscribe_gate: Semaphore,
        fail: AtomicBool,
    }

    impl Recorder {
        /// Redis answers nothing until a test adds permits.
        fn closed() -> Arc<Self> {
            Arc::new(Self {
                calls: Mutex::default(),
                subscribe_gate: Semaphore::new(0),
                unsubscribe_gate: Semaphore::new(0),
                fail: AtomicBool::new(false),
            })
        }

        fn open() -> Arc<Self> {
            let recorder = Self::closed();
            recorder.subscribe_gate.add_permits(1000);
            recorder.unsubscribe_gate.add_permits(1000);
            recorder
        }

        fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl Listen for Recorder {
        async fn listen(&self, channel: &str) -> Result<(), redis::RedisError> {
            self.subscribe_gate.acquire().await.unwrap().forget();
            if self.fail.load(Ordering::SeqCst) {
                return Err(redis::RedisError::from((redis::ErrorKind::Io, "down")));
            }
            self.calls.lock().unwrap().push(format!("+{channel}"));
            Ok(())
        }
        async fn unlisten(&self, channel: &str) -> Result<(), redis::RedisError> {
            self.calls.lock().unwrap().push(format!("-{channel}"));
            self.unsubscribe_gate.acquire().await.unwrap().forget();
            Ok(())
        }
    }

    fn subscriptions(recorder: &Arc<Recorder>) -> (RoomSubscriptions, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new());
        let fanout = Fanout::new("p", RoomChannels::PerRoom, false).unwrap();
        let subs = RoomSubscriptions::new(recorder.clone(), fanout, metrics.clone());
        (subs, metrics)
    }

    /// Until `done` holds (background unsubscribes run as tasks).
    async fn until(what: &str, done: impl Fn() -> bool) {
        let wait = async {
            while !done() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
    }

    /// Lets every task that can run, run (the test runtime has one thread).
    async fn run_ready_tasks() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn the_first_member_subscribes_and_the_last_one_unsubscribes() {
        let recorder = Recorder::open();
        let (subs, metrics) = subscriptions(&recorder);
        let (a, b) = (Sid::new(), Sid::new());
        subs.joined("r", a).await.unwrap();
        subs.joined("r", b).await.unwrap();
        assert_eq!(recorder.calls(), ["+p:{r}:events"]);
        assert_eq!(metrics.room_channels.get(), 1);
        subs.left("r", a);
        subs.left("r", a);
        run_ready_tasks().await;
        assert_eq!(recorder.calls(), ["+p:{r}:events"], "b is still a member");
        subs.left("r", b);
        until("the room to be forgotten", || {
            subs.rooms_with_members() == 0
        })
        .await;
        assert_eq!(recorder.calls(), ["+p:{r}:events", "-p:{r}:events"]);
        assert_eq!(metrics.room_channels.get(), 0);
    }

    #[tokio::test]
    async fn joins_wait_for_the_subscription_and_subscribe_once() {
        let recorder = Recorder::closed();
        let (subs, _) = subscriptions(&recorder);
        let first = tokio::spawn(subs.joined("r", Sid::new()));
        let second = tokio::spawn(subs.joined("r", Sid::new()));
        run_ready_tasks().await;
        assert!(
            !first.is_finished() && !second.is_finished(),
            "no join may finish before Redis confirms the subscription"
        );
        recorder.subscribe_gate.add_permits(1);
        first.await.unwrap().unwrap();
        second.await.unwrap().unwrap();
        assert_eq!(recorder.calls(), ["+p:{r}:events"]);
    }

    #[tokio::test]
    async fn a_join_during_the_last_departure_s_unsubscribe_subscribes_again() {
        let recorder = Recorder::closed();
        recorder.subscribe_gate.add_permits(1000);
        let (subs, metrics) = subscriptions(&recorder);
        let (a, b) = (Sid::new(), Sid::new());
        subs.joined("r", a).await.unwrap();
        subs.left("r", a);
        until("the unsubscribe to start", || recorder.calls().len() == 2).await;
        let join = tokio::spawn(subs.joined("r", b));
        run_ready_tasks().await;
        assert!(!join.is_finished(), "the join waits for the unsubscribe");
        recorder.unsubscribe_gate.add_permits(1);
        join.await.unwrap().unwrap();
        assert_eq!(
            recorder.calls(),
            ["+p:{r}:events", "-p:{r}:events", "+p:{r}:events"]
        );
        assert_eq!(subs.rooms_with_members(), 1);
        assert_eq!(metrics.room_channels.get(), 1);
    }

    #[tokio::test]
    async fn a_join_before_the_unsubscribe_runs_keeps_the_subscription() {
        let recorder = Recorder::open();
        let (subs, _) = subscriptions(&recorder);
        let (a, b) = (Sid::new(), Sid::new());
        subs.joined("r", a).await.unwrap();
        subs.left("r", a);
        subs.joined("r", b).await.unwrap();
        run_ready_tasks().await;
        assert_eq!(recorder.calls(), ["+p:{r}:events"]);
        assert_eq!(subs.rooms_with_members(), 1);
    }

    #[tokio::test]
    async fn rooms_are_apart_and_a_failed_subscription_is_undone_by_left() {
        let recorder = Recorder::open();
        let (subs, metrics) = subscriptions(&recorder);
        let a = Sid::new();
        subs.joined("one", a).await.unwrap();
        subs.joined("two", a).await.unwrap();
        assert_eq!(recorder.calls(), ["+p:{one}:events", "+p:{two}:events"]);
        recorder.fail.store(true, Ordering::SeqCst);
        assert!(subs.joined("three", a).await.is_err());
        subs.left("three", a);
        until("the failed room to be forgotten", || {
            subs.rooms_with_members() == 2
        })
        .await;
        assert_eq!(metrics.room_channels.get(), 2);
        assert_eq!(recorder.calls().len(), 2, "nothing to unsubscribe");
    }

    #[tokio::test]
    async fn a_disconnect_leaves_every_room_of_the_socket_and_only_those() {
        let recorder = Recorder::open();
        let (subs, metrics) = subscriptions(&recorder);
        let (a, b) = (Sid::new(), Sid::new());
        for room in ["one", "two", "three"] {
            subs.joined(room, a).await.unwrap();
        }
        subs.joined("three", b).await.unwrap();
        subs.left("one", a);
        subs.disconnected(a);
        subs.disconnected(a);
        until("two rooms to be forgotten", || {
            subs.rooms_with_members() == 1
        })
        .await;
        let mut calls = recorder.calls();
        calls.sort();
        assert_eq!(
            calls,
            [
                "+p:{one}:events",
                "+p:{three}:events",
                "+p:{two}:events",
                "-p:{one}:events",
                "-p:{two}:events"
            ]
        );
        assert_eq!(metrics.room_channels.get(), 1, "b keeps three");
        subs.disconnected(b);
        until("every room to be forgotten", || {
            subs.rooms_with_members() == 0
        })
        .await;
        assert_eq!(metrics.room_channels.get(), 0);
    }

    #[tokio::test]
    async fn without_per_room_channels_nothing_is_asked() {
        let subs = RoomSubscriptions::none();
        subs.joined("r", Sid::new()).await.unwrap();
        subs.left("r", Sid::new());
        subs.disconnected(Sid::new());
        assert_eq!(subs.rooms_with_members(), 0);
    }
}
