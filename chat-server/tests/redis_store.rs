//! The Redis room store against a real redis-server: atomic sequencing under
//! concurrency, replay and its "too old" rule, bounded history, prefixes, and
//! running AI answers counted over every server.

use std::sync::Arc;

use chat_server::{
    adapter::RedisConnection,
    answers::{Answer, AnswerLedger, Busy, Caps, RedisLedger},
    config::RoomChannels,
    fanout::{self, Fanout},
    protocol::{AiChunk, ChatMessage, MessageKind, RoomEvent},
    store::{RedisStore, ReplayError, Role, RoomStore, StoreError, Turn},
};
use chatscale_tests::RedisServer;

async fn connection(redis: &RedisServer) -> RedisConnection {
    RedisConnection::connect(&format!("{}?protocol=resp3", redis.url), false, |_| {
        Ok::<(), ()>(())
    })
    .await
    .unwrap()
}

async fn store(redis: &RedisServer, prefix: &str, log_len: usize, turns: usize) -> RedisStore {
    RedisStore::new(connection(redis).await, prefix, log_len, turns, None)
}

fn line(room: &str, text: &str) -> RoomEvent {
    RoomEvent::Message(ChatMessage {
        room: room.into(),
        room_seq: None,
        id: text.into(),
        from: "tester".into(),
        text: text.into(),
        ts: 1,
        kind: MessageKind::Chat,
        client_id: None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_get_contiguous_unique_seqs_and_replay_in_order() {
    let redis = RedisServer::start().await.unwrap();
    let store = Arc::new(store(&redis, "t", 1000, 10).await);
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.append(line("r", &i.to_string())).await.unwrap() })
        })
        .collect();
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.push(task.await.unwrap().room_seq().unwrap());
    }
    seqs.sort();
    assert_eq!(seqs, (1..=300).collect::<Vec<_>>());
    assert_eq!(store.last_seq("r").await.unwrap(), 300);

    let replayed = store.events_after("r", 250).await.unwrap();
    let order: Vec<u64> = replayed.iter().map(|e| e.room_seq().unwrap()).collect();
    assert_eq!(order, (251..=300).collect::<Vec<_>>());
    assert!(store.events_after("r", 300).await.unwrap().is_empty());
    assert!(store.events_after("new-room", 0).await.unwrap().is_empty());
    redis.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trimmed_log_answers_too_old_with_the_oldest_seq() {
    let redis = RedisServer::start().await.unwrap();
    let store = store(&redis, "t", 10, 3).await;
    for i in 0..500 {
        store.append(line("busy", &i.to_string())).await.unwrap();
    }
    let oldest = match store.events_after("busy", 0).await {
        Err(ReplayError::TooOld { oldest }) => oldest,
        other => panic!("expected TooOld, got {other:?}"),
    };
    // MAXLEN ~ trims whole stream nodes: at least 10 kept, far fewer than 500.
    assert!((2..=491).contains(&oldest), "oldest {oldest}");
    let rest = store.events_after("busy", oldest - 1).await.unwrap();
    assert_eq!(rest.len() as u64, 500 - oldest + 1);
    assert_eq!(rest[0].room_seq(), Some(oldest));

    for i in 0..5 {
        let turn = Turn {
            role: Role::User,
            text: i.to_string(),
        };
        store.push_turn("busy", turn).await.unwrap();
    }
    let turns: Vec<String> = store
        .recent_turns("busy")
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.text)
        .collect();
    assert_eq!(turns, ["2", "3", "4"]);
    redis.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_keep_clusters_apart() {
    let redis = RedisServer::start().await.unwrap();
    let blue = store(&redis, "blue", 100, 3).await;
    let green = store(&redis, "green", 100, 3).await;
    blue.append(line("room", "b1")).await.unwrap();
    blue.append(line("room", "b2")).await.unwrap();
    assert_eq!(
        green.append(line("room", "g1")).await.unwrap().room_seq(),
        Some(1)
    );
    assert_eq!(green.events_after("room", 0).await.unwrap().len(), 1);
    assert_eq!(blue.last_seq("room").await.unwrap(), 2);
    redis.stop().await.unwrap();
}

