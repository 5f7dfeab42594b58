//! One fuzz input run through everything a client controls before it is
//! trusted: event payload decoding and validation, a rooms claim, a handshake
//! token. Shared by the cargo-fuzz target (`chat-server/fuzz`, run by `make
//! fuzz`) and the regression test that replays the checked-in corpus in
//! `make test`. The input's first line names the event (any name: one the
//! server has no handler for is ignored, as the server ignores it), and the
//! rest is its payload; an input without a line break is all payload, of no
//! event. Naming the event, rather than picking it by position, means adding
//! an event to the table never changes what an existing corpus input tests.

use std::{borrow::Cow, sync::OnceLock};

use serde_json::Value;

use crate::{
    auth::{
        jwt::{KeySource, Verifier, VerifierConfig},
        rooms::RoomGrants,
    },
    events::validate,
    secret::Secret,
};

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

/// The names of the client events the server handles, for the corpus check
/// that each one has an input.
pub fn event_names() -> Vec<&'static str> {
    crate::events::names()
}

/// The event an input names and its payload (see the module doc).
pub fn split_input(data: &[u8]) -> (Cow<'_, str>, &[u8]) {
    match data.iter().position(|&byte| byte == b'\n') {
        Some(end) => (String::from_utf8_lossy(&data[..end]), &data[end + 1..]),
        None => (Cow::Borrowed(""), data),
    }
}

/// Whether the server would act on the input: its event's checks pass.
pub fn accepted(data: &[u8]) -> bool {
    let (event, payload) = split_input(data);
    validate::check_event(&event, payload).is_ok()
}

/// Runs one input; panics only on a bug.
pub fn one_input(data: &[u8]) {
    let (event, payload) = split_input(data);
    if let Err(error) = validate::check_event(&event, payload) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_names_the_event() {
        assert_eq!(
            split_input(b"join\n{\"room\":\"a\"}\n"),
            ("join".into(), &b"{\"room\":\"a\"}\n"[..])
        );
        assert_eq!(split_input(b"\n{}"), ("".into(), &b"{}"[..]));
        assert_eq!(split_input(b"{}"), ("".into(), &b"{}"[..]));
        assert_eq!(split_input(b""), ("".into(), &b""[..]));
    }
}
