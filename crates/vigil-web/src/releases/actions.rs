//! Action routes: a pipeline's batch report and a person's pause, resume, rollback and
//! cancel. The guard layer builds each state change ([`vigil_guard::requests`]); these
//! handlers read the request, load the release and apply the change through the store.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use vigil_core::release::{Action, ApiToken, Release, Role};
use vigil_store::Change;

use super::records::load;
use crate::error::ApiError;
use crate::request::parse_request;
use crate::state::AppState;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployed {
    /// Unix seconds; default now.
    #[serde(default)]
    at: Option<i64>,
    /// Default: the batch's planned hosts.
    #[serde(default)]
    hosts: Option<Vec<String>>,
}

pub async fn batch_deployed(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, index)): Path<(String, u32)>,
    body: axum::body::Bytes,
) -> Result<Json<Release>, ApiError> {
    let token = state.authorize(&headers, Role::Operator).await?;
    let request: Deployed = if body.is_empty() {
        Deployed::default()
    } else {
        parse_request(body).await?
    };
    let release = load(&state, id).await?;
    let shipped_by_executor = is_shipped_by_executor(&state, &release.id).await?;
    vigil_deploy::check_not_executor_report(&release, shipped_by_executor, Action::BatchDeployed)?;
    // A pipeline retries: the same report again changes nothing and answers the release.
    let hosts = request.hosts.as_deref();
    if vigil_deploy::requests::is_repeated_report(&release, index, hosts, request.at)? {
        return Ok(Json(release));
    }
    let now = state.clock.now();
    let batch =
        vigil_deploy::requests::reported_batch(&release, index, request.hosts, request.at, now);
    let change = vigil_guard::requests::batch_change(&release, batch, token.name, now)?;
    Ok(Json(apply(&state, change).await?))
}

/// Whether Vigil's executor ships the release (an execution is stored beside it).
async fn is_shipped_by_executor(state: &AppState, release_id: &str) -> Result<bool, ApiError> {
    let id = release_id.to_owned();
    state
        .blocking(move |store| Ok(store.execution(&id)?.is_some()))
        .await
}

/// Stores a state change with its audit row and notifications; returns the release as stored.
async fn apply(state: &AppState, change: Change) -> Result<Release, ApiError> {
    let (updated, _) = state
        .blocking(move |store| Ok(store.apply(&change)?))
        .await?;
    Ok(updated)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    #[serde(default)]
    reason: Option<String>,
}

async fn act(
    state: AppState,
    headers: HeaderMap,
    id: String,
    body: axum::body::Bytes,
    action: Action,
) -> Result<Json<Release>, ApiError> {
    let token = state.authorize(&headers, Role::Operator).await?;
    let request: ActionBody = if body.is_empty() {
        ActionBody::default()
    } else {
        parse_request(body).await?
    };
    Ok(Json(
        perform(&state, &token, id, action, request.reason).await?,
    ))
}

/// Applies a person's action (pause, resume, roll back, cancel...) to a release: checks the
/// token's role and the reason, has the guard layer build the change
/// ([`vigil_guard::requests::action_change`]), stores it with its audit row and
/// notifications, and returns the release as stored.
pub(crate) async fn perform(
    state: &AppState,
    token: &ApiToken,
    id: String,
    action: Action,
    reason: Option<String>,
) -> Result<Release, ApiError> {
    crate::auth::require(token, Role::Operator)?;
    vigil_deploy::requests::check_reason(reason.as_deref())?;
    let release = load(state, id).await?;
    let shipped_by_executor = is_shipped_by_executor(state, &release.id).await?;
    vigil_deploy::check_not_executor_report(&release, shipped_by_executor, action)?;
    let change = vigil_guard::requests::action_change(
        state.guard.config(),
        &release,
        action,
        &token.name,
        reason,
        state.clock.now(),
    )?;
    let updated = apply(state, change).await?;
    if action == Action::Resume {
        state.guard.forget(&updated.id);
    }
    if matches!(action, Action::Rollback | Action::RollbackDone) {
        // A rollback after a pause confirms the fault: the app's signatures matching it go.
        let rolled_back = updated.clone();
        let actor = token.name.clone();
        let at = state.clock.now();
        state
            .blocking(move |store| {
                if let Err(error) = vigil_guard::library::learn_from_rollback(
                    store,
                    &rolled_back,
                    action,
                    &actor,
                    at,
                ) {
                    tracing::error!(release = %rolled_back.id, app = %rolled_back.spec.app, %error, "feature library could not learn from a rollback");
                }
                Ok(())
            })
            .await?;
    }
    Ok(updated)
}

pub async fn pause(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Release>, ApiError> {
    act(state, headers, id, body, Action::Pause).await
}

pub async fn resume(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Release>, ApiError> {
    act(state, headers, id, body, Action::Resume).await
}

pub async fn rollback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Release>, ApiError> {
    act(state, headers, id, body, Action::Rollback).await
}

pub async fn rolled_back(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Release>, ApiError> {
    act(state, headers, id, body, Action::RollbackDone).await
}

pub async fn cancel(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Release>, ApiError> {
    act(state, headers, id, body, Action::Cancel).await
}
