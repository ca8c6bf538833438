//! API tokens: `Authorization: Bearer <token>`; only the SHA-256 of a token is stored.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use axum::http::{HeaderMap, StatusCode};
use ring::rand::SecureRandom;
use vigil_core::release::{ApiToken, Role};
use vigil_core::text::hex;

use crate::error::ApiError;

/// Length of a token's secret part, in bytes (shown as hex).
const SECRET_BYTES: usize = 24;

/// Hex SHA-256 of a token, as stored.
pub fn hash_token(token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    hex(digest.as_ref())
}

/// A new random token (`vgl_` and 48 hex digits).
pub fn new_token() -> Result<String, ApiError> {
    new_secret("vgl_")
}

/// A new random id of a page session (`vgs_` and 48 hex digits): what the session cookie holds.
pub fn new_session_id() -> Result<String, ApiError> {
    new_secret("vgs_")
}

fn new_secret(prefix: &str) -> Result<String, ApiError> {
    let mut secret = [0u8; SECRET_BYTES];
    ring::rand::SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| ApiError::internal("the system random generator failed"))?;
    Ok(format!("{prefix}{}", hex(&secret)))
}

/// Tokens already looked up, by hash, each kept for the rest of the clock second it was read
/// in: a busy sender is looked up once a second, and a token revoked elsewhere (by
/// `vigil token revoke`, or another replica) is refused within a second. A revocation through
/// this server's API forgets the token at once.
#[derive(Debug, Default)]
pub struct TokenCache {
    known: Mutex<HashMap<String, (ApiToken, i64)>>,
}

impl TokenCache {
    /// The token with this hash if it was read during second `now`.
    pub fn get(&self, hash: &str, now: i64) -> Option<ApiToken> {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        match known.get(hash) {
            Some((token, read_at)) if *read_at == now => Some(token.clone()),
            Some(_) => {
                known.remove(hash);
                None
            }
            None => None,
        }
    }

    /// Keeps a token read from the store during second `now`.
    pub fn put(&self, token: ApiToken, now: i64) {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        // Entries of earlier seconds are never used again.
        known.retain(|_, (_, read_at)| *read_at == now);
        known.insert(token.hash.clone(), (token, now));
    }

    /// Forgets a token (it was just revoked).
    pub fn forget(&self, hash: &str) {
        self.known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(hash);
    }
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing api token: send `Authorization: Bearer <token>`",
            )
        })?
        .to_str()
        .map_err(|_| ApiError::new(StatusCode::UNAUTHORIZED, "authorization header is not text"))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "authorization header must be `Bearer <token>`",
            )
        })?;
    Ok(token.trim())
}

/// Refuses a revoked token.
pub fn require_not_revoked(token: &ApiToken) -> Result<(), ApiError> {
    if token.revoked_at.is_some() {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "api token was revoked",
        ));
    }
    Ok(())
}

/// Refuses a token whose role does not allow `needed`.
pub fn require(token: &ApiToken, needed: Role) -> Result<(), ApiError> {
    if token.role.allows(needed) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        format!(
            "token {:?} has role {}; this needs {}",
            token.name,
            token.role.as_str(),
            needed.as_str()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(hash: &str) -> ApiToken {
        ApiToken {
            id: 1,
            name: "ci".to_owned(),
            role: Role::Ingest,
            hash: hash.to_owned(),
            created_at: 0,
            revoked_at: None,
        }
    }

    #[test]
    fn cached_tokens_last_until_the_clock_second_changes_or_they_are_forgotten() {
        let cache = TokenCache::default();
        cache.put(token("aa"), 100);
        cache.put(token("bb"), 100);
        assert_eq!(cache.get("aa", 100), Some(token("aa")));
        assert_eq!(cache.get("aa", 101), None);
        assert_eq!(cache.get("aa", 100), None, "an expired entry is dropped");
        cache.forget("bb");
        assert_eq!(cache.get("bb", 100), None);
        cache.put(token("cc"), 100);
        cache.put(token("dd"), 102);
        assert_eq!(cache.get("cc", 100), None, "older seconds are cleared");
        assert_eq!(cache.get("dd", 102), Some(token("dd")));
    }

    #[test]
    fn session_ids_are_random_and_unlike_tokens() {
        let session = new_session_id().unwrap();
        assert!(session.starts_with("vgs_"), "{session}");
        assert_eq!(session.len(), 4 + 2 * SECRET_BYTES);
        assert_ne!(session, new_session_id().unwrap());
    }

    #[test]
    fn tokens_are_random_and_hash_hex() {
        let first = new_token().unwrap();
        let second = new_token().unwrap();
        assert_ne!(first, second);
        assert_eq!(first.len(), 4 + 2 * SECRET_BYTES);
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
