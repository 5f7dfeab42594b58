//! Wires the pieces into a running server: the Socket.IO layer with its
//! transport limits and adapter (in-memory, or Redis so that many servers act
//! as one), the public router (Socket.IO and the demo page), the admin router,
//! both listeners, and a clean shutdown.

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context;
use axum::Router;
use futures::future::BoxFuture;
use socketioxide::{SocketIo, SocketIoBuilder, adapter::Adapter, layer::SocketIoLayer};
use socketioxide_redis::{RedisAdapterConfig, RedisAdapterCtr};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    adapter::{self, RedisAdapter, ResilientDriver},
    admin::{self, metrics::Metrics},
    config::Config,
    events,
    state::AppState,
    store::{MemoryStore, RedisStore},
    web,
};

pub struct Server {
    public: TcpListener,
    admin: TcpListener,
    public_app: Router,
    admin_app: Router,
    /// Disconnects every socket; run once on shutdown.
    close: BoxFuture<'static, ()>,
}

impl Server {
    /// Connects to Redis when configured, builds the state and binds both
    /// listeners; nothing is served yet.
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        let metrics = Arc::new(Metrics::new());
        let builder = socket_io_builder(config);
        match &config.redis_url {
            None => {
                let store = Arc::new(MemoryStore::new(
                    config.room_log_len as usize,
                    config.history_turns as usize,
                ));
                let state = AppState::new(config, store, metrics.clone())?;
                let (layer, io) = builder.with_state(state).build_layer();
                io.ns("/", events::on_connect);
                Self::assemble(config, layer, io, metrics).await
            }
            Some(url) => {
                // The URL may hold a password: never log it.
                let driver = ResilientDriver::connect(
                    &adapter::resp3_url(url),
                    config.redis_cluster,
                    metrics.clone(),
                )
                .await
                .context("connecting to Redis (CHAT_REDIS_URL)")?;
                let store = Arc::new(RedisStore::new(
                    driver.connection(),
                    &config.key_prefix,
                    config.room_log_len as usize,
                    config.history_turns as usize,
                ));
                adapter::watch_health(vec![driver.connection()], metrics.clone());
                let channels = RedisAdapterConfig::new()
                    .with_prefix(format!("{}-socket.io", config.key_prefix));
                let state = AppState::new(config, store, metrics.clone())?;
                let (layer, io) = builder
                    .with_adapter::<RedisAdapter<_>>(RedisAdapterCtr::new_with_driver(
                        driver, channels,
                    ))
                    .with_state(state)
                    .build_layer();
                io.ns("/", events::on_connect)
                    .await
                    .context("subscribing to the Redis adapter channels")?;
                Self::assemble(config, layer, io, metrics).await
            }
        }
    }

    async fn assemble<A: Adapter>(
        config: &Config,
        layer: SocketIoLayer<A>,
        io: SocketIo<A>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let public = TcpListener::bind((config.host, config.port))
            .await
            .with_context(|| format!("binding the public port {}", config.port))?;
        let admin = TcpListener::bind((config.host, config.admin_port))
            .await
            .with_context(|| format!("binding the admin port {}", config.admin_port))?;
        let admin_app = admin::router(io.clone(), metrics);
        Ok(Self {
            public,
            admin,
            public_app: web::router().layer(layer),
            admin_app,
            close: Box::pin(async move { io.close().await }),
        })
    }

    pub fn public_addr(&self) -> SocketAddr {
        self.public
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes, then disconnects every socket and
    /// lets in-flight HTTP requests finish.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        let trigger = stop.clone();
        let close = self.close;
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down: disconnecting sockets");
            close.await;
            trigger.cancel();
        });
        let public = axum::serve(self.public, self.public_app)
            .with_graceful_shutdown(stop.clone().cancelled_owned());
        let admin =
            axum::serve(self.admin, self.admin_app).with_graceful_shutdown(stop.cancelled_owned());
        tokio::try_join!(async { public.await }, async { admin.await })?;
        Ok(())
    }
}

/// Transport limits: `max_payload` bounds long-polling bodies only; WebSocket
/// messages and frames need their own bounds (64 MiB / 16 MiB by default).
fn socket_io_builder(config: &Config) -> SocketIoBuilder {
    let max_payload = config.max_payload_bytes;
    SocketIo::builder()
        .max_payload(max_payload)
        .ws_max_message_size(max_payload as usize)
        .ws_max_frame_size(max_payload as usize)
        .max_buffer_size(1024)
}
