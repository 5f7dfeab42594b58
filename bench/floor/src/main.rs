//! chatscale-floor: the least a room broadcast over WebSocket can cost on this
//! machine, so that `make bench` can show how far each Socket.IO server is from
//! the kernel and the bare protocol. It does what the load's broadcast and idle
//! scenarios need and nothing more: no Engine.IO or Socket.IO framing, no
//! pings, no acks, no auth, no Redis, no metrics.
//!
//! Protocol (text frames): the first frame is `join <room>`, answered by `ok`;
//! every later frame is a line, sent unchanged to every member of the room,
//! the sender included (as the Socket.IO servers do). Prints
//! `chatscale-floor listening on http://ADDR` on stdout once it listens.

mod conn;
mod rooms;

use std::{net::SocketAddr, sync::Arc};

use clap::Parser;
use tokio::net::TcpListener;

/// Bare WebSocket room broadcast (the benchmark's floor).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 3100)]
    port: u16,
}

/// The same runtime chat-server uses: tokio's multi-thread scheduler, one
/// worker per core.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(SocketAddr::new(args.host, args.port)).await?;
    println!(
        "chatscale-floor listening on http://{}",
        listener.local_addr()?
    );
    let rooms = Arc::new(rooms::Rooms::default());
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of file descriptors and the like: keep serving the others.
            Err(error) => {
                eprintln!("chatscale-floor: accept: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        tokio::spawn(conn::serve(stream, rooms.clone()));
    }
}
