//! The autoscaler reads Redis throughput from a real redis-server.

use chatscale_operator::autoscaler::collect::redis_ops;
use chatscale_tests::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_instantaneous_ops_per_sec_and_none_when_redis_is_gone() {
    let redis = RedisServer::start().await.unwrap();
    let ops = redis_ops(&redis.url).await;
    assert!(ops.is_some_and(|v| v >= 0.0), "{ops:?}");
    let url = redis.url.clone();
    redis.stop().await.unwrap();
    assert_eq!(redis_ops(&url).await, None);
}
