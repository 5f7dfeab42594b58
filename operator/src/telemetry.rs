//! The operator's own HTTP endpoints: `/metrics` for Prometheus, `/healthz`
//! and `/readyz` for the kubelet.

use std::net::SocketAddr;

use axum::{Router, http::header, routing::get};
use prometheus::{Encoder, Registry, TextEncoder};

pub async fn serve(address: SocketAddr, registry: Registry) -> anyhow::Result<()> {
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    let mut out = Vec::new();
                    TextEncoder::new()
                        .encode(&registry.gather(), &mut out)
                        .expect("text encoding to memory cannot fail");
                    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ready\n" }));
    let listener = tokio::net::TcpListener::bind(address).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
