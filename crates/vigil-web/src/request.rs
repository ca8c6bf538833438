//! A request's JSON body, parsed strictly: refusals name the path of the bad value.

use crate::error::ApiError;

/// A JSON object body, refused with the path of the bad value. serde reads a struct from an
/// array too, so a body that is not an object is refused first: `[]` would otherwise be a
/// request with every field left out.
pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let first = body.iter().find(|byte| !byte.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(ApiError::bad_request(
            "invalid json: body: expected a JSON object",
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if path == "." || path.is_empty() {
            ApiError::bad_request(format!("invalid json: {inner}"))
        } else {
            ApiError::bad_request(format!("invalid json at {path}: {inner}"))
        }
    })
}

/// Bodies larger than this are parsed on a blocking thread, not on an async worker.
const INLINE_PARSE_BYTES: usize = 64 * 1024;

/// [`parse_body`] of a request's body; a large one on a blocking thread, so that parsing
/// megabytes never holds up the async workers.
pub(crate) async fn parse_request<T>(body: axum::body::Bytes) -> Result<T, ApiError>
where
    T: serde::de::DeserializeOwned + Send + 'static,
{
    if body.len() <= INLINE_PARSE_BYTES {
        return parse_body(&body);
    }
    tokio::task::spawn_blocking(move || parse_body(&body))
        .await
        .map_err(|error| ApiError::internal(format!("parsing task failed: {error}")))?
}
