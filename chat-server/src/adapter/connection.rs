//! One Redis connection type for standalone Redis and Redis Cluster, so the
//! store, the adapter driver and the health loop do not care which it is.
//! Both kinds reconnect by themselves and restore their subscriptions; pub/sub
//! goes to the shard that owns the channel in cluster mode (SPUBLISH).

use std::time::Duration;

use redis::{
    Cmd, Pipeline, ProtocolVersion, RedisFuture, RedisResult, Value,
    aio::{AsyncPushSender, ConnectionLike, ConnectionManager, ConnectionManagerConfig},
    cluster::ClusterClientBuilder,
    cluster_async::ClusterConnection,
};

/// A dead Redis must fail commands fast instead of stalling handlers.
const TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub enum RedisConnection {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

impl RedisConnection {
    /// Connects to `url` (a seed node in cluster mode); pub/sub messages go to `push`.
    pub async fn connect(
        url: &str,
        cluster: bool,
        push: impl AsyncPushSender,
    ) -> RedisResult<Self> {
        if cluster {
            let client = ClusterClientBuilder::new(vec![url])
                .use_protocol(ProtocolVersion::RESP3)
                .push_sender(push)
                .connection_timeout(TIMEOUT)
                .response_timeout(TIMEOUT)
                .retries(2)
                .build()?;
            return Ok(Self::Cluster(client.get_async_connection().await?));
        }
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_push_sender(push)
            .set_automatic_resubscription()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(TIMEOUT);
        Ok(Self::Standalone(
            ConnectionManager::new_with_config(client, config).await?,
        ))
    }

    pub async fn publish(&mut self, channel: &str, message: &[u8]) -> RedisResult<()> {
        let command = match self {
            Self::Standalone(_) => "PUBLISH",
            Self::Cluster(_) => "SPUBLISH",
        };
        redis::cmd(command)
            .arg(channel)
            .arg(message)
            .exec_async(self)
            .await
    }

    pub async fn subscribe(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            Self::Standalone(conn) => conn.subscribe(channel).await,
            Self::Cluster(conn) => conn.ssubscribe(channel).await,
        }
    }

    pub async fn unsubscribe(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            Self::Standalone(conn) => conn.unsubscribe(channel).await,
            Self::Cluster(conn) => conn.sunsubscribe(channel).await,
        }
    }

    /// How many connections listen on `channel` (one per server).
    pub async fn subscribers(&mut self, channel: &str) -> RedisResult<u16> {
        let numsub = match self {
            Self::Standalone(_) => "NUMSUB",
            Self::Cluster(_) => "SHARDNUMSUB",
        };
        let (_, count): (String, u16) = redis::cmd("PUBSUB")
            .arg(numsub)
            .arg(channel)
            .query_async(self)
            .await?;
        Ok(count)
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Standalone(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Standalone(conn) => conn.req_packed_commands(cmd, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Standalone(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}
