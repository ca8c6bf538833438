//! Read routes of one release: its verdict for a pipeline, findings, transitions,
//! notifications, one metric's series and the export of its window.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};
use vigil_core::release::{OutboxItem, Role, Transition, VerdictRecord};
use vigil_core::{Batch, HostGroup};
use vigil_deploy::requests::deciding_verdict;
use vigil_guard::decision::{verdict_answer, VerdictAnswer};

use super::records::{load, window};
use crate::error::ApiError;
use crate::state::AppState;

pub async fn verdict(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<VerdictAnswer>, ApiError> {
    state.authorize(&headers, Role::Viewer).await?;
    let (release, latest) = state
        .blocking(move |store| {
            let release = store
                .release(&id)?
                .ok_or_else(|| ApiError::not_found(format!("no release {id}")))?;
            let latest = store.verdicts(&id)?.pop();
            Ok((release, latest))
        })
        .await?;
    Ok(Json(verdict_answer(&release, latest.as_ref())))
}

#[derive(Debug, Serialize)]
pub struct FindingsAnswer {
    pub latest: Option<VerdictRecord>,
    pub history: Vec<VerdictRecord>,
}

pub async fn findings(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<FindingsAnswer>, ApiError> {
    state.authorize(&headers, Role::Viewer).await?;
    let history = state
        .blocking(move |store| {
            if store.release(&id)?.is_none() {
                return Err(ApiError::not_found(format!("no release {id}")));
            }
            Ok(store.verdicts(&id)?)
        })
        .await?;
    let latest = deciding_verdict(&history).cloned();
    Ok(Json(FindingsAnswer { latest, history }))
}

pub async fn transitions(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Vec<Transition>>, ApiError> {
    state.authorize(&headers, Role::Viewer).await?;
    let found = state
        .blocking(move |store| {
            if store.release(&id)?.is_none() {
                return Err(ApiError::not_found(format!("no release {id}")));
            }
            Ok(store.transitions(&id)?)
        })
        .await?;
    Ok(Json(found))
}

pub async fn notifications(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Vec<OutboxItem>>, ApiError> {
    state.authorize(&headers, Role::Viewer).await?;
    let found = state
        .blocking(move |store| Ok(store.notifications(&id)?))
        .await?;
    Ok(Json(found))
}

#[derive(Debug, Deserialize)]
pub struct SeriesQuery {
    metric: String,
}

#[derive(Debug, Serialize)]
pub struct HostSeries {
    pub host: String,
    pub group: HostGroup,
    pub values: Vec<Option<f64>>,
}

#[derive(Debug, Serialize)]
pub struct SeriesAnswer {
    pub metric: String,
    pub start: i64,
    pub step_seconds: i64,
    pub points: usize,
    pub batches: Vec<Batch>,
    pub hosts: Vec<HostSeries>,
}

pub async fn series(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<SeriesQuery>,
) -> Result<Json<SeriesAnswer>, ApiError> {
    state.authorize(&headers, Role::Viewer).await?;
    let release = load(&state, id).await?;
    let core = state.budget.heavy_work().await?;
    let bundle = window(&state, &release).await?;
    drop(core);
    let by_host = bundle
        .series
        .get(&query.metric)
        .or_else(|| bundle.logs.counts.get(&query.metric))
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "release {} has no metric or log template {:?}",
                release.id, query.metric
            ))
        })?;
    let hosts = bundle
        .hosts
        .iter()
        .filter_map(|host| {
            by_host.get(&host.name).map(|values| HostSeries {
                host: host.name.clone(),
                group: host.group,
                values: values.clone(),
            })
        })
        .collect();
    Ok(Json(SeriesAnswer {
        metric: query.metric,
        start: bundle.start,
        step_seconds: bundle.step_seconds,
        points: bundle.points,
        batches: bundle.batches,
        hosts,
    }))
}

/// The release's window as a `release-bundle/1`. Assembling and writing megabytes of JSON is
/// heavy work: one of its cores, on blocking threads.
pub async fn export(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    state.authorize(&headers, Role::Viewer).await?;
    let release = load(&state, id).await?;
    let _core = state.budget.heavy_work().await?;
    let bundle = window(&state, &release).await?;
    let body = tokio::task::spawn_blocking(move || serde_json::to_vec(&bundle))
        .await
        .map_err(|error| ApiError::internal(format!("export task failed: {error}")))?
        .map_err(|error| ApiError::internal(format!("cannot write the bundle: {error}")))?;
    let json = [(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    )];
    Ok(axum::response::IntoResponse::into_response((json, body)))
}
