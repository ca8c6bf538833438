//! An app's feature library: `GET /api/v1/apps/{app}/signatures` lists its signatures (dropped
//! ones too, with why), `DELETE /api/v1/apps/{app}/signatures/{id}` removes one (admins). The
//! app's page lists and removes them through the same two functions.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Serialize;
use vigil_core::release::{ApiToken, Role};
use vigil_core::{validate, Signature};

use crate::error::ApiError;
use crate::state::AppState;

/// The answer of `GET /api/v1/apps/{app}/signatures`.
#[derive(Debug, Clone, Serialize)]
pub struct AppSignatures {
    pub app: String,
    /// Oldest first; dropped ones keep why.
    pub signatures: Vec<Signature>,
}

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(app): Path<String>,
) -> Result<Json<AppSignatures>, ApiError> {
    state.authorize(&headers, Role::Viewer).await?;
    let signatures = app_signatures(&state, app.clone()).await?;
    Ok(Json(AppSignatures { app, signatures }))
}

pub async fn remove(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((app, id)): Path<(String, i64)>,
) -> Result<Json<Signature>, ApiError> {
    let token = state.authorize(&headers, Role::Admin).await?;
    Ok(Json(remove_signature(&state, &token, app, id).await?))
}

/// Every signature of `app`, oldest first.
pub(crate) async fn app_signatures(
    state: &AppState,
    app: String,
) -> Result<Vec<Signature>, ApiError> {
    validate::name(&app).map_err(|problem| problem.at("app"))?;
    state
        .blocking(move |store| Ok(store.all_app_signatures(&app)?))
        .await
}

/// An admin removes signature `id` of `app` (checked here): it is dropped, and kept in the
/// app's list with who removed it. 404 when the app has no such signature.
pub(crate) async fn remove_signature(
    state: &AppState,
    token: &ApiToken,
    app: String,
    id: i64,
) -> Result<Signature, ApiError> {
    crate::auth::require(token, Role::Admin)?;
    validate::name(&app).map_err(|problem| problem.at("app"))?;
    let actor = token.name.clone();
    let at = state.clock.now();
    state
        .blocking(move |store| {
            vigil_guard::library::remove_signature(store, &app, id, &actor, at)?
                .ok_or_else(|| ApiError::not_found(format!("id: app {app} has no signature {id}")))
        })
        .await
}
