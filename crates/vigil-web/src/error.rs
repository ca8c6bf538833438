//! API errors: a status code and one lowercase sentence saying what was wrong.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use vigil_store::StoreError;

/// An error answer of the API: `{"error": "..."}` with its status.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Seconds after which a refused caller may try again (`Retry-After`), when the server
    /// was busy rather than the request wrong.
    pub retry_after_seconds: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            retry_after_seconds: None,
        }
    }

    /// The server is busy with as much of this kind of work as it takes at once: 503 with
    /// `Retry-After`.
    pub fn busy(message: impl Into<String>, retry_after_seconds: u32) -> ApiError {
        ApiError {
            retry_after_seconds: Some(retry_after_seconds),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }

    /// The request is larger than a limit: 413, the message naming the limit.
    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match &error {
            StoreError::UnknownRelease { .. }
            | StoreError::UnknownToken { .. }
            | StoreError::UnknownModel { .. }
            | StoreError::UnknownSignature { .. } => ApiError::not_found(error.to_string()),
            StoreError::ReleaseExists { .. }
            | StoreError::StateConflict { .. }
            | StoreError::ModelPromoted { .. }
            | StoreError::NothingToRollBack => ApiError::conflict(error.to_string()),
            _ => {
                tracing::error!(%error, "store call failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("store unavailable: {error}"),
                )
            }
        }
    }
}

/// A release's window the guard cannot give: its settings are unreadable (which admission
/// prevents, so the server's fault), its window cannot be assembled (a conflict with its
/// state), or the store failed.
impl From<vigil_guard::GuardError> for ApiError {
    fn from(error: vigil_guard::GuardError) -> ApiError {
        match error {
            vigil_guard::GuardError::Store(store) => ApiError::from(store),
            vigil_guard::GuardError::Assemble(assemble) => ApiError::conflict(assemble.to_string()),
            vigil_guard::GuardError::Transition(transition) => ApiError::from(transition),
            settings @ vigil_guard::GuardError::Settings { .. } => {
                ApiError::internal(settings.to_string())
            }
        }
    }
}

impl From<vigil_core::validate::Invalid> for ApiError {
    fn from(error: vigil_core::validate::Invalid) -> ApiError {
        ApiError::bad_request(error.to_string())
    }
}

impl From<vigil_deploy::DeployError> for ApiError {
    fn from(error: vigil_deploy::DeployError) -> ApiError {
        if error.is_conflict() {
            return ApiError::conflict(error.to_string());
        }
        ApiError::bad_request(error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.message }));
        let mut response = (self.status, body).into_response();
        if let Some(seconds) = self.retry_after_seconds {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(seconds),
            );
        }
        response
    }
}
