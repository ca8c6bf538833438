//! `POST /api/v1/deployments` (a release Vigil's executor ships) and `GET
//! /api/v1/releases/{id}/execution` (its progress).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use vigil_core::release::{Release, Role};
use vigil_executor::order::{CreateDeployment, OrderError};
use vigil_executor::view::ExecutionView;
use vigil_guard::admission;

use crate::error::ApiError;
use crate::request::parse_request;
use crate::state::AppState;

impl From<OrderError> for ApiError {
    fn from(error: OrderError) -> ApiError {
        match error {
            OrderError::Plan(plan) => ApiError::bad_request(plan.to_string()),
            OrderError::Deploy(deploy) => deploy.into(),
        }
    }
}

pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Release>), ApiError> {
    let token = state.authorize(&headers, Role::Operator).await?;
    let order: CreateDeployment = parse_request(body).await?;
    let now = state.clock.now();
    let fallback_id = format!("rel-{now}-{}", &crate::auth::new_token()?[4..12]);
    let release = state
        .blocking(move |store| {
            let agents: Vec<_> = store
                .agents()?
                .into_iter()
                .map(|agent| agent.record)
                .collect();
            let (id, spec, execution) = vigil_executor::order::resolve(order, &agents)?;
            admission::admit_spec(&spec)?;
            let id = id.unwrap_or(fallback_id);
            let mut release = vigil_deploy::requests::new_release(id, spec, token.name, now);
            release.reason = "waiting for the artifact on every host".to_owned();
            vigil_guard::apps::add_declared_metrics(store, &mut release.spec)?;
            store.create_execution(&release, &execution)?;
            Ok(release)
        })
        .await?;
    // Its hosts learn of the artifact at their next poll here, not a second later.
    state.fetches.forget();
    tracing::info!(release = %release.id, app = %release.spec.app, "deployment created");
    Ok((StatusCode::CREATED, Json(release)))
}

pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<ExecutionView>, ApiError> {
    state.authorize(&headers, Role::Viewer).await?;
    let view = execution_of(&state, id.clone()).await?;
    view.map(Json).ok_or_else(|| {
        ApiError::not_found(format!(
            "release {id} is not shipped by vigil's executor (or does not exist)"
        ))
    })
}

/// A release's execution view, `None` for a release Vigil does not ship.
pub(crate) async fn execution_of(
    state: &AppState,
    id: String,
) -> Result<Option<ExecutionView>, ApiError> {
    state
        .blocking(move |store| {
            let Some(release) = store.release(&id)? else {
                return Ok(None);
            };
            Ok(vigil_executor::view::execution_view(store, &release)?)
        })
        .await
}
