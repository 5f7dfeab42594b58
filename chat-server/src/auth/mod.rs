//! Who may connect and which rooms they may use. With auth `required`, every
//! Socket.IO handshake carries a JWT (`auth.token`, or an `Authorization:
//! Bearer` header for clients that cannot set `auth`); its `sub` becomes the
//! sender of the user's messages and its rooms claim bounds `join`, `resume`,
//! `message` and `ai-query`. When the token expires the server emits
//! `auth-expired` and disconnects the socket. With auth `off` (the demo
//! default) anyone may use any room and messages come from the socket id.

pub mod jwt;
pub mod rooms;
pub mod rotation;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::bail;
use axum::http::{HeaderMap, header};
use serde_json::Value;
use tokio::time::Instant;

use self::{
    jwt::{KeySource, TokenError, VerifierConfig},
    rooms::RoomGrants,
    rotation::Keys,
};
use crate::{
    config::{AuthMode, Config},
    limits::{Bucket, Limits, rate_limited},
    protocol::{ChatError, ErrorCode},
    secret::Secret,
};

/// Environment variable holding the HS256 secret when no secret file is given.
use chatscale_contract::env::JWT_SECRET as JWT_SECRET_ENV;

/// The event a socket receives just before it is disconnected because its
/// token expired.
pub const AUTH_EXPIRED_EVENT: &str = "auth-expired";

/// `--auth` when given; otherwise `required` when a JWT key is configured.
pub fn mode(config: &Config) -> AuthMode {
    config.auth.unwrap_or(
        if config.jwt_secret_file.is_some()
            || config.jwt_public_key_file.is_some()
            || Secret::from_env(JWT_SECRET_ENV).is_some()
        {
            AuthMode::Required
        } else {
            AuthMode::Off
        },
    )
}

/// How the server authenticates: `None` is auth off.
#[derive(Debug)]
pub struct Auth {
    keys: Option<Arc<Keys>>,
}

impl Auth {
    pub fn off() -> Self {
        Self { keys: None }
    }

    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let keys = match (&config.jwt_secret_file, &config.jwt_public_key_file) {
            (Some(path), _) => Some(KeySource::SecretFile(path.clone())),
            (None, Some(path)) => Some(KeySource::PublicKeyFile(path.clone())),
            (None, None) => Secret::from_env(JWT_SECRET_ENV).map(KeySource::Secret),
        };
        let mode = mode(config);
        match (mode, keys) {
            (AuthMode::Off, keys) => {
                if keys.is_some() {
                    tracing::warn!("a JWT key is configured but --auth off: tokens are ignored");
                }
                Ok(Self::off())
            }
            (AuthMode::Required, None) => bail!(
                "--auth required needs a key: --jwt-secret-file, --jwt-public-key-file or {JWT_SECRET_ENV}"
            ),
            (AuthMode::Required, Some(keys)) => {
                let keys = Arc::new(Keys::load(VerifierConfig {
                    keys,
                    issuer: config.jwt_issuer.clone(),
                    audience: config.jwt_audience.clone(),
                    rooms_claim: config.jwt_rooms_claim.clone(),
                    leeway: config.jwt_leeway,
                })?);
                keys.watch(config.jwt_key_reload);
                Ok(Self { keys: Some(keys) })
            }
        }
    }

    /// The session of a new connection, or why it is refused. `auth` is the
    /// handshake's auth payload; `headers` those of the handshake request.
    pub fn authenticate(
        &self,
        auth: Option<&Value>,
        headers: &HeaderMap,
        limits: &Arc<Limits>,
    ) -> Result<Session, Refusal> {
        let Some(keys) = &self.keys else {
            return Ok(Session::new(None, RoomGrants::all(), None, limits));
        };
        let verifier = keys.current();
        let token = bearer_token(auth, headers).ok_or(Refusal::Token(TokenError::Missing))?;
        let claims = verifier.verify(token).map_err(Refusal::Token)?;
        let expires = UNIX_EPOCH + Duration::from_secs(claims.exp) + verifier.leeway();
        Ok(Session::new(
            Some(claims.sub),
            claims.rooms,
            Some(expires),
            limits,
        ))
    }
}

/// `auth.token` if it is a string, else the `Authorization: Bearer` header.
fn bearer_token<'a>(auth: Option<&'a Value>, headers: &'a HeaderMap) -> Option<&'a str> {
    if let Some(token) = auth.and_then(|a| a.get("token")).and_then(Value::as_str) {
        return Some(token.trim());
    }
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Why a handshake was refused: the text is the `connect_error` message.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("unauthorized: {0}")]
    Token(TokenError),
    #[error(
        "rate_limited: too many connections from this address; retry after {} ms",
        .0.as_millis().max(1)
    )]
    Connections(Duration),
}

