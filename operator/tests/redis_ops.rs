//! The autoscaler reads Redis throughput from a real redis-server: the ops/s
//! it reports follow real traffic, and it reports nothing once Redis is gone.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use chatscale_operator::autoscaler::collect::redis_ops;
use chatscale_tests::{RedisServer, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_real_traffic_and_is_none_when_redis_is_gone() {
    let redis = RedisServer::start().await.unwrap();
    let idle = redis_ops(&redis.url).await.expect("an idle Redis answers");
    assert!(idle < 100.0, "idle Redis: {idle} ops/s");

    // Traffic: pipelines of 50 INCRs back to back until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let traffic = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut pipe = redis::pipe();
            for _ in 0..50 {
                pipe.cmd("INCR").arg("load").ignore();
            }
            while !stop.load(Ordering::Relaxed) {
                let () = pipe.query_async(&mut conn).await.unwrap();
            }
        }
    });
    let took = wait_until(
        "Redis to report the traffic",
        Duration::from_secs(10),
        || {
            let url = redis.url.clone();
            async move { redis_ops(&url).await.is_some_and(|ops| ops > 1000.0) }
        },
    )
    .await
    .unwrap();
    let busy = redis_ops(&redis.url).await.unwrap();
    println!("idle {idle} ops/s; under INCR traffic {busy} ops/s, seen after {took:?}");
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();

    let url = redis.url.clone();
    redis.stop().await.unwrap();
    assert_eq!(redis_ops(&url).await, None);
}
