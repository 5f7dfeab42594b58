//! Starts a chat-server: reads the flag table, sets up logging, binds both
//! listeners, prints where it listens, and serves until Ctrl-C or SIGTERM.

use std::io::IsTerminal;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use chat_server::{
    config::{Config, LogFormat},
    server::Server,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    init_logging(config.log_format);

    let server = Server::bind(&config).await?;
    let (public, admin) = (server.public_addr(), server.admin_addr());
    tracing::info!(%public, %admin, ai_provider = ?config.ai_provider, "chat-server listening");
    if chat_server::auth::mode(&config) == chat_server::config::AuthMode::Off {
        tracing::warn!(
            "AUTHENTICATION IS OFF: any client may join any room and send as anyone (demo mode); configure --jwt-secret-file or --jwt-public-key-file for production"
        );
    }
    // One stable line on stdout, for people and for test harnesses.
    println!("chat-server listening on http://{public} (admin http://{admin})");

    server.serve(signals()).await
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env(chatscale_contract::env::LOG)
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // socketioxide and engineioxide print whole packets at debug level: the
    // handshake's JWT and users' messages. Never let those through.
    let filter = ["socketioxide=info", "engineioxide=info"]
        .into_iter()
        .fold(filter, |filter, directive| {
            filter.add_directive(directive.parse().expect("a valid directive"))
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// One message per Ctrl-C or SIGTERM: the first drains, a second exits at once.
fn signals() -> tokio::sync::mpsc::UnboundedReceiver<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: draining"),
                _ = int.recv() => tracing::info!("interrupted: draining (again to exit now)"),
            }
            if tx.send(()).is_err() {
                return;
            }
        }
    });
    rx
}
