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
    /// The finding it is about, by its signal's label; none for the release as a whole.
    #[serde(default)]
    signal: Option<String>,
    /// A missed fault's onset, in Unix seconds.
    #[serde(default)]
    onset: Option<i64>,
}

/// What a feedback says: its kind, note, the finding it is about and a missed fault's onset.
#[derive(Debug, Clone)]
pub(crate) struct FeedbackRequest {
    pub kind: FeedbackKind,
    pub note: String,
    pub signal: Option<String>,
    pub onset: Option<i64>,
}

pub async fn add_feedback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Feedback>), ApiError> {
    let token = state.authorize(&headers, Role::Operator).await?;
    let request: FeedbackBody = parse_request(body).await?;
    let said = FeedbackRequest {
        kind: request.kind,
        note: request.note,
        signal: request.signal,
        onset: request.onset,
    };
    let feedback = record_feedback(&state, &token, id, said).await?;
    Ok((StatusCode::CREATED, Json(feedback)))
}

/// Stores a person's feedback on a release (operators only) and returns it; the release layer
/// checks the note ([`vigil_deploy::requests::new_feedback`]) before the release is read, and
/// the finding and onset against the release and its verdicts
/// ([`vigil_deploy::requests::check_feedback_target`]). The app's feature library then learns
/// from it ([`vigil_guard::library::learn_from_feedback`]): a false alarm marks signatures, a
/// confirmed or missed fault drops the ones matching the release.
pub(crate) async fn record_feedback(
    state: &AppState,
    token: &ApiToken,
    id: String,
    request: FeedbackRequest,
) -> Result<Feedback, ApiError> {
    crate::auth::require(token, Role::Operator)?;
    let now = state.clock.now();
    let feedback = Feedback {
        signal: request.signal,
        onset: request.onset,
        ..vigil_deploy::requests::new_feedback(
            id.clone(),
            request.kind,
            request.note,
            token.name.clone(),
            now,
        )?
    };
    let release = load(state, id).await?;
    let stored = feedback.clone();
    state
        .blocking(move |store| {
            let verdicts = store.verdicts(&release.id)?;
            vigil_deploy::requests::check_feedback_target(
                &release,
                &verdicts,
                stored.kind,
                stored.signal.as_deref(),
                stored.onset,
                now,
            )?;
            store.add_feedback(&stored)?;
            // The feedback is stored: a library that cannot learn from it is logged, and the
            // feedback stands (sending it again would store it twice).
            if let Err(error) = vigil_guard::library::learn_from_feedback(store, &release, &stored)
            {
                tracing::error!(release = %release.id, app = %release.spec.app, %error, "feature library could not learn from feedback");
            }
            Ok(())
        })
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
