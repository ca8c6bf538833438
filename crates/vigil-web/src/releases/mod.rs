//! Release routes: create, read, act, report batches, feedback, export and import.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use vigil_core::release::{
    Action, ApiToken, Feedback, FeedbackKind, NotificationEvent, Release, ReleaseSpec,
    ReleaseState, Role, VerdictRecord,
};
use vigil_core::validate;
use vigil_core::{Batch, Bundle, HostGroup, Verdict};
use vigil_guard::admission;
use vigil_guard::guard::{notifications_for, release_settings};
use vigil_store::{Change, ReleaseFilter};

use crate::error::ApiError;
use crate::request::parse_request;
use crate::state::AppState;

/// Longest feedback note, in bytes.
pub(crate) const MAX_NOTE_BYTES: usize = validate::MAX_TEXT_BYTES;

pub use vigil_deploy::spec::CreateRelease;

/// A name at `field`, by the rules every way in shares.
fn check_name(field: impl std::fmt::Display, name: &str) -> Result<(), ApiError> {
    Ok(vigil_deploy::spec::check_name(field, name)?)
}

pub(crate) fn check_id(field: &str, id: &str) -> Result<(), ApiError> {
    Ok(vigil_deploy::spec::check_id(field, id)?)
}

/// Checks a release spec and fills its defaults ([`vigil_deploy::spec::validate`]), then
/// admits its analysis settings.
pub fn validate_spec(request: CreateRelease) -> Result<(Option<String>, ReleaseSpec), ApiError> {
    let (id, spec) = vigil_deploy::spec::validate(request)?;
    admission::admit_spec(&spec)?;
    Ok((id, spec))
}

pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Release>), ApiError> {
    let token = state.authorize(&headers, Role::Operator).await?;
    let request: CreateRelease = parse_request(body).await?;
    let (id, spec) = validate_spec(request)?;
    let now = state.clock.now();
    let id = match id {
        Some(id) => id,
        None => format!("rel-{now}-{}", &crate::auth::new_token()?[4..12]),
    };
    let mut release = Release {
        id,
        spec,
        state: ReleaseState::Pending,
        created_by: token.name,
        created_at: now,
        updated_at: now,
        deployed: Vec::new(),
        verdict: None,
        reason: "waiting for the first batch".to_string(),
    };
    // The app's declared metrics are copied into the release as it is stored: the record says
    // what is judged, an export replays the same verdicts, and a later change of the app's
    // settings leaves a running release alone.
    let release = state
        .blocking(move |store| {
            vigil_guard::apps::add_declared_metrics(store, &mut release.spec)?;
            store.create_release(&release)?;
            Ok(release)
        })
        .await?;
    tracing::info!(release = %release.id, app = %release.spec.app, "release created");
    Ok((StatusCode::CREATED, Json(release)))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    app: Option<String>,
    /// Comma-separated states.
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<Release>>, ApiError> {
    state.authorize(&headers, Role::Viewer).await?;
    let filter = release_filter(query.app, query.state.as_deref(), query.limit)?;
    Ok(Json(find_releases(&state, filter).await?))
}

/// The filter of a release list: an app (none or empty: every app), comma-separated states
/// (none: every state) and a limit (default 100, at most 1000).
pub(crate) fn release_filter(
    app: Option<String>,
    states_text: Option<&str>,
    limit: Option<usize>,
) -> Result<ReleaseFilter, ApiError> {
    let mut states = Vec::new();
    for name in states_text.iter().flat_map(|text| text.split(',')) {
        let trimmed = name.trim();
        if trimmed.is_empty() {
            continue;
        }
        let parsed = ReleaseState::parse(trimmed)
            .ok_or_else(|| ApiError::bad_request(format!("unknown state {name:?}")))?;
        states.push(parsed);
    }
    Ok(ReleaseFilter {
        app: app.filter(|name| !name.trim().is_empty()),
        states,
        limit: limit.unwrap_or(100).min(1000),
    })
}

/// The releases a filter selects, newest first.
pub(crate) async fn find_releases(
    state: &AppState,
    filter: ReleaseFilter,
) -> Result<Vec<Release>, ApiError> {
    state
        .blocking(move |store| Ok(store.releases(&filter)?))
        .await
}

pub(crate) async fn load(state: &AppState, id: String) -> Result<Release, ApiError> {
    state
        .blocking(move |store| {
            store
                .release(&id)?
                .ok_or_else(|| ApiError::not_found(format!("no release {id}")))
        })
        .await
}

pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Release>, ApiError> {
    state.authorize(&headers, Role::Viewer).await?;
    Ok(Json(load(&state, id).await?))
}

/// What is stored of one release: itself, its verdicts, transitions and feedback, each oldest
/// first.
#[derive(Debug)]
pub(crate) struct ReleaseRecord {
    pub release: Release,
    pub verdicts: Vec<VerdictRecord>,
    pub transitions: Vec<vigil_core::release::Transition>,
    pub feedback: Vec<Feedback>,
}

/// The release `id` with its history, read in one store call.
pub(crate) async fn release_record(
    state: &AppState,
    id: String,
) -> Result<ReleaseRecord, ApiError> {
    state
        .blocking(move |store| {
            let release = store
                .release(&id)?
                .ok_or_else(|| ApiError::not_found(format!("no release {id}")))?;
            Ok(ReleaseRecord {
                verdicts: store.verdicts(&id)?,
                transitions: store.transitions(&id)?,
                feedback: store.feedback(&id)?,
                release,
            })
        })
        .await
}

/// What a pipeline (or Argo Rollouts' Web metric) reads to decide whether to go on.
#[derive(Debug, Serialize)]
pub struct VerdictAnswer {
    pub release: String,
    pub state: ReleaseState,
    pub verdict: Option<Verdict>,
    /// `proceed`: the next batch may start; `hold`: wait (the last batch is not judged yet:
    /// warming up, no verdict since its deploy, or data missing); `stop`: paused, rolled back,
    /// cancelled or failed; `passed`: the release succeeded. A pipeline goes on only on
    /// `proceed` or `passed`.
    pub decision: &'static str,
    /// True once the release failed its guard or was stopped (Argo: `failureCondition`).
    pub failed: bool,
    /// True once the release succeeded.
    pub passed: bool,
    /// True when the outcome is final.
    pub done: bool,
    pub reason: String,
}

pub fn verdict_answer(release: &Release, latest: Option<&VerdictRecord>) -> VerdictAnswer {
    let (decision, failed, passed) = match release.state {
        ReleaseState::Succeeded => ("passed", false, true),
        ReleaseState::Paused
        | ReleaseState::RollingBack
        | ReleaseState::RolledBack
        | ReleaseState::Failed
        | ReleaseState::Cancelled => ("stop", true, false),
        ReleaseState::Pending | ReleaseState::Deploying | ReleaseState::Observing => {
            if last_batch_judged(release, latest) {
                ("proceed", false, false)
            } else {
                ("hold", false, false)
            }
        }
    };
    let reason = latest
        .map(|record| record.explanation.clone())
        .filter(|text| !text.is_empty() && release.state != ReleaseState::Paused)
        .unwrap_or_else(|| release.reason.clone());
    VerdictAnswer {
        release: release.id.clone(),
        state: release.state,
        verdict: release.verdict,
        decision,
        failed,
        passed,
        done: release.state.is_terminal() || release.state == ReleaseState::Paused,
        reason,
    }
}

/// Whether the latest verdict speaks for the last deployed batch, past its warm-up, and lets
/// the next one start: anything but missing data (a fault still observing was resumed past).
/// Before any batch, nothing holds the first.
fn last_batch_judged(release: &Release, latest: Option<&VerdictRecord>) -> bool {
    let settings = release_settings(release).unwrap_or_default();
    let Some(judged_from) = vigil_guard::guard::last_batch_judged_from(release, &settings) else {
        return true;
    };
    latest.is_some_and(|record| {
        record.at >= judged_from && record.verdict != Verdict::InsufficientData
    })
}

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

/// The verdict that decided: the newest fault (the pause) if there was one, else the newest.
pub(crate) fn deciding_verdict(history: &[VerdictRecord]) -> Option<&VerdictRecord> {
    history
        .iter()
        .rev()
        .find(|record| record.verdict == Verdict::Fault)
        .or(history.last())
}

pub async fn transitions(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Vec<vigil_core::release::Transition>>, ApiError> {
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
) -> Result<Json<Vec<vigil_core::release::OutboxItem>>, ApiError> {
    state.authorize(&headers, Role::Viewer).await?;
    let found = state
        .blocking(move |store| Ok(store.notifications(&id)?))
        .await?;
    Ok(Json(found))
}

/// The release's window as a bundle, up to now or to the end of the release, as the guard
/// layer assembles it; on a blocking thread (it reads every step of every series).
pub(crate) async fn window(state: &AppState, release: &Release) -> Result<Bundle, ApiError> {
    let guard = Arc::clone(&state.guard);
    let intake = Arc::clone(&state.intake);
    let release = release.clone();
    state
        .blocking(move |_| Ok(guard.window(&release, &intake)?))
        .await
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
    // A pipeline retries: the same report again changes nothing and answers the release.
    if let Some(reported) = release.deployed.iter().find(|batch| batch.index == index) {
        let repeated =
            vigil_deploy::repeats_report(&release, reported, request.hosts.as_deref(), request.at);
        return if repeated {
            Ok(Json(release))
        } else {
            Err(ApiError::conflict(format!(
                "batch {index} was already reported deployed to hosts {:?} at {}: a repeated \
                 report must give the same hosts and at",
                reported.hosts, reported.at
            )))
        };
    }
    // An unplanned index has no hosts here and is refused by the check below.
    let planned = release.spec.batches.get(index as usize);
    let hosts = request
        .hosts
        .unwrap_or_else(|| planned.map(|batch| batch.hosts.clone()).unwrap_or_default());
    let at = request.at.unwrap_or_else(|| state.clock.now());
    let batch = Batch { index, at, hosts };
    vigil_deploy::check_deployed_batch(&release, &batch)?;
    let change = Change {
        release_id: release.id.clone(),
        expected: release.state,
        to: vigil_deploy::next_state(release.state, Action::BatchDeployed)?,
        action: Action::BatchDeployed,
        actor: token.name,
        at: state.clock.now(),
        reason: format!("batch {index} deployed to {} hosts", batch.hosts.len()),
        deployed: Some(batch),
        notifications: Vec::new(),
    };
    let (updated, _) = state
        .blocking(move |store| Ok(store.apply(&change)?))
        .await?;
    Ok(Json(updated))
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
/// token's role and the transition, stores it with its audit row and notifications, and
/// returns the release as stored. Without a reason, the reason is the action and its actor.
pub(crate) async fn perform(
    state: &AppState,
    token: &ApiToken,
    id: String,
    action: Action,
    reason: Option<String>,
) -> Result<Release, ApiError> {
    crate::auth::require(token, Role::Operator)?;
    if let Some(text) = &reason {
        validate::free_text(text, validate::MAX_TEXT_BYTES)
            .map_err(|problem| problem.at("reason"))?;
    }
    let release = load(state, id).await?;
    let to = vigil_deploy::next_state(release.state, action)?;
    let reason = reason
        .filter(|text| !text.trim().is_empty())
        .unwrap_or_else(|| format!("{} by {}", action.as_str(), token.name));
    let event = match action {
        Action::Pause => Some(NotificationEvent::Paused),
        Action::Resume => Some(NotificationEvent::Resumed),
        Action::Rollback | Action::RollbackDone => Some(NotificationEvent::RolledBack),
        _ => None,
    };
    let notifications = match event {
        Some(event) if action != Action::RollbackDone => notifications_for(
            &state.guard.config().routes,
            &state.guard.config().public_url,
            &release,
            event,
            &format!(
                "{} {}: {} by {}",
                release.spec.app,
                release.spec.version,
                action.as_str(),
                token.name
            ),
            &reason,
        ),
        _ => Vec::new(),
    };
    let change = Change {
        release_id: release.id.clone(),
        expected: release.state,
        to,
        action,
        actor: token.name.clone(),
        at: state.clock.now(),
        reason,
        deployed: None,
        notifications,
    };
    let (updated, _) = state
        .blocking(move |store| Ok(store.apply(&change)?))
        .await?;
    if action == Action::Resume {
        state.guard.forget(&updated.id);
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

/// Stores a person's feedback on a release (operators only) and returns it.
pub(crate) async fn record_feedback(
    state: &AppState,
    token: &ApiToken,
    id: String,
    kind: FeedbackKind,
    note: String,
) -> Result<Feedback, ApiError> {
    crate::auth::require(token, Role::Operator)?;
    validate::free_text(&note, MAX_NOTE_BYTES).map_err(|problem| problem.at("note"))?;
    let release = load(state, id).await?;
    let feedback = Feedback {
        release_id: release.id,
        kind,
        note,
        actor: token.name.clone(),
        at: state.clock.now(),
    };
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

/// Imports a `release-bundle/1` through the guard layer ([`vigil_guard::import`]), which
/// replays it and stores it in one transaction, paused (when the replay paused it, or ended
/// with data missing) or succeeded.
///
/// A few MiB of gzip can expand to gigabytes and a replay takes seconds: one of a bounded
/// number of imports at once decompresses (up to [`crate::state::Limits::max_import_bytes`]), parses
/// and replays on a blocking thread; the release id is checked, free and valid, before the
/// replay.
pub async fn import(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Release>), ApiError> {
    let token = state.authorize(&headers, Role::Operator).await?;
    let held = state.budget.import().await?;
    // Decompressing and parsing is decoding like any other: it takes its share of the
    // decoding budget (the parsed bundle holds about four times its JSON) and a decoder's core.
    let decoding = state
        .budget
        .decode(state.limits.max_import_bytes.saturating_mul(4))
        .await?;
    let limits = state.limits.clone();
    let bundle = state
        .blocking(move |store| read_import(store, &body, &limits))
        .await?;
    drop(decoding);
    let now = state.clock.now();
    let intake = state.intake.clone();
    let actor = token.name;
    let final_release = state
        .blocking(move |_store| {
            let release = vigil_guard::import::import_bundle(&intake, bundle, actor, now)
                .map_err(import_error)?;
            drop(held);
            Ok(release)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(final_release)))
}

/// The answer to an import the guard layer could not store.
fn import_error(error: vigil_guard::GuardError) -> ApiError {
    match error {
        vigil_guard::GuardError::Store(store_error) => ApiError::from(store_error),
        vigil_guard::GuardError::Transition(transition_error) => ApiError::from(transition_error),
        other => ApiError::internal(other.to_string()),
    }
}

/// The bundle of an import body, within the limits, with an id that is valid and free.
fn read_import(
    store: &dyn vigil_store::Store,
    body: &[u8],
    limits: &crate::state::Limits,
) -> Result<Bundle, ApiError> {
    let bundle = Bundle::from_bytes_limited(body, "request body", limits.max_import_bytes)
        .map_err(|error| match error {
            vigil_core::BundleError::TooLarge { limit, .. } => ApiError::too_large(format!(
                "body: the bundle decompresses to more than the limit of {limit} bytes"
            )),
            other => ApiError::bad_request(other.to_string()),
        })?;
    check_id("id", &bundle.id)?;
    check_name("app", &bundle.app)?;
    for (index, host) in bundle.hosts.iter().enumerate() {
        check_name(format_args!("hosts[{index}].name"), &host.name)?;
    }
    let values = bundle_values(&bundle);
    if values > limits.max_import_values {
        return Err(ApiError::too_large(format!(
            "series: the bundle holds {values} values, more than the limit of {}",
            limits.max_import_values
        )));
    }
    if bundle.batches.is_empty() {
        return Err(ApiError::bad_request("batches: the bundle has no batch"));
    }
    if store.release(&bundle.id)?.is_some() {
        return Err(ApiError::conflict(format!(
            "id: release {} already exists",
            bundle.id
        )));
    }
    Ok(bundle)
}

/// Values of every series and log count of a bundle.
fn bundle_values(bundle: &Bundle) -> usize {
    let series = bundle.series.values().flat_map(|by_host| by_host.values());
    let logs = bundle
        .logs
        .counts
        .values()
        .flat_map(|by_host| by_host.values());
    series.chain(logs).map(Vec::len).sum()
}
