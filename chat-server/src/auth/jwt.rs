//! JWT verification with keys read once from files at start-up (never fetched
//! from the network): an HS256 shared secret, or RS256/ES256 public keys from
//! a PEM file or a JWKS file. Checks the signature, `exp` (required, with a
//! small leeway), `nbf`, and the issuer and audience when configured; `sub`
//! is required and becomes the user's identity.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};
use jsonwebtoken::{
    Algorithm, DecodingKey, Validation,
    errors::ErrorKind,
    jwk::{AlgorithmParameters, EllipticCurve, JwkSet},
};
use serde_json::Value;

use super::rooms::RoomGrants;
use crate::secret::Secret;

/// Longest token looked at; longer ones are refused unread.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// HS256 secrets shorter than this are refused at start-up (RFC 7518 3.2:
/// the key must be at least as long as the hash output).
pub const MIN_SECRET_BYTES: usize = 32;

/// A verified token: who, which rooms, until when.
#[derive(Debug, Clone)]
pub struct Claims {
    pub sub: String,
    pub rooms: RoomGrants,
    /// Seconds since the Unix epoch.
    pub exp: u64,
}

/// Why a token was refused. The text goes to the client in `connect_error`;
/// it never contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("missing token: send it as auth.token or an Authorization: Bearer header")]
    Missing,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet (nbf)")]
    NotYetValid,
    #[error("wrong audience")]
    Audience,
    #[error("wrong issuer")]
    Issuer,
    #[error("bad signature or unknown key")]
    Signature,
    #[error("algorithm not accepted")]
    Algorithm,
    #[error("missing claim {0}")]
    MissingClaim(String),
    #[error("malformed token")]
    Malformed,
}

struct Key {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

pub struct Verifier {
    keys: Vec<Key>,
    issuer: Option<String>,
    audience: Option<String>,
    rooms_claim: String,
    leeway: Duration,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys.len())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("rooms_claim", &self.rooms_claim)
            .finish()
    }
}

/// Where the verification keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// An HS256 secret from the environment (fixed for the process's life).
    Secret(Secret),
    /// A file holding the HS256 secret.
    SecretFile(PathBuf),
    /// A file holding one PEM public key or a JWKS document.
    PublicKeyFile(PathBuf),
}

impl KeySource {
    /// The key file, if the keys come from one (and may be rotated there).
    pub fn file(&self) -> Option<&Path> {
        match self {
            Self::Secret(_) => None,
            Self::SecretFile(path) | Self::PublicKeyFile(path) => Some(path),
        }
    }
}

#[derive(Debug, Clone)]
pub struct VerifierConfig {
    pub keys: KeySource,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub rooms_claim: String,
    pub leeway: Duration,
}

fn secret_key(secret: &Secret) -> anyhow::Result<Vec<Key>> {
    if secret.expose().len() < MIN_SECRET_BYTES {
        bail!("the HS256 secret must be at least {MIN_SECRET_BYTES} bytes long");
    }
    Ok(vec![Key {
        kid: None,
        algorithm: Algorithm::HS256,
        key: DecodingKey::from_secret(secret.expose().as_bytes())?,
    }])
}

impl Verifier {
    /// Reads the keys (from their file, if any) and checks them.
    pub fn new(config: VerifierConfig) -> anyhow::Result<Self> {
        let keys = match &config.keys {
            KeySource::Secret(secret) => secret_key(secret)?,
            KeySource::SecretFile(path) => secret_key(
                &Secret::from_file(path)
                    .with_context(|| format!("reading the JWT secret file {}", path.display()))?,
            )?,
            KeySource::PublicKeyFile(path) => {
                let text = std::fs::read(path).with_context(|| {
                    format!("reading the JWT public key file {}", path.display())
                })?;
                public_keys(&text)
                    .with_context(|| format!("the JWT public key file {}", path.display()))?
            }
        };
        Ok(Self {
            keys,
            issuer: config.issuer,
            audience: config.audience,
            rooms_claim: config.rooms_claim,
            leeway: config.leeway,
        })
    }

    pub fn leeway(&self) -> Duration {
        self.leeway
    }

    /// Verifies `token` and reads its claims. Never panics, whatever the input.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        let candidates: Vec<&Key> = self
            .keys
            .iter()
            .filter(|k| k.algorithm == header.alg)
            .filter(|k| match (&header.kid, &k.kid) {
                (Some(wanted), Some(kid)) => wanted == kid,
                _ => true,
            })
            .collect();
        if candidates.is_empty() {
            return Err(if self.keys.iter().any(|k| k.algorithm == header.alg) {
                TokenError::Signature
            } else {
                TokenError::Algorithm
            });
        }
        let mut last = TokenError::Signature;
        for key in candidates {
            match jsonwebtoken::decode::<Value>(token, &key.key, &self.validation(key.algorithm)) {
                Ok(data) => return self.claims(data.claims),
                Err(error) => {
                    last = match error.kind() {
                        ErrorKind::InvalidSignature => TokenError::Signature,
                        ErrorKind::ExpiredSignature => TokenError::Expired,
                        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                        ErrorKind::InvalidAudience => TokenError::Audience,
                        ErrorKind::InvalidIssuer => TokenError::Issuer,
                        ErrorKind::InvalidAlgorithm => TokenError::Algorithm,
                        ErrorKind::MissingRequiredClaim(claim) => {
                            TokenError::MissingClaim(claim.clone())
                        }
                        _ => TokenError::Malformed,
                    };
                    // Only a bad signature means another key might fit.
                    if last != TokenError::Signature {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        match &self.issuer {
            Some(issuer) => {
                validation.set_issuer(&[issuer]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        validation
    }

    fn claims(&self, claims: Value) -> Result<Claims, TokenError> {
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 256)
            .ok_or_else(|| TokenError::MissingClaim("sub".into()))?;
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or_else(|| TokenError::MissingClaim("exp".into()))?;
        Ok(Claims {
            sub: sub.to_owned(),
            rooms: RoomGrants::from_claim(claims.get(&self.rooms_claim)),
            exp,
        })
    }
}

/// Public keys from a PEM file (one RSA or EC P-256 public key) or a JWKS file
/// (`{"keys": [...]}`; RSA keys are RS256, P-256 keys ES256, others skipped).
fn public_keys(text: &[u8]) -> anyhow::Result<Vec<Key>> {
    let trimmed = text.trim_ascii_start();
    if trimmed.starts_with(b"{") {
        let set: JwkSet = serde_json::from_slice(trimmed).context("not a JWKS document")?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            let algorithm = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                    Algorithm::ES256
                }
                _ => continue,
            };
            let key = DecodingKey::from_jwk(jwk).context("a JWKS key could not be read")?;
            keys.push(Key {
                kid: jwk.common.key_id.clone(),
                algorithm,
                key,
            });
        }
        if keys.is_empty() {
            bail!("the JWKS holds no RSA or P-256 key");
        }
        return Ok(keys);
    }
    if let Ok(key) = DecodingKey::from_rsa_pem(text) {
        return Ok(vec![Key {
            kid: None,
            algorithm: Algorithm::RS256,
            key,
        }]);
    }
    if let Ok(key) = DecodingKey::from_ec_pem(text) {
        return Ok(vec![Key {
            kid: None,
            algorithm: Algorithm::ES256,
            key,
        }]);
    }
    bail!("neither a JWKS document nor an RSA or EC public key in PEM")
}
