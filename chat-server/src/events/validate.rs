//! Input rules for client events. Every check runs before any side effect, so
//! a refused event changes nothing.

use serde::de::DeserializeOwned;
use serde_json::Value;
use socketioxide::{adapter::Adapter, extract::SocketRef};

use super::client_event::{ClientEvent, ForEachEvent};
use crate::protocol::{
    AiQueryRequest, ChatError, ErrorCode, JoinRequest, LeaveRequest, MessageRequest, ResumeRequest,
};

pub const MAX_ROOM_LEN: usize = 128;
pub const MAX_TEXT_BYTES: usize = 8 * 1024;
pub const MAX_PROMPT_BYTES: usize = 32 * 1024;
pub const MAX_CLIENT_ID_LEN: usize = 128;

/// `join {room}`, decoded and checked.
pub fn join<E: std::fmt::Display>(data: Result<Value, E>) -> Result<JoinRequest, ChatError> {
    let request: JoinRequest = payload(data, "{room: string}")?;
    room_name(&request.room)?;
    Ok(request)
}

/// `leave {room}`, decoded and checked.
pub fn leave<E: std::fmt::Display>(data: Result<Value, E>) -> Result<LeaveRequest, ChatError> {
    let request: LeaveRequest = payload(data, "{room: string}")?;
    room_name(&request.room)?;
    Ok(request)
}

/// `message {room, text, clientId?}`, decoded and checked.
pub fn message<E: std::fmt::Display>(data: Result<Value, E>) -> Result<MessageRequest, ChatError> {
    let request: MessageRequest = payload(data, "{room: string, text: string, clientId?: string}")?;
    room_name(&request.room)?;
    text("text", &request.text, MAX_TEXT_BYTES)?;
    client_id(request.client_id.as_deref())?;
    Ok(request)
}

/// `ai-query {room, prompt}`, decoded and checked.
pub fn ai_query<E: std::fmt::Display>(data: Result<Value, E>) -> Result<AiQueryRequest, ChatError> {
    let request: AiQueryRequest = payload(data, "{room: string, prompt: string}")?;
    room_name(&request.room)?;
    text("prompt", &request.prompt, MAX_PROMPT_BYTES)?;
    Ok(request)
}

/// `resume {room, after}`, decoded and checked.
pub fn resume<E: std::fmt::Display>(data: Result<Value, E>) -> Result<ResumeRequest, ChatError> {
    let request: ResumeRequest = payload(data, "{room: string, after: non-negative integer}")?;
    room_name(&request.room)?;
    Ok(request)
}

/// The decoding and checks of `event` on a raw payload, as its handler runs
/// them before touching anything (for the fuzzer and its regression corpus).
/// The payload is JSON text, as a Socket.IO packet carries it. An event that
/// is not in the table passes: the server ignores it.
pub fn check_event(event: &str, payload: &[u8]) -> Result<(), ChatError> {
    struct Check<'a> {
        event: &'a str,
        payload: &'a [u8],
        outcome: Result<(), ChatError>,
    }
    impl ForEachEvent for Check<'_> {
        fn event<E: ClientEvent>(&mut self, _: E) {
            if E::NAME == self.event {
                let data = serde_json::from_slice::<Value>(self.payload).map_err(|e| e.to_string());
                self.outcome = E::validate(data).map(drop);
            }
        }
    }
    let mut check = Check {
        event,
        payload,
        outcome: Ok(()),
    };
    super::each(&mut check);
    check.outcome
}

/// The payload, which must be a JSON object, decoded into the event's type;
/// otherwise `bad_request` saying what was expected and what was wrong.
pub fn payload<T: DeserializeOwned, E: std::fmt::Display>(
    data: Result<Value, E>,
    shape: &str,
) -> Result<T, ChatError> {
    let bad = |detail: String| {
        // At most 200 bytes of the detail, cut at a character boundary (the
        // detail may quote the client's multi-byte text).
        let cut = (0..=detail.len().min(200))
            .rev()
            .find(|&at| detail.is_char_boundary(at))
            .unwrap_or(0);
        let detail = &detail[..cut];
        ChatError::new(ErrorCode::BadRequest, format!("expected {shape}: {detail}"))
    };
    match data {
        Ok(value @ Value::Object(_)) => {
            serde_json::from_value(value).map_err(|e| bad(e.to_string()))
        }
        Ok(_) => Err(bad("the payload is not an object".into())),
        Err(error) => Err(bad(error.to_string())),
    }
}

/// 1-128 characters of `[A-Za-z0-9._:-]`.
pub fn room_name(room: &str) -> Result<(), ChatError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-');
    if room.is_empty() || room.len() > MAX_ROOM_LEN || !room.chars().all(allowed) {
        return Err(ChatError::new(
            ErrorCode::InvalidRoom,
            format!("room names are 1-{MAX_ROOM_LEN} characters of A-Z a-z 0-9 . _ : -"),
        ));
    }
    Ok(())
}

/// Non-empty and at most `max_bytes` of UTF-8.
pub fn text(what: &str, value: &str, max_bytes: usize) -> Result<(), ChatError> {
    if value.is_empty() {
        return Err(ChatError::new(
            ErrorCode::BadRequest,
            format!("{what} must not be empty"),
        ));
    }
    if value.len() > max_bytes {
        return Err(ChatError::new(
            ErrorCode::TooLarge,
            format!("{what} is {} bytes; the limit is {max_bytes}", value.len()),
        ));
    }
    Ok(())
}

