//! The contract between the operator and chat-server, in one place that both
//! crates build against: the names of chat-server's settings (`CHAT_*`
//! environment variables), the ranges and defaults of the settings a
//! ChatCluster sets, the ports, and the admin API the operator drives (paths,
//! the drain status document, the metrics it reads). A misspelt name does not
//! compile; a range is written once, so the CRD's CEL rules and chat-server's
//! flag parser cannot drift apart. chat-server's tests check mechanically that
//! its flag table reads exactly these names and enforces exactly these ranges.

pub mod admin;
pub mod env;
pub mod ports;
pub mod settings;
