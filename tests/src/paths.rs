//! Where things are: the workspace, the chat-server binary, a free port.

use std::path::Path;

/// The workspace's root folder.
pub fn workspace_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The chat-server binary: `CHAT_SERVER_BIN`, or the workspace's debug build
/// (`cargo test --workspace` builds it along with chat-server's own tests).
pub fn chat_server_bin() -> std::path::PathBuf {
    let bin = std::env::var("CHAT_SERVER_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target/debug/chat-server"));
    assert!(
        bin.exists(),
        "build chat-server first (make test-build, which make test runs)"
    );
    bin
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