/// What one socket may do, and its event budget. Kept in the socket's extensions.
#[derive(Debug)]
pub struct Session {
    /// The token's `sub`; `None` with auth off.
    pub user: Option<String>,
    rooms: RoomGrants,
    /// When the token (plus leeway) runs out.
    pub expires: Option<SystemTime>,
    limits: Arc<Limits>,
    bucket: Mutex<Option<Bucket>>,
    /// Refusals it may still get before it is cut off: `flood_disconnect_after`
    /// at once, refilled over 10 seconds. `None`: never cut off.
    strikes: Mutex<Option<Bucket>>,
    /// 0: fine; 1: flooding, to be cut off; 2: cut off.
    cut_off: AtomicU8,
}

impl Session {
    fn new(
        user: Option<String>,
        rooms: RoomGrants,
        expires: Option<SystemTime>,
        limits: &Arc<Limits>,
    ) -> Self {
        Self {
            user,
            rooms,
            expires,
            bucket: Mutex::new(limits.socket_bucket(Instant::now())),
            strikes: Mutex::new(limits.strike_bucket(Instant::now())),
            limits: limits.clone(),
            cut_off: AtomicU8::new(0),
        }
    }

    /// Refuses a room the token does not grant.
    pub fn may_use(&self, room: &str) -> Result<(), ChatError> {
        if self.rooms.allows(room) {
            Ok(())
        } else {
            Err(ChatError::new(
                ErrorCode::Forbidden,
                format!("the token does not grant room {room}"),
            ))
        }
    }

    /// Who sends this socket's messages and owns its AI answers: the token's
    /// `sub`, or the socket id with auth off.
    pub fn sender(&self, socket_id: &str) -> String {
        self.user.clone().unwrap_or_else(|| socket_id.to_owned())
    }

    /// Charges one event to this socket and its user; `Err` when over a limit.
    pub fn charge_event(&self, now: Instant) -> Result<(), ChatError> {
        let own = match &mut *self.bucket.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(bucket) => bucket
                .take(now)
                .map_err(|wait| rate_limited("too many events from this socket", wait)),
            None => Ok(()),
        };
        let result = own.and_then(|()| match &self.user {
            Some(user) => self.limits.user_event(user, now),
            None => Ok(()),
        });
        if result.is_err()
            && let Some(strikes) = &mut *self.strikes.lock().unwrap_or_else(|e| e.into_inner())
            && strikes.take(now).is_err()
        {
            let _ = self
                .cut_off
                .compare_exchange(0, 1, Ordering::Relaxed, Ordering::Relaxed);
        }
        result
    }

    /// Has this socket kept sending past its limit (more refusals than
    /// `--flood-disconnect-after` at once, or than that many every 10 seconds)?
    /// True once: the caller disconnects it.
    pub fn cut_off(&self) -> bool {
        self.cut_off
            .compare_exchange(1, 2, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_token_comes_from_auth_or_the_authorization_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            bearer_token(Some(&json!({"token": "a.b.c"})), &headers),
            Some("a.b.c")
        );
        assert_eq!(bearer_token(None, &headers), None);
        headers.insert(header::AUTHORIZATION, "Bearer x.y.z".parse().unwrap());
        assert_eq!(bearer_token(None, &headers), Some("x.y.z"));
        assert_eq!(
            bearer_token(Some(&json!({"token": 5})), &headers),
            Some("x.y.z")
        );
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer_token(None, &headers), None);
    }

    #[test]
    fn a_socket_that_keeps_flooding_is_cut_off_once() {
        let limits = Arc::new(Limits::new(crate::limits::LimitsConfig {
            events_per_sec: 1,
            events_burst: 1,
            user_events_per_sec: 0,
            flood_disconnect_after: 3,
            connections_per_minute_per_ip: 0,
            max_ai_answers_per_user: 1,
            max_ai_answers_per_room: 1,
            max_rooms_per_socket: 1,
        }));
        let session = Session::new(None, RoomGrants::all(), None, &limits);
        let now = Instant::now();
        assert!(session.charge_event(now).is_ok());
        for _ in 0..3 {
            assert!(session.charge_event(now).is_err());
            assert!(!session.cut_off(), "three refusals at once are tolerated");
        }
        assert!(session.charge_event(now).is_err());
        assert!(session.cut_off());
        assert!(session.charge_event(now).is_err());
        assert!(!session.cut_off(), "only once");
    }

    #[test]
    fn refusals_say_why_without_the_token() {
        assert_eq!(
            Refusal::Token(TokenError::Expired).to_string(),
            "unauthorized: token expired"
        );
        assert_eq!(
            Refusal::Connections(Duration::from_millis(1500)).to_string(),
            "rate_limited: too many connections from this address; retry after 1500 ms"
        );
    }
}
