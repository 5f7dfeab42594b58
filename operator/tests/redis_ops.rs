//! The autoscaler reads Redis throughput from a real redis-server: the ops/s
//! it reports follow real traffic, and it reports nothing once Redis is gone.

use std::time::Duration;

use chatscale_operator::autoscaler::collect::redis_ops;
use chatscale_tests::{RedisServer, RedisTraffic, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_real_traffic_and_is_none_when_redis_is_gone() {
    let redis = RedisServer::start().await.unwrap();
    let idle = redis_ops(&redis.url).await.expect("an idle Redis answers");
    assert!(idle < 100.0, "idle Redis: {idle} ops/s");

    let traffic = RedisTraffic::start(&redis.url).await.unwrap();
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
    traffic.stop().await;

    let url = redis.url.clone();
    redis.stop().await.unwrap();
    assert_eq!(redis_ops(&url).await, None);
}
