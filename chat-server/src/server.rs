//! Wires the pieces into a running server: the Socket.IO layer with its
//! transport limits and adapter (in-memory, or Redis so that many servers act
//! as one), the public router (Socket.IO and the demo page), the admin router,
//! both listeners, and a clean shutdown.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use axum::{Router, serve::ListenerExt};
use futures::future::BoxFuture;
use socketioxide::{
    SocketIo, SocketIoBuilder, adapter::Adapter, layer::SocketIoLayer, socket::Sid,
};
use socketioxide_redis::{RedisAdapterConfig, RedisAdapterCtr};
use tokio::{net::TcpListener, sync::mpsc};
use tokio_util::sync::CancellationToken;

use crate::{
    adapter::{self, RedisAdapter, ResilientDriver},
    admin::{self, drain::Drain, gate, metrics::Metrics, shed::Shed},
    answers::{self, MemoryLedger, RedisLedger},
    config::Config,
    events,
    fanout::{self, DriverListener, Fanout, Listen, RoomSubscriptions},
    origin,
    publish::Publisher,
    secret::Secret,
    state::AppState,
    store::{MemoryStore, RedisStore},
    web,
};

pub struct Server {
    public: TcpListener,
    admin: TcpListener,
    public_app: Router,
    admin_app: Router,
    drain: Arc<Drain>,
    drain_timeout: Duration,
    /// Starts the drain (it needs the adapter-typed Socket.IO handle).
    start_drain: Box<dyn Fn() + Send + Sync>,
    /// Stops publishing, then disconnects every socket; run once on shutdown.
    close: BoxFuture<'static, ()>,
}

/// Environment variable holding the admin token when no token file is given.
use chatscale_contract::env::ADMIN_TOKEN as ADMIN_TOKEN_ENV;

/// How long an exit waits for the events being published.
const STOP_PUBLISHING_WITHIN: Duration = Duration::from_secs(2);

