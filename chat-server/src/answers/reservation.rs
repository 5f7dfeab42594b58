//! An answer's places under the concurrency caps: reserved before it starts
//! (refused with `rate_limited`), given back when its reservation is dropped.
//! A release that fails (Redis unreachable) is kept and retried at the next
//! heartbeat, so a hiccup at the end of an answer does not keep its places.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use super::ledger::{Answer, AnswerLedger, Busy, Caps};
use crate::{limits::rate_limited, protocol::ChatError};

/// This server's side of the ledger: its id there, the caps, and the
/// releases still owed.
pub struct Answers {
    ledger: Arc<dyn AnswerLedger>,
    server: String,
    caps: Caps,
    unreleased: Mutex<Vec<Answer>>,
}

/// One running answer's places: [`Reservation::release`] gives them back, and
/// so does dropping it (a cancelled or panicked answer).
pub struct Reservation {
    answers: Arc<Answers>,
    answer: Answer,
    released: bool,
}

impl Answers {
    /// A server with a fresh id: a restarted server is a new one, and its
    /// predecessor's answers are closed like any dead server's.
    pub fn new(ledger: Arc<dyn AnswerLedger>, caps: Caps) -> Arc<Self> {
        Arc::new(Self {
            ledger,
            server: uuid::Uuid::new_v4().to_string(),
            caps,
            unreleased: Mutex::default(),
        })
    }

    pub fn ledger(&self) -> &dyn AnswerLedger {
        &*self.ledger
    }

    /// This server's id in the ledger.
    pub fn server(&self) -> &str {
        &self.server
    }

    fn unreleased(&self) -> std::sync::MutexGuard<'_, Vec<Answer>> {
        self.unreleased.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Places for `answer`, or `rate_limited` when its user or room is at the
    /// cap, or `unavailable` when the ledger cannot be asked.
    pub async fn reserve(self: &Arc<Self>, answer: Answer) -> Result<Reservation, ChatError> {
        let Caps { per_user, per_room } = self.caps;
        let refused = |what: &str, max: u32| ChatError {
            message: format!("at most {max} AI answers per {what} at once; retry after 1000 ms"),
            ..rate_limited("too many AI answers running", Duration::from_secs(1))
        };
        match self.ledger.reserve(&self.server, &answer, self.caps).await {
            Ok(Ok(())) => Ok(Reservation {
                answers: self.clone(),
                answer,
                released: false,
            }),
            Ok(Err(Busy::User)) => Err(refused("user", per_user)),
            Ok(Err(Busy::Room)) => Err(refused("room", per_room)),
            Err(error) => {
                // Part of it may have been written: undo whatever was.
                self.unreleased().push(answer);
                Err(error.into())
            }
        }
    }

    async fn release(&self, answer: Answer) {
        if let Err(error) = self.ledger.release(&self.server, &answer).await {
            tracing::debug!(%error, "an ended answer keeps its places until the next heartbeat");
            self.unreleased().push(answer);
        }
    }

    /// Retries the releases that failed; called before each heartbeat.
    pub async fn retry_releases(&self) {
        let owed = std::mem::take(&mut *self.unreleased());
        for answer in owed {
            self.release(answer).await;
        }
    }

    #[cfg(test)]
    fn owed(&self) -> usize {
        self.unreleased().len()
    }
}

impl Reservation {
    pub fn answer(&self) -> &Answer {
        &self.answer
    }

    /// Gives the places back, now.
    pub async fn release(mut self) {
        self.released = true;
        self.answers.release(self.answer.clone()).await;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let (answers, answer) = (self.answers.clone(), self.answer.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { answers.release(answer).await });
            }
            Err(_) => answers.unreleased().push(answer),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::{answers::MemoryLedger, store::StoreError};

    /// The memory ledger, with releases that fail while `down` is set.
    #[derive(Default)]
    struct Flaky {
        inner: MemoryLedger,
        down: AtomicBool,
    }

    #[async_trait]
    impl AnswerLedger for Flaky {
        async fn reserve(
            &self,
            server: &str,
            answer: &Answer,
            caps: Caps,
        ) -> Result<Result<(), Busy>, StoreError> {
            self.inner.reserve(server, answer, caps).await
        }
        async fn release(&self, server: &str, answer: &Answer) -> Result<(), StoreError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("down".into()));
            }
            self.inner.release(server, answer).await
        }
        async fn heartbeat(&self, server: &str) -> Result<Vec<String>, StoreError> {
            self.inner.heartbeat(server).await
        }
        async fn answers_of(&self, server: &str) -> Result<Vec<Answer>, StoreError> {
            self.inner.answers_of(server).await
        }
        async fn forget_server(&self, server: &str) -> Result<(), StoreError> {
            self.inner.forget_server(server).await
        }
    }

    fn one_per_user() -> Caps {
        Caps {
            per_user: 1,
            per_room: 10,
        }
    }

    fn ann(id: &str) -> Answer {
        Answer {
            user: "ann".into(),
            room: "r".into(),
            id: id.into(),
        }
    }

    #[tokio::test]
    async fn a_refused_answer_says_which_cap_and_a_dropped_one_gives_its_place_back() {
        let answers = Answers::new(Arc::new(MemoryLedger::default()), one_per_user());
        let first = answers.reserve(ann("1")).await.unwrap();
        let refused = answers.reserve(ann("2")).await.err().unwrap();
        assert_eq!(refused.code, crate::protocol::ErrorCode::RateLimited);
        assert!(refused.message.contains("per user"), "{}", refused.message);
        first.release().await;
        let second = answers.reserve(ann("3")).await.unwrap();
        // Dropped (a cancelled answer): given back by a task of its own.
        drop(second);
        let given_back = async {
            while answers.reserve(ann("4")).await.is_err() {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(5), given_back)
            .await
            .expect("a dropped reservation gives its place back");
    }

    #[tokio::test]
    async fn a_failed_release_is_retried_until_it_lands() {
        let ledger = Arc::new(Flaky::default());
        let answers = Answers::new(ledger.clone(), one_per_user());
        ledger.down.store(true, Ordering::SeqCst);
        answers.reserve(ann("1")).await.unwrap().release().await;
        assert_eq!(answers.owed(), 1);
        answers.retry_releases().await;
        assert_eq!(answers.owed(), 1, "still down: still owed");
        assert!(
            answers.reserve(ann("2")).await.is_err(),
            "the place is held"
        );
        ledger.down.store(false, Ordering::SeqCst);
        answers.retry_releases().await;
        assert_eq!(answers.owed(), 0);
        assert!(
            answers.reserve(ann("3")).await.is_ok(),
            "the place came back"
        );
    }
}
