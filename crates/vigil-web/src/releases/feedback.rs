//! Feedback routes: a person says whether a release's outcome was right.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use vigil_core::release::{ApiToken, Feedback, FeedbackKind, Role};

use super::records::load;
use crate::error::ApiError;
use crate::request::parse_request;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackBody {
    kind: FeedbackKind,
    #[serde(default)]
    note: String,
}

pub async fn add_feedback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Feedback>), ApiError> {
    let token = state.authorize(&headers, Role::Operator).await?;
    let request: FeedbackBody = parse_request(body).await?;
    let feedback = record_feedback(&state, &token, id, request.kind, request.note).await?;
    Ok((StatusCode::CREATED, Json(feedback)))
}

/// Stores a person's feedback on a release (operators only) and returns it; the release layer
/// checks the note ([`vigil_deploy::requests::new_feedback`]) before the release is read.
pub(crate) async fn record_feedback(
    state: &AppState,
    token: &ApiToken,
    id: String,
    kind: FeedbackKind,
    note: String,
) -> Result<Feedback, ApiError> {
    crate::auth::require(token, Role::Operator)?;
    let feedback = vigil_deploy::requests::new_feedback(
        id.clone(),
        kind,
        note,
        token.name.clone(),
        state.clock.now(),
    )?;
    load(state, id).await?;
    let stored = feedback.clone();
    state
        .blocking(move |store| Ok(store.add_feedback(&stored)?))
        .await?;
    Ok(feedback)
}

pub async fn list_feedback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Vec<Feedback>>, ApiError> {
    state.authorize(&headers, Role::Viewer).await?;
    let found = state
        .blocking(move |store| Ok(store.feedback(&id)?))
        .await?;
    Ok(Json(found))
}
