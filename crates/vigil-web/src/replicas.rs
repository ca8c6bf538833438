//! `/api/v1/replicas`: the servers sharing this store, and the releases each one guards.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::Serialize;
use vigil_core::release::Role;
use vigil_guard::ReplicaStatus;

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Serialize)]
pub struct ReplicasView {
    replicas: Vec<ReplicaStatus>,
}

/// Every replica that sent a heartbeat and did not stop, whether it is live (its heartbeat
/// younger than the lease time) and the releases whose lease it holds now.
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<ReplicasView>, ApiError> {
    state.authorize(&headers, Role::Viewer).await?;
    let now = state.clock.now();
    let lease_seconds = state.guard.replica().lease_seconds;
    let replicas = state
        .blocking(move |store| {
            Ok(vigil_guard::guard::replica_statuses(
                store,
                now,
                lease_seconds,
            )?)
        })
        .await?;
    Ok(Json(ReplicasView { replicas }))
}
