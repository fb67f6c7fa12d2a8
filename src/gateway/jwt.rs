//! Access tokens: HS256 JSON Web Tokens, with expiry and issuer checked.
//!
//! The signing key is a secret of at least 32 bytes, read from a file or an
//! environment variable (`ordersaga run` makes one for its session). It
//! never appears in a log, a metric or an answer; `Debug` of [`TokenKeys`]
//! prints no key.

use super::token_cache;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use uuid::Uuid;

/// The shortest signing key accepted: HS256 with a shorter key is
/// brute-forceable (RFC 7518 §3.2 asks for at least the hash's size).
pub const MIN_KEY_BYTES: usize = 32;

/// The role that may change products.
pub const ADMIN: &str = "admin";

/// What a token says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// `customer`, and `admin` for the configured administrators.
    pub roles: Vec<String>,
    /// The issuer; checked on every request.
    pub iss: String,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Expires at (seconds since the epoch); checked on every request.
    pub exp: i64,
}

impl Claims {
    /// The user the token speaks for.
    pub fn user_id(&self) -> Option<Uuid> {
        Uuid::parse_str(&self.sub).ok()
    }

    /// Whether the token carries `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// Why a token was refused. Each maps to a 401 with its own code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Past its `exp`.
    #[error("the token has expired")]
    Expired,
    /// Not issued by this gateway's issuer.
    #[error("the token was issued by someone else")]
    WrongIssuer,
    /// Not a well-formed, correctly signed HS256 token.
    #[error("the token is not valid: {0}")]
    Invalid(String),
}

impl TokenError {
    /// The stable problem code.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Expired => "token_expired",
            TokenError::WrongIssuer | TokenError::Invalid(_) => "invalid_token",
        }
    }
}

/// Why a signing key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Too short to be safe.
    #[error(
        "the signing key from {source_name} has {len} bytes; at least {MIN_KEY_BYTES} are needed"
    )]
    TooShort {
        /// Where it came from (a file path or a variable name).
        source_name: String,
        /// Its length.
        len: usize,
    },
    /// The key file cannot be read.
    #[error("cannot read the signing key file {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The keys and rules tokens are made and checked with.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    issuer: String,
    lifetime: Duration,
    /// Names these keys in the verified-token cache.
    cache_id: u128,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("issuer", &self.issuer)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl TokenKeys {
    /// Keys from the secret `key` (named `source_name` in errors), for
    /// tokens from `issuer` that live `lifetime`.
    pub fn new(
        key: &[u8],
        source_name: &str,
        issuer: impl Into<String>,
        lifetime: Duration,
    ) -> Result<Self, KeyError> {
        // Surrounding whitespace of a key file or variable is not key.
        let key = key.trim_ascii();
        if key.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort {
                source_name: source_name.to_string(),
                len: key.len(),
            });
        }
        Ok(Self {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            issuer: issuer.into(),
            lifetime,
            cache_id: Uuid::new_v4().as_u128(),
        })
    }

    /// Keys from the file at `path`.
    pub fn from_file(
        path: &std::path::Path,
        issuer: impl Into<String>,
        lifetime: Duration,
    ) -> Result<Self, KeyError> {
        let key = std::fs::read(path).map_err(|source| KeyError::File {
            path: path.display().to_string(),
            source,
        })?;
        Self::new(&key, &path.display().to_string(), issuer, lifetime)
    }

    /// A random key for one session (`ordersaga run`): tokens die with it.
    pub fn generated(issuer: impl Into<String>, lifetime: Duration) -> Self {
        // Two v4 UUIDs are 244 random bits from the OS generator.
        let mut key = Vec::with_capacity(32);
        key.extend_from_slice(Uuid::new_v4().as_bytes());
        key.extend_from_slice(Uuid::new_v4().as_bytes());
        let issuer = issuer.into();
        Self {
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
            issuer,
            lifetime,
            cache_id: Uuid::new_v4().as_u128(),
        }
    }

    /// How long a token lives.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// A token for `user` with `roles`, issued at `now`.
    pub fn issue(
        &self,
        user: Uuid,
        roles: Vec<String>,
        now: DateTime<Utc>,
    ) -> Result<String, TokenError> {
        let claims = Claims {
            sub: user.to_string(),
            roles,
            iss: self.issuer.clone(),
            iat: now.timestamp(),
            exp: now.timestamp() + self.lifetime.as_secs() as i64,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| TokenError::Invalid(e.to_string()))
    }

    /// The claims of `token` if it is signed with this key, by this issuer,
    /// and not expired. A token this thread verified before is only checked
    /// for expiry ([`super::token_cache`]).
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        self.verify_at(token, Utc::now().timestamp())
    }

    /// [`TokenKeys::verify`] at `now` (seconds since the epoch) for a token
    /// verified before; a first check uses the system clock.
    fn verify_at(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        if let Some(claims) = token_cache::get(self.cache_id, token) {
            if claims.exp < now - LEEWAY as i64 {
                token_cache::forget(token);
                return Err(TokenError::Expired);
            }
            return Ok(claims);
        }
        let claims = self.verify_fully(token)?;
        token_cache::put(self.cache_id, token, &claims);
        Ok(claims)
    }

    /// Signature, issuer and expiry, checked from scratch.
    fn verify_fully(&self, token: &str) -> Result<Claims, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = LEEWAY;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|err| match err.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                jsonwebtoken::errors::ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
                // The library's words name the flaw (signature, base64,
                // JSON) without echoing the token.
                _ => TokenError::Invalid(err.to_string()),
            })
    }
}