/// An optional client-chosen id, at most 128 bytes.
pub fn client_id(value: Option<&str>) -> Result<(), ChatError> {
    match value {
        Some(id) if id.len() > MAX_CLIENT_ID_LEN => Err(ChatError::new(
            ErrorCode::TooLarge,
            format!("clientId is over {MAX_CLIENT_ID_LEN} bytes"),
        )),
        _ => Ok(()),
    }
}

/// The socket has joined `room`.
pub fn joined<A: Adapter>(socket: &SocketRef<A>, room: &str) -> Result<(), ChatError> {
    if socket.rooms().iter().any(|r| r == room) {
        Ok(())
    } else {
        Err(ChatError::new(
            ErrorCode::NotJoined,
            format!("join {room} first"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_event_runs_each_events_rules() {
        assert!(check_event("join", br#"{"room":"a"}"#).is_ok());
        assert!(check_event("message", br#"{"room":"a","text":"hi"}"#).is_ok());
        assert!(check_event("resume", br#"{"room":"a","after":3}"#).is_ok());
        let code = |event, payload: &[u8]| check_event(event, payload).unwrap_err().code;
        assert_eq!(code("join", b"not json"), ErrorCode::BadRequest);
        assert_eq!(code("leave", br#"{"room":""}"#), ErrorCode::InvalidRoom);
        assert_eq!(
            code("message", br#"{"room":"a","text":""}"#),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code("resume", br#"{"room":"a","after":-1}"#),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code("ai-query", br#"{"room":"a b","prompt":"x"}"#),
            ErrorCode::InvalidRoom
        );
    }

    #[test]
    fn every_event_of_the_table_checks_its_payload() {
        for event in crate::events::names() {
            for bad in [&b"null"[..], b"[]", b"not json", b"{}"] {
                let refused = check_event(event, bad).map_err(|e| e.code);
                assert_eq!(refused, Err(ErrorCode::BadRequest), "{event} {bad:?}");
            }
        }
        // The server ignores an event it has no handler for.
        assert!(check_event("no-such-event", b"not json").is_ok());
    }

    #[test]
    fn long_details_are_cut_at_a_character_boundary() {
        // Found by `make fuzz`: serde quotes the bad value, and 200 bytes fell
        // inside a 3-byte character.
        for pad in 170..=200 {
            let after = format!("{}{}", "_".repeat(pad), "ッ".repeat(50));
            let payload = serde_json::json!({"room": "a", "after": after}).to_string();
            let error = check_event("resume", payload.as_bytes()).unwrap_err();
            assert_eq!(error.code, ErrorCode::BadRequest);
            assert!(error.message.len() < 300);
        }
    }

    #[test]
    fn room_names() {
        for ok in ["a", "team-42:support", "A.b_c", &"x".repeat(128)] {
            assert!(room_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "has space",
            "slash/",
            "ünïcode",
            "new\nline",
            &"x".repeat(129),
        ] {
            assert_eq!(
                room_name(bad).unwrap_err().code,
                ErrorCode::InvalidRoom,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn text_limits_count_bytes() {
        assert!(text("text", &"a".repeat(MAX_TEXT_BYTES), MAX_TEXT_BYTES).is_ok());
        let over = text("text", &"a".repeat(MAX_TEXT_BYTES + 1), MAX_TEXT_BYTES).unwrap_err();
        assert_eq!(over.code, ErrorCode::TooLarge);
        // 4-byte characters: 2049 of them are 8196 bytes.
        assert!(text("text", &"🙂".repeat(2049), MAX_TEXT_BYTES).is_err());
        assert_eq!(
            text("text", "", MAX_TEXT_BYTES).unwrap_err().code,
            ErrorCode::BadRequest
        );
    }

    #[test]
    fn client_ids_are_bounded() {
        assert!(client_id(None).is_ok());
        assert!(client_id(Some("abc")).is_ok());
        assert_eq!(
            client_id(Some(&"x".repeat(129))).unwrap_err().code,
            ErrorCode::TooLarge
        );
    }

    #[derive(serde::Deserialize, Debug)]
    struct Room {
        #[allow(dead_code)]
        room: String,
    }

    fn decode(value: Value) -> Result<Room, ChatError> {
        payload::<Room, &str>(Ok(value), "{room: string}")
    }

    #[test]
    fn payloads_must_be_objects_of_the_right_shape() {
        use serde_json::json;
        assert!(decode(json!({"room": "a"})).is_ok());
        for bad in [
            json!(["a"]),
            json!("a"),
            json!(null),
            json!(1),
            json!({}),
            json!({"room": 1}),
        ] {
            let error = decode(bad.clone()).unwrap_err();
            assert_eq!(error.code, ErrorCode::BadRequest, "{bad}");
            assert!(
                error.message.starts_with("expected {room: string}"),
                "{}",
                error.message
            );
        }
        let missing = decode(json!({})).unwrap_err();
        assert!(
            missing.message.contains("missing field `room`"),
            "{}",
            missing.message
        );
        let absent = payload::<Room, &str>(Err("no payload"), "{room: string}").unwrap_err();
        assert_eq!(absent.code, ErrorCode::BadRequest);
    }
}
