//! The ports a chat-server listens on by default, which the operator's
//! Services, probes and NetworkPolicies name.

/// Socket.IO at `/socket.io/` and the demo page at `/`.
pub const PUBLIC: u16 = 3000;
/// Metrics, health and the drain API: never exposed to users.
pub const ADMIN: u16 = 9090;
