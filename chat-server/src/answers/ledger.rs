//! The record of running answers that every server shares: which answers run,
//! on which server, and how many per user and per room. Servers prove they
//! are alive with one heartbeat each (not one per answer); the answers of a
//! server whose heartbeat lapsed are found here and released by a survivor.

use async_trait::async_trait;

use crate::store::StoreError;

/// One AI answer: who asked, in which room, and its id (`streamId` on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Answer {
    pub user: String,
    pub room: String,
    pub id: String,
}

/// Why an answer could not start: this one is at its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    User,
    Room,
}

/// How many answers may run at once, over every server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub per_user: u32,
    pub per_room: u32,
}

#[async_trait]
pub trait AnswerLedger: Send + Sync + 'static {
    /// Records `answer` as running on `server`, unless its user or its room
    /// is already at its cap.
    async fn reserve(
        &self,
        server: &str,
        answer: &Answer,
        caps: Caps,
    ) -> Result<Result<(), Busy>, StoreError>;

    /// The answer ended (or was closed for a dead `server`): stop counting it.
    async fn release(&self, server: &str, answer: &Answer) -> Result<(), StoreError>;

    /// `server` is alive. Returns the other servers whose heartbeat lapsed.
    async fn heartbeat(&self, server: &str) -> Result<Vec<String>, StoreError>;

    /// Some of the answers still recorded for `server` (at most a few
    /// hundred); none once all were released.
    async fn answers_of(&self, server: &str) -> Result<Vec<Answer>, StoreError>;

    /// A dead server with no answers left: stop reporting it.
    async fn forget_server(&self, server: &str) -> Result<(), StoreError>;
}
