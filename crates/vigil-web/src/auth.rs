//! API tokens: `Authorization: Bearer <token>`; only the SHA-256 of a token is stored.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::{HeaderMap, StatusCode};
use ring::rand::SecureRandom;
use vigil_core::release::{ApiToken, Role};

use crate::error::ApiError;

/// Length of a token's secret part, in bytes (shown as hex).
const SECRET_BYTES: usize = 24;

/// Hex SHA-256 of a token, as stored.
pub fn hash_token(token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    to_hex(digest.as_ref())
}

/// A new random token (`vgl_` and 48 hex digits).
pub fn new_token() -> Result<String, ApiError> {
    let mut secret = [0u8; SECRET_BYTES];
    ring::rand::SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| ApiError::internal("the system random generator failed"))?;
    Ok(format!("vgl_{}", to_hex(&secret)))
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(DIGITS[usize::from(byte >> 4)] as char);
        text.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    text
}

/// Tokens already looked up, by hash (tokens are never changed once created).
#[derive(Debug, Default)]
pub struct TokenCache {
    known: Mutex<HashMap<String, ApiToken>>,
}

impl TokenCache {
    pub fn get(&self, hash: &str) -> Option<ApiToken> {
        self.known
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(hash)
            .cloned()
    }

    pub fn put(&self, token: ApiToken) {
        self.known
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(token.hash.clone(), token);
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

    #[test]
    fn tokens_are_random_and_hash_to_hex() {
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