/// Seconds a token is still accepted after its `exp`: clocks of one
/// deployment agree to within seconds.
const LEEWAY: u64 = 5;

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> TokenKeys {
        keys_for(secret, "ordersaga-test", 3600)
    }

    /// Keys for `issuer` whose tokens live `seconds`.
    fn keys_for(secret: &str, issuer: &str, seconds: u64) -> TokenKeys {
        TokenKeys::new(
            secret.as_bytes(),
            "test",
            issuer,
            Duration::from_secs(seconds),
        )
        .expect("a long key")
    }

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_token_issued_now_verifies_with_its_claims() {
        let keys = keys(KEY);
        let user = Uuid::new_v4();
        let token = keys
            .issue(user, vec!["customer".into()], Utc::now())
            .unwrap();
        let claims = keys.verify(&token).unwrap();
        assert_eq!(claims.user_id(), Some(user));
        assert!(claims.has_role("customer"));
        assert!(!claims.has_role(ADMIN));
    }

    #[test]
    fn an_expired_token_is_refused_as_expired() {
        let keys = keys(KEY);
        let two_hours_ago = Utc::now() - chrono::TimeDelta::hours(2);
        let token = keys.issue(Uuid::new_v4(), vec![], two_hours_ago).unwrap();
        assert_eq!(keys.verify(&token), Err(TokenError::Expired));
        assert_eq!(TokenError::Expired.code(), "token_expired");
    }

    #[test]
    fn another_key_or_issuer_is_refused() {
        let token = keys(KEY)
            .issue(Uuid::new_v4(), vec![ADMIN.into()], Utc::now())
            .unwrap();
        let other_key = keys("fedcba9876543210fedcba9876543210");
        assert!(matches!(
            other_key.verify(&token),
            Err(TokenError::Invalid(_))
        ));
        let other_issuer = keys_for(KEY, "someone-else", 60);
        assert_eq!(other_issuer.verify(&token), Err(TokenError::WrongIssuer));
    }

    #[test]
    fn a_tampered_token_is_refused() {
        let keys = keys(KEY);
        let token = keys.issue(Uuid::new_v4(), vec![], Utc::now()).unwrap();
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        // Claim the admin role without the key.
        let forged = keys
            .issue(Uuid::new_v4(), vec![ADMIN.into()], Utc::now())
            .unwrap();
        parts[1] = forged.split('.').nth(1).unwrap().to_string();
        let mixed = parts.join(".");
        assert!(matches!(keys.verify(&mixed), Err(TokenError::Invalid(_))));
        assert!(matches!(
            keys.verify("not a token"),
            Err(TokenError::Invalid(_))
        ));
    }

    #[test]
    fn short_keys_are_refused_and_whitespace_is_not_key() {
        let err =
            TokenKeys::new(b"short", "ORDERSAGA_JWT_KEY", "i", Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("ORDERSAGA_JWT_KEY"), "{err}");
        assert!(
            !err.to_string().contains("short"),
            "the key itself is never shown"
        );
        let padded = format!("  {KEY}\n");
        let a = keys(&padded);
        let b = keys(KEY);
        let token = a.issue(Uuid::new_v4(), vec![], Utc::now()).unwrap();
        assert!(b.verify(&token).is_ok());
    }

    #[test]
    fn debug_shows_no_key() {
        let shown = format!("{:?}", keys(KEY));
        assert!(!shown.contains(KEY));
        assert!(shown.contains("ordersaga-test"));
    }

    #[test]
    fn a_remembered_token_is_still_refused_once_it_expires() {
        // Given a token for one minute, verified once (and so remembered),
        let keys = keys_for(KEY, "ordersaga-test", 60);
        let now = Utc::now();
        let token = keys.issue(Uuid::new_v4(), vec![], now).unwrap();
        assert!(keys.verify(&token).is_ok());
        assert!(super::token_cache::get(keys.cache_id, &token).is_some());
        // when it is used again within its life, it is accepted,
        let t = now.timestamp();
        assert!(keys.verify_at(&token, t + 60 + LEEWAY as i64).is_ok());
        // and after its expiry and the leeway, it is refused as expired,
        assert_eq!(
            keys.verify_at(&token, t + 61 + LEEWAY as i64),
            Err(TokenError::Expired)
        );
        // and forgotten: the next check is a full one again.
        assert_eq!(super::token_cache::get(keys.cache_id, &token), None);
    }

    #[test]
    fn a_token_remembered_under_one_key_is_checked_afresh_under_another() {
        let token = keys(KEY)
            .issue(Uuid::new_v4(), vec![ADMIN.into()], Utc::now())
            .unwrap();
        let first = keys(KEY);
        assert!(first.verify(&token).is_ok(), "remembered under `first`");
        let other_key = keys("fedcba9876543210fedcba9876543210");
        assert!(matches!(
            other_key.verify(&token),
            Err(TokenError::Invalid(_))
        ));
        let other_issuer = keys_for(KEY, "someone-else", 60);
        assert_eq!(other_issuer.verify(&token), Err(TokenError::WrongIssuer));
        // A refused token is not remembered: `first` still accepts it from
        // its own entry, and the others still refuse it.
        assert!(first.verify(&token).is_ok());
        assert!(matches!(
            other_key.verify(&token),
            Err(TokenError::Invalid(_))
        ));
    }

    #[test]
    fn the_cache_is_bounded() {
        let keys = keys(KEY);
        for _ in 0..super::token_cache::CAPACITY + 10 {
            let token = keys.issue(Uuid::new_v4(), vec![], Utc::now()).unwrap();
            keys.verify(&token).unwrap();
        }
        assert!(super::token_cache::len() <= super::token_cache::CAPACITY);
    }
}
