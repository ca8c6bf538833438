//! `/api/v1/replays`: a replay of the team's own stored releases through the analysis and a
//! model (`vigil_guard::history`), run on a thread of its own, one at a time. The last few
//! runs are kept in memory, with their progress while they run and their figures once done.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use vigil_analysis::{Stage, StageModel};
use vigil_core::release::{ApiToken, Role};
use vigil_guard::history::{replay_history, HistoryRequest};
use vigil_store::Store;

use crate::error::ApiError;
pub use crate::replay_runs::{ModelChoice, ReplayAsk, ReplayRun, RunState};
use crate::state::AppState;

/// Starts a replay of the stored history for `token` (operators only) and returns the run as
/// it starts. The JSON route and the page's button both call it.
pub async fn start_replay(
    state: &AppState,
    token: &ApiToken,
    ask: ReplayAsk,
) -> Result<ReplayRun, ApiError> {
    crate::auth::require(token, Role::Operator)?;
    let model = ask.model;
    let staged = state
        .blocking(move |store| resolve_model(store, model))
        .await?;
    let model_version = staged.as_ref().map(|staged| staged.version);
    let stage = Stage::new(staged, Vec::new())
        .map_err(|error| ApiError::bad_request(format!("model: {error}")))?;
    let started_at = state.clock.now();
    let id = state
        .replays
        .begin(&ask, model_version, &token.name, started_at)?;
    tracing::info!(replay = id, by = %token.name, model = %ask.model.label(), app = ask.app.as_deref().unwrap_or_default(), "history replay started");
    let request = HistoryRequest {
        app: ask.app.clone(),
        stage,
    };
    let worker = state.clone();
    let spawned = std::thread::Builder::new()
        .name("vigil-replay".to_owned())
        .spawn(move || run_replay(&worker, id, &request));
    if let Err(error) = spawned {
        let reason = format!("cannot start the replay's thread: {error}");
        state.replays.update(id, |run| {
            run.state = RunState::Failed;
            run.error = Some(reason.clone());
        });
        return Err(ApiError::internal(reason));
    }
    state
        .replays
        .get(id)
        .ok_or_else(|| ApiError::internal("the replay was forgotten as it started"))
}

/// The stage's model for `choice`, as the store holds it.
fn resolve_model(store: &dyn Store, choice: ModelChoice) -> Result<Option<StageModel>, ApiError> {
    let staged = |record: vigil_core::ModelRecord| StageModel {
        version: record.version,
        model: record.model,
    };
    match choice {
        ModelChoice::None => Ok(None),
        ModelChoice::Promoted => Ok(store.promoted_model()?.map(staged)),
        ModelChoice::Version(version) => store
            .model(version)?
            .map(|record| Some(staged(record)))
            .ok_or_else(|| ApiError::not_found(format!("model: no model version {version}"))),
    }
}

/// The replay on its own thread: progress as it goes, the figures or the error at the end.
fn run_replay(state: &AppState, id: u64, request: &HistoryRequest) {
    let replays = &state.replays;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        replay_history(
            state.store.as_ref(),
            &state.guard,
            &state.intake,
            request,
            |done, total| {
                replays.update(id, |run| {
                    run.done = done;
                    run.total = Some(total);
                });
            },
        )
    }));
    let finished_at = state.clock.now();
    match outcome {
        Ok(Ok(report)) => {
            tracing::info!(
                replay = id,
                releases = report.releases.len(),
                precision = report.overall.precision,
                recall = report.overall.recall,
                "history replay finished"
            );
            replays.update(id, |run| {
                run.state = RunState::Finished;
                run.finished_at = Some(finished_at);
                run.result = Some(report);
            });
        }
        Ok(Err(error)) => {
            tracing::warn!(replay = id, %error, "history replay failed");
            replays.update(id, |run| {
                run.state = RunState::Failed;
                run.finished_at = Some(finished_at);
                run.error = Some(error.to_string());
            });
        }
        Err(_) => {
            tracing::error!(replay = id, "history replay panicked");
            replays.update(id, |run| {
                run.state = RunState::Failed;
                run.finished_at = Some(finished_at);
                run.error = Some("the replay failed unexpectedly".to_owned());
            });
        }
    }
}

/// `POST /api/v1/replays`: starts a replay (operators only); 202 with the run and its
/// location, 409 while another runs.
pub async fn start(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let token = state.authorize(&headers, Role::Operator).await?;
    let ask = ReplayAsk::from_body(&body)?;
    let run = start_replay(&state, &token, ask).await?;
    let location = format!("/api/v1/replays/{}", run.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(run),
    )
        .into_response())
}

/// `GET /api/v1/replays/latest`: the newest run.
pub async fn latest(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<ReplayRun>, ApiError> {
    state.authorize(&headers, Role::Viewer).await?;
    state
        .replays
        .latest()
        .map(Json)
        .ok_or_else(|| ApiError::not_found("replay: none was started since the server started"))
}

/// `GET /api/v1/replays/{id}`: one kept run.
pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<ReplayRun>, ApiError> {
    state.authorize(&headers, Role::Viewer).await?;
    let number: u64 = id
        .parse()
        .map_err(|_| ApiError::bad_request("id: must be a replay number or latest"))?;
    state
        .replays
        .get(number)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no replay {number} is kept")))
}
