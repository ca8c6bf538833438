//! Release routes: create, list and show here; reads of one release in `read`, actions and
//! batch reports in `actions`, feedback in `feedback`, import in `import`; what the pages share
//! with them in `records`. The rules they apply live in the release layer
//! (`vigil_deploy::requests`, `vigil_deploy::spec`) and the guard layer
//! (`vigil_guard::requests`, `vigil_guard::decision`).

mod actions;
mod feedback;
mod import;
mod read;
mod records;
mod scorecard;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use vigil_core::release::{Release, ReleaseSpec, Role};
use vigil_deploy::spec::CreateRelease;
use vigil_guard::admission;

pub(crate) use self::actions::perform;
pub use self::actions::{batch_deployed, cancel, pause, resume, rollback, rolled_back};
pub use self::feedback::{add_feedback, list_feedback};
pub(crate) use self::feedback::{record_feedback, FeedbackRequest};
pub use self::import::import;
pub use self::read::{export, findings, notifications, series, transitions, verdict};
use self::records::load;
pub(crate) use self::records::{
    find_releases, release_filter, release_record, window, ReleaseRecord,
};
pub use self::scorecard::scorecard;
pub(crate) use self::scorecard::{
    alert_evidence, app_config, scorecard_on, scorecard_step, AlertEvidence, ScorecardQuery,
};
pub(crate) use vigil_deploy::requests::{deciding_verdict, MAX_NOTE_BYTES};
pub(crate) use vigil_guard::decision::verdict_answer;

use crate::error::ApiError;
use crate::request::parse_request;
use crate::state::AppState;

/// Checks a release spec and fills its defaults ([`vigil_deploy::spec::validate`]), then
/// admits its analysis settings.
fn validate_spec(request: CreateRelease) -> Result<(Option<String>, ReleaseSpec), ApiError> {
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
    let mut release = vigil_deploy::requests::new_release(id, spec, token.name, now);
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

pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Release>, ApiError> {
    state.authorize(&headers, Role::Viewer).await?;
    Ok(Json(load(&state, id).await?))
}
