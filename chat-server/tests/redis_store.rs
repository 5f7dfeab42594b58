//! The Redis room store against a real redis-server: atomic sequencing under
//! concurrency, replay and its "too old" rule, bounded history, prefixes.

use std::sync::Arc;

use chat_server::{
    adapter::RedisConnection,
    protocol::{ChatMessage, MessageKind, RoomEvent},
    store::{RedisStore, ReplayError, Role, RoomStore, Turn},
};
use chatscale_tests::RedisServer;

async fn store(redis: &RedisServer, prefix: &str, log_len: usize, turns: usize) -> RedisStore {
    let conn = RedisConnection::connect(&format!("{}?protocol=resp3", redis.url), false, |_| {
        Ok::<(), ()>(())
    })
    .await
    .unwrap();
    RedisStore::new(conn, prefix, log_len, turns)
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