impl Server {
    /// Connects to Redis when configured, builds the state and binds both
    /// listeners; nothing is served yet.
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        let metrics = Arc::new(Metrics::new());
        let builder = socket_io_builder(config);
        match config.redis_url()?.as_ref().map(Secret::expose) {
            None => {
                let store = Arc::new(MemoryStore::new(
                    config.room_log_len as usize,
                    config.history_turns as usize,
                ));
                let ledger = Arc::new(MemoryLedger::default());
                let state = AppState::new(
                    config,
                    store,
                    ledger,
                    metrics.clone(),
                    RoomSubscriptions::none(),
                )?;
                let publisher = state.publisher.clone();
                let (layer, io) = builder.with_state(state).build_layer();
                events::serve(&io);
                Self::assemble(config, layer, io, metrics, publisher).await
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
                // Room events ride on the append script (crate::fanout),
                // except for the shared channel on a Redis Cluster, where the
                // adapter's sharded pub/sub carries them.
                let fanout = Fanout::new(
                    &config.key_prefix,
                    config.room_channels,
                    config.redis_cluster,
                );
                let (listener, room_events) = DriverListener::new(driver.clone());
                let room_subscriptions = match &fanout {
                    Some(fanout) if fanout.per_room() => RoomSubscriptions::new(
                        Arc::new(listener.clone()),
                        fanout.clone(),
                        metrics.clone(),
                    ),
                    _ => RoomSubscriptions::none(),
                };
                let store = Arc::new(RedisStore::new(
                    driver.connection(),
                    &config.key_prefix,
                    config.room_log_len as usize,
                    config.history_turns as usize,
                    fanout.clone(),
                ));
                adapter::watch_health(vec![driver.connection()], metrics.clone());
                let channels = RedisAdapterConfig::new()
                    .with_prefix(format!("{}-socket.io", config.key_prefix));
                let ledger = Arc::new(RedisLedger::new(driver.connection(), &config.key_prefix));
                let state =
                    AppState::new(config, store, ledger, metrics.clone(), room_subscriptions)?;
                let (layer, io) = builder
                    .with_adapter::<RedisAdapter<_>>(RedisAdapterCtr::new_with_driver(
                        driver.clone(),
                        channels,
                    ))
                    .with_state(state.clone())
                    .build_layer();
                events::serve(&io)
                    .await
                    .context("subscribing to the Redis adapter channels")?;
                if let Some(fanout) = fanout {
                    if fanout.listens_on_shared_channel() {
                        listener
                            .listen(&fanout.shared_channel())
                            .await
                            .context("subscribing to the room events channel")?;
                    }
                    fanout::receive(room_events, io.clone(), metrics.clone(), fanout.origin);
                }
                let publisher = state.publisher.clone();
                answers::watch(io.clone(), state);
                Self::assemble(config, layer, io, metrics, publisher).await
            }
        }
    }

    async fn assemble<A: Adapter>(
        config: &Config,
        layer: SocketIoLayer<A>,
        io: SocketIo<A>,
        metrics: Arc<Metrics>,
        publisher: Arc<Publisher>,
    ) -> anyhow::Result<Self> {
        let public = TcpListener::bind((config.host, config.port))
            .await
            .with_context(|| format!("binding the public port {}", config.port))?;
        let admin = TcpListener::bind((config.host, config.admin_port))
            .await
            .with_context(|| format!("binding the admin port {}", config.admin_port))?;
        let token = match &config.admin_token_file {
            Some(path) => Some(
                Secret::from_file(path)
                    .with_context(|| format!("reading the admin token file {}", path.display()))?,
            ),
            None => Secret::from_env(ADMIN_TOKEN_ENV),
        };
        if token.is_none() {
            tracing::warn!(
                "no admin token configured: the drain and shed APIs refuse every request"
            );
        }
        let drain = Drain::new(config.drain_rate, config.drain_jitter_ms, metrics.clone());
        let shed = Shed::new(drain.clone(), config.drain_jitter_ms, metrics.clone());
        let admin_app = admin::router(io.clone(), metrics, drain.clone(), shed.clone(), token);
        let sessions = io.clone();
        let gate = gate::SessionGate {
            drain: drain.clone(),
            shed,
            holds: Arc::new(move |sid: &str| {
                sid.parse::<Sid>()
                    .is_ok_and(|sid| sessions.get_socket(sid).is_some())
            }),
        };
        let origins = origin::Origins::new(&config.allowed_origins);
        let cors = origins.cors();
        let auth_required = crate::auth::mode(config) == crate::config::AuthMode::Required;
        let public_app = web::router(auth_required)
            .layer(layer)
            .layer(axum::middleware::map_request(compact_handshake))
            .layer(axum::middleware::from_fn_with_state(
                gate,
                gate::gate_sessions,
            ))
            .layer(axum::middleware::from_fn_with_state(
                Arc::new(origins),
                origin::guard,
            ));
        // CORS answers preflights before the origin guard sees them.
        let public_app = match cors {
            Some(cors) => public_app.layer(cors),
            None => public_app,
        };
        let (starter, drainer) = (io.clone(), drain.clone());
        Ok(Self {
            public,
            admin,
            public_app,
            admin_app,
            drain,
            drain_timeout: config.drain_timeout,
            start_drain: Box::new(move || drainer.start(starter.clone())),
            close: Box::pin(async move {
                // Answers still running (a drain that timed out) must not stop
                // between appending a chunk to the room log and emitting it.
                if tokio::time::timeout(STOP_PUBLISHING_WITHIN, publisher.stop())
                    .await
                    .is_err()
                {
                    tracing::warn!("an event was still being published at exit");
                }
                io.close().await
            }),
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

    /// Serves until the first signal arrives on `signals`, then drains: exits
    /// once drained, when the drain timeout runs out, or at a second signal.
    pub async fn serve(self, mut signals: mpsc::UnboundedReceiver<()>) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        let trigger = stop.clone();
        let (drain, timeout, start_drain, close) =
            (self.drain, self.drain_timeout, self.start_drain, self.close);
        tokio::spawn(async move {
            if signals.recv().await.is_some() {
                start_drain();
                tokio::select! {
                    () = drain.drained() => tracing::info!("drained; exiting"),
                    () = tokio::time::sleep(timeout) => tracing::warn!(?timeout, "drain timeout reached; exiting"),
                    _ = signals.recv() => tracing::warn!("second signal; exiting without waiting"),
                }
            }
            close.await;
            trigger.cancel();
        });
        // Small writes (an event, then its ack) must not wait for Nagle's algorithm.
        let public = self.public.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        // Handshakes see the client's address (per-address connection limits).
        let public = axum::serve(
            public,
            self.public_app
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
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
        // Each WebSocket's read buffer (4 KiB by default) lives as long as the
        // connection; chat frames are small, larger ones take more reads.
        .ws_read_buffer_size(1024)
}

/// Socket.IO keeps each session's handshake request (URI, headers and
/// extensions) for the session's life. As parsed by hyper they are slices of
/// the connection's 8-16 KiB read buffer and keep all of it alive; copied into
/// allocations of their own, they let it go (about 16 KiB of heap per idle
/// WebSocket, found with heaptrack: see docs/performance.md).
async fn compact_handshake(mut request: axum::extract::Request) -> axum::extract::Request {
    use axum::http::{HeaderMap, HeaderValue, Uri};
    let parsed = std::mem::take(request.headers_mut());
    let mut headers = HeaderMap::with_capacity(parsed.len());
    for (name, value) in &parsed {
        let mut copy = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        copy.set_sensitive(value.is_sensitive());
        headers.append(name.clone(), copy);
    }
    *request.headers_mut() = headers;
    if let Ok(uri) = Uri::try_from(request.uri().to_string()) {
        // axum's router keeps the URI it received as an extension, too.
        if let Some(original) = request
            .extensions_mut()
            .get_mut::<axum::extract::OriginalUri>()
        {
            original.0 = uri.clone();
        }
        *request.uri_mut() = uri;
    }
    request
}
