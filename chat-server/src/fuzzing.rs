//! One fuzz input run through everything a client controls before it is
//! trusted: event payload decoding and validation, a rooms claim, a handshake
//! token. Shared by the cargo-fuzz target (`chat-server/fuzz`, run by `make
//! fuzz`) and the regression test that replays the checked-in corpus in
//! `make test`. The first byte picks the event; the rest is its payload.

use std::sync::OnceLock;

use serde_json::Value;

use crate::{
    auth::{
        jwt::{KeySource, Verifier, VerifierConfig},
        rooms::RoomGrants,
    },
    events::validate,
    secret::Secret,
};

/// The events a first byte picks from (anything else: an unknown event).
pub const EVENTS: [&str; 6] = ["join", "leave", "message", "ai-query", "resume", "unknown"];

fn verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        Verifier::new(VerifierConfig {
            keys: KeySource::Secret(Secret::new("fuzzing-secret-fuzzing-secret-fuzzing")),
            issuer: Some("chatscale-fuzz".into()),
            audience: Some("chat".into()),
            rooms_claim: "rooms".into(),
            leeway: std::time::Duration::from_secs(5),
        })
        .expect("a valid fuzzing key")
    })
}

/// Runs one input; panics only on a bug.
pub fn one_input(data: &[u8]) {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    let event = EVENTS[selector as usize % EVENTS.len()];
    if let Err(error) = validate::check_event(event, payload) {
        // Every refusal serializes as an ack and has a message.
        assert!(!error.message.is_empty());
        serde_json::to_string(&crate::protocol::Ack::<()>::from(Err(error)))
            .expect("an error ack serializes");
    }
    let claim = serde_json::from_slice::<Value>(payload).ok();
    let grants = RoomGrants::from_claim(claim.as_ref());
    let text = String::from_utf8_lossy(payload);
    if grants.allows(&text) {
        assert!(!grants.is_empty());
    }
    // A forged token never verifies (the fuzzer cannot know the secret's MAC).
    assert!(verifier().verify(text.trim()).is_err());
}
