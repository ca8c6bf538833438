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
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
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
            StoreError::UnknownRelease { .. } | StoreError::UnknownToken { .. } => {
                ApiError::not_found(error.to_string())
            }
            StoreError::ReleaseExists { .. } | StoreError::StateConflict { .. } => {
                ApiError::conflict(error.to_string())
            }
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

impl From<vigil_deploy::TransitionError> for ApiError {
    fn from(error: vigil_deploy::TransitionError) -> ApiError {
        ApiError::conflict(error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.message }));
        (self.status, body).into_response()
    }
}
