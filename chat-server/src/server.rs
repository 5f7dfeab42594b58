//! Wires the pieces into a running server: the Socket.IO layer with its
//! transport limits, the public router (Socket.IO and the demo page), the
//! admin router, both listeners, and a clean shutdown.

use std::{future::Future, net::SocketAddr};

use anyhow::Context;
use axum::Router;
use socketioxide::SocketIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{admin, config::Config, events, state::AppState, web};

pub struct Server {
    public: TcpListener,
    admin: TcpListener,
    public_app: Router,
    admin_app: Router,
    io: SocketIo,
}

impl Server {
    /// Builds the state and binds both listeners; nothing is served yet.
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        let state = AppState::from_config(config)?;
        let metrics = state.metrics.clone();
        let max_payload = config.max_payload_bytes;
        let (layer, io) = SocketIo::builder()
            .max_payload(max_payload)
            .ws_max_message_size(max_payload as usize)
            .ws_max_frame_size(max_payload as usize)
            .max_buffer_size(1024)
            .with_state(state)
            .build_layer();
        io.ns("/", events::on_connect);

        let public = TcpListener::bind((config.host, config.port))
            .await
            .with_context(|| format!("binding the public port {}", config.port))?;
        let admin = TcpListener::bind((config.host, config.admin_port))
            .await
            .with_context(|| format!("binding the admin port {}", config.admin_port))?;
        Ok(Self {
            public,
            admin,
            public_app: web::router().layer(layer),
            admin_app: admin::router(io.clone(), metrics),
            io,
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
        let io = self.io.clone();
        let trigger = stop.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down: disconnecting sockets");
            io.close().await;
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