/// A subscriber to `channel` (keep the connection) and what it receives, in order.
async fn listen(
    redis: &RedisServer,
    channel: &str,
) -> (
    RedisConnection,
    tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let push = move |info: redis::PushInfo| {
        if info.kind == redis::PushKind::Message
            && let Some(redis::Value::BulkString(payload)) = info.data.into_iter().nth(1)
        {
            let _ = tx.send(payload);
        }
        Ok::<(), ()>(())
    };
    let mut conn = RedisConnection::connect(&format!("{}?protocol=resp3", redis.url), false, push)
        .await
        .unwrap();
    conn.subscribe(channel).await.unwrap();
    (conn, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fanning_out_append_publishes_each_event_with_its_room_seq_in_the_same_call() {
    let redis = RedisServer::start().await.unwrap();
    for (prefix, channels) in [("f", RoomChannels::PerRoom), ("g", RoomChannels::Shared)] {
        let fanout = Fanout::new(prefix, channels, false).unwrap();
        let (_subscriber, mut published) = listen(&redis, &fanout.channel("r")).await;
        let quiet = store(&redis, prefix, 100, 3).await;
        let loud = RedisStore::new(
            connection(&redis).await,
            prefix,
            100,
            3,
            Some(fanout.clone()),
        );
        assert!(loud.fans_out() && !quiet.fans_out());

        // Without a fan-out the append publishes nothing: the first message on
        // the channel is the second append's.
        assert_eq!(
            quiet
                .append(line("r", "not published"))
                .await
                .unwrap()
                .room_seq(),
            Some(1)
        );
        // Another room's event: on the shared channel only.
        let other = loud.append(line("other", "elsewhere")).await.unwrap();
        let sent = loud.append(line("r", "hello")).await.unwrap();
        let sent_chunk = loud.append(chunk("r", "a1", 1, false)).await.unwrap();
        let closed = loud
            .close_answer(chunk("r", "a1", 99, true))
            .await
            .unwrap()
            .unwrap();
        let expected = match channels {
            RoomChannels::PerRoom => vec![&sent, &sent_chunk, &closed],
            RoomChannels::Shared => vec![&other, &sent, &sent_chunk, &closed],
        };
        for expected in expected {
            let payload =
                tokio::time::timeout(std::time::Duration::from_secs(10), published.recv())
                    .await
                    .expect("the append published its event")
                    .unwrap();
            let (origin, event) = fanout::decode(&payload).unwrap();
            assert_eq!(origin, fanout.origin);
            assert_eq!(&event, expected, "{channels:?}");
        }
        assert_eq!(closed.room_seq(), Some(4));
        assert_eq!(
            seqs(&closed),
            (Some(4), 2),
            "closed with the answer's next seq"
        );
        // Nothing else arrived: the next message is one published now.
        let marker = loud.append(line("r", "marker")).await.unwrap();
        let payload = tokio::time::timeout(std::time::Duration::from_secs(10), published.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(fanout::decode(&payload).unwrap().1, marker, "{channels:?}");
    }
    redis.stop().await.unwrap();
}

fn chunk(room: &str, id: &str, seq: u32, done: bool) -> RoomEvent {
    RoomEvent::AiChunk(AiChunk {
        room: room.into(),
        room_seq: None,
        stream_id: id.into(),
        seq,
        chunk: "x".into(),
        done,
        error: None,
        ts: 1,
    })
}

fn seqs(event: &RoomEvent) -> (Option<u64>, u32) {
    match event {
        RoomEvent::AiChunk(chunk) => (chunk.room_seq, chunk.seq),
        RoomEvent::Message(_) => panic!("expected a chunk, got {event:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orphaned_answer_is_closed_once_with_the_next_seq_and_then_refuses_chunks() {
    let redis = RedisServer::start().await.unwrap();
    let dead = store(&redis, "t", 100, 3).await;
    let survivor = store(&redis, "t", 100, 3).await;
    // Opened, never a chunk: the close is its seq 1.
    dead.open_answer("r", "quiet").await.unwrap();
    let closed = survivor.close_answer(chunk("r", "quiet", 0, true)).await;
    assert_eq!(seqs(&closed.unwrap().unwrap()), (Some(1), 1));
    // Two chunks, then the close is seq 3; a second close finds nothing.
    dead.open_answer("r", "a").await.unwrap();
    dead.append(chunk("r", "a", 1, false)).await.unwrap();
    dead.append(chunk("r", "a", 2, false)).await.unwrap();
    let closed = survivor.close_answer(chunk("r", "a", 0, true)).await;
    assert_eq!(seqs(&closed.unwrap().unwrap()), (Some(4), 3));
    assert!(
        survivor
            .close_answer(chunk("r", "a", 0, true))
            .await
            .unwrap()
            .is_none()
    );
    // The server was not dead after all: its next chunk is refused.
    assert!(matches!(
        dead.append(chunk("r", "a", 3, false)).await,
        Err(StoreError::AnswerClosed)
    ));
    // An answer that ended by itself is not closed again.
    dead.open_answer("r", "b").await.unwrap();
    dead.append(chunk("r", "b", 1, true)).await.unwrap();
    assert!(
        survivor
            .close_answer(chunk("r", "b", 0, true))
            .await
            .unwrap()
            .is_none()
    );
    redis.stop().await.unwrap();
}

fn answer(user: &str, room: &str, id: &str) -> Answer {
    Answer {
        user: user.into(),
        room: room.into(),
        id: id.into(),
    }
}

const CAPS: Caps = Caps {
    per_user: 1,
    per_room: 2,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_counted_by_every_server_with_one_prefix() {
    let redis = RedisServer::start().await.unwrap();
    // Two servers of one cluster, each with its own connection, and another cluster.
    let one = RedisLedger::new(connection(&redis).await, "blue");
    let two = RedisLedger::new(connection(&redis).await, "blue");
    let other = RedisLedger::new(connection(&redis).await, "green");

    let ann = answer("ann", "r1", "a1");
    assert_eq!(one.reserve("one", &ann, CAPS).await.unwrap(), Ok(()));
    let ann_elsewhere = answer("ann", "r2", "a2");
    assert_eq!(
        two.reserve("two", &ann_elsewhere, CAPS).await.unwrap(),
        Err(Busy::User)
    );
    assert_eq!(
        other.reserve("two", &ann_elsewhere, CAPS).await.unwrap(),
        Ok(()),
        "another prefix counts apart"
    );
    assert_eq!(
        two.reserve("two", &answer("bob", "r1", "b1"), CAPS)
            .await
            .unwrap(),
        Ok(())
    );
    // The room is full: cat is refused, and the place her user key took is given back.
    assert_eq!(
        one.reserve("one", &answer("cat", "r1", "c1"), CAPS)
            .await
            .unwrap(),
        Err(Busy::Room)
    );
    assert_eq!(
        two.reserve("two", &answer("cat", "r3", "c2"), CAPS)
            .await
            .unwrap(),
        Ok(())
    );
    // Refused answers are not recorded as running on their server.
    let mut on_one = one.answers_of("one").await.unwrap();
    on_one.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(on_one, std::slice::from_ref(&ann));
    // Releasing an answer on any server frees its place.
    two.release("one", &ann).await.unwrap();
    assert!(one.answers_of("one").await.unwrap().is_empty());
    assert_eq!(
        two.reserve("two", &ann_elsewhere, CAPS).await.unwrap(),
        Ok(())
    );
    redis.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_servers_answers_are_found_by_a_survivor_and_stop_counting_once_released() {
    let redis = RedisServer::start().await.unwrap();
    let one = RedisLedger::new(connection(&redis).await, "blue");
    let two = RedisLedger::new(connection(&redis).await, "blue");
    let ann = answer("ann|admin", "r1", "a1");
    assert_eq!(one.reserve("one", &ann, CAPS).await.unwrap(), Ok(()));
    assert!(one.heartbeat("one").await.unwrap().is_empty());
    assert!(
        two.heartbeat("two").await.unwrap().is_empty(),
        "one is alive"
    );

    // One stops sending heartbeats; two keeps going and sees it dead 3 s later.
    let mut dead = Vec::new();
    for _ in 0..8 {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        dead = two.heartbeat("two").await.unwrap();
        if !dead.is_empty() {
            break;
        }
    }
    assert_eq!(dead, ["one"]);
    let ann_again = answer("ann|admin", "r2", "a2");
    assert_eq!(
        two.reserve("two", &ann_again, CAPS).await.unwrap(),
        Err(Busy::User),
        "a dead server's answers count until they are released"
    );
    assert_eq!(
        two.answers_of("one").await.unwrap(),
        std::slice::from_ref(&ann)
    );
    two.release("one", &ann).await.unwrap();
    assert_eq!(two.reserve("two", &ann_again, CAPS).await.unwrap(), Ok(()));
    assert!(two.answers_of("one").await.unwrap().is_empty());
    two.forget_server("one").await.unwrap();
    assert!(two.heartbeat("two").await.unwrap().is_empty());
    redis.stop().await.unwrap();
}
