//! The places this server's AI answers hold under the concurrency limits:
//! reserved before an answer starts (refused with `rate_limited`), renewed each
//! second while it runs, given back when its slot is dropped. The counting
//! itself lives in the store (`store::AnswerSlots`), shared by every server.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::{
    limits::{LimitsConfig, rate_limited},
    protocol::ChatError,
    store::{AnswerRef, AnswerSlots, Busy},
};

const RENEW_EVERY: Duration = Duration::from_secs(1);

pub struct AnswerLimiter {
    slots: Arc<dyn AnswerSlots>,
    per_user: u32,
    per_room: u32,
    held: Mutex<HashSet<AnswerRef>>,
}

/// One running answer's place; dropping it gives the place back.
pub struct AnswerSlot {
    limiter: Arc<AnswerLimiter>,
    answer: AnswerRef,
}

impl AnswerLimiter {
    pub fn new(slots: Arc<dyn AnswerSlots>, limits: &LimitsConfig) -> Arc<Self> {
        Arc::new(Self {
            slots,
            per_user: limits.max_ai_answers_per_user,
            per_room: limits.max_ai_answers_per_room,
            held: Mutex::default(),
        })
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashSet<AnswerRef>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for `answer`, or `rate_limited` when its user or room is at the
    /// limit, or `unavailable` when the store cannot be asked.
    pub async fn reserve(self: &Arc<Self>, answer: AnswerRef) -> Result<AnswerSlot, ChatError> {
        let (per_user, per_room) = (self.per_user, self.per_room);
        let refused = |what: &str, max: u32| ChatError {
            message: format!("at most {max} AI answers per {what} at once; retry after 1000 ms"),
            ..rate_limited("too many AI answers running", Duration::from_secs(1))
        };
        match self.slots.reserve(&answer, per_user, per_room).await? {
            Ok(()) => {}
            Err(Busy::User) => return Err(refused("user", per_user)),
            Err(Busy::Room) => return Err(refused("room", per_room)),
        }
        self.held().insert(answer.clone());
        Ok(AnswerSlot {
            limiter: self.clone(),
            answer,
        })
    }

    /// Renews the leases of the answers running here, every second, forever.
    pub fn keep_alive(self: &Arc<Self>) {
        let limiter = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RENEW_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(limiter) = limiter.upgrade() else {
                    return;
                };
                let held: Vec<AnswerRef> = limiter.held().iter().cloned().collect();
                if let Err(error) = limiter.slots.renew(&held).await {
                    tracing::debug!(%error, "could not renew the running answers' places");
                }
            }
        });
    }
}

impl Drop for AnswerSlot {
    fn drop(&mut self) {
        self.limiter.held().remove(&self.answer);
        let (slots, answer) = (self.limiter.slots.clone(), self.answer.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = slots.release(&answer).await {
                    tracing::debug!(%error, "an ended answer keeps its place until its lease lapses");
                }
            });
        }
    }
}
