//! The Redis room store against a real redis-server: atomic sequencing under
//! concurrency, replay and its "too old" rule, bounded history, prefixes, and
//! running AI answers counted over every server.

use std::sync::Arc;

use chat_server::{
    adapter::RedisConnection,
    protocol::{ChatMessage, MessageKind, RoomEvent},
    store::{
        AnswerRef, AnswerSlots, Busy, RedisAnswerSlots, RedisStore, ReplayError, Role, RoomStore,
        Turn,
    },
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
    RedisStore::new(connection(redis).await, prefix, log_len, turns)
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

fn answer(user: &str, room: &str, id: &str) -> AnswerRef {
    AnswerRef {
        user: user.into(),
        room: room.into(),
        id: id.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_slots_are_shared_by_servers_with_one_prefix() {
    let redis = RedisServer::start().await.unwrap();
    // Two servers of one cluster, each with its own connection, and another cluster.
    let one = RedisAnswerSlots::new(connection(&redis).await, "blue");
    let two = RedisAnswerSlots::new(connection(&redis).await, "blue");
    let other = RedisAnswerSlots::new(connection(&redis).await, "green");
    let (per_user, per_room) = (1, 2);

    let ann = answer("ann", "r1", "a1");
    assert_eq!(one.reserve(&ann, per_user, per_room).await.unwrap(), Ok(()));
    let ann_elsewhere = answer("ann", "r2", "a2");
    assert_eq!(
        two.reserve(&ann_elsewhere, per_user, per_room)
            .await
            .unwrap(),
        Err(Busy::User)
    );
    assert_eq!(
        other
            .reserve(&ann_elsewhere, per_user, per_room)
            .await
            .unwrap(),
        Ok(()),
        "another prefix counts apart"
    );
    assert_eq!(
        two.reserve(&answer("bob", "r1", "b1"), per_user, per_room)
            .await
            .unwrap(),
        Ok(())
    );
    // The room is full: cat is refused, and the place her user key took is given back.
    assert_eq!(
        one.reserve(&answer("cat", "r1", "c1"), per_user, per_room)
            .await
            .unwrap(),
        Err(Busy::Room)
    );
    assert_eq!(
        two.reserve(&answer("cat", "r3", "c2"), per_user, per_room)
            .await
            .unwrap(),
        Ok(())
    );
    // Renewing keeps an answer counted; releasing it on any server frees the place.
    one.renew(std::slice::from_ref(&ann)).await.unwrap();
    assert_eq!(
        two.reserve(&ann_elsewhere, per_user, per_room)
            .await
            .unwrap(),
        Err(Busy::User)
    );
    one.release(&ann).await.unwrap();
    assert_eq!(
        two.reserve(&ann_elsewhere, per_user, per_room)
            .await
            .unwrap(),
        Ok(())
    );
    redis.stop().await.unwrap();
}
