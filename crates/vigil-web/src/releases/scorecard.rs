//! A release's scorecard: every signal judged at its last judged step, sortable by column.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;
use vigil_core::release::{Release, Role, VerdictRecord};
use vigil_core::scorecard::{RowSort, Scorecard, ScorecardRow};
use vigil_core::{Bundle, Finding, HostGroup};
use vigil_guard::apps::AppConfig;
use vigil_guard::pull::PullFailures;
use vigil_guard::GuardError;

use super::records::{load, window};

use crate::error::ApiError;
use crate::state::AppState;

/// `?sort=effect|score|verdict|signal&order=asc|desc`.
#[derive(Debug, Default, Deserialize)]
pub struct ScorecardQuery {
    #[serde(default)]
    pub sort: Option<String>,
    #[serde(default)]
    pub order: Option<String>,
}

impl ScorecardQuery {
    /// The column and the direction asked for: by verdict, failing first, when none is named;
    /// a column's own first direction (the largest effects and scores first) when no order is.
    pub fn parse(&self) -> Result<(RowSort, bool), ApiError> {
        let sort = match self.sort.as_deref() {
            None | Some("") => RowSort::Verdict,
            Some(name) => RowSort::parse(name).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "sort must be effect, score, verdict or signal, not {:?}",
                    truncated(name)
                ))
            })?,
        };
        let descending = match self.order.as_deref() {
            None | Some("") => sort.natural_descending(),
            Some("asc") => false,
            Some("desc") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "order must be asc or desc, not {:?}",
                    truncated(other)
                )))
            }
        };
        Ok((sort, descending))
    }
}

/// At most 40 characters of a refused value, for an error message.
fn truncated(text: &str) -> String {
    text.chars().take(40).collect()
}

pub async fn scorecard(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<ScorecardQuery>,
) -> Result<Json<Scorecard>, ApiError> {
    state.authorize(&headers, Role::Viewer).await?;
    let (sort, descending) = query.parse()?;
    let release = load(&state, id).await?;
    let latest = {
        let id = release.id.clone();
        state
            .blocking(move |store| Ok(store.verdicts(&id)?.pop()))
            .await?
    };
    let _core = state.budget.heavy_work().await?;
    let mut scorecard = release_scorecard(&state, &release, latest.as_ref()).await?;
    scorecard.sort_rows_by(sort, descending);
    Ok(Json(scorecard))
}

/// The scorecard of `release` on its window `bundle` at the step of `judged_at` (see
/// [`vigil_guard::scorecard::release_scorecard`]), with the rows of the team's rules and of
/// received alerts. Judges the window: call it on a blocking thread. The API and the page
/// both build their scorecard here.
pub(crate) fn scorecard_on(
    release: &Release,
    bundle: &Bundle,
    judged_at: Option<i64>,
    app: Option<&AppConfig>,
    pull_failures: &PullFailures,
    alerts: AlertEvidence,
) -> Result<Scorecard, GuardError> {
    // The team's rules are judged with the window, at the same step; received alerts join.
    let scorecard =
        vigil_guard::scorecard::release_scorecard(release, bundle, judged_at, app, pull_failures)?;
    Ok(vigil_guard::scorecard::with_rows(
        scorecard,
        alerts.rows,
        &alerts.findings,
    ))
}

/// The received alerts of a release as the guard weighs them: a row per alert, and the
/// findings of those blamed on the release.
#[derive(Debug, Default)]
pub(crate) struct AlertEvidence {
    rows: Vec<ScorecardRow>,
    findings: Vec<Finding>,
}

/// The alerts of `release`'s app matched against its hosts (those its selector finds, for a
/// release of label groups) and the reference hosts of its window `bundle`, from its first deploy to now (to its last change once finished), as
/// [`vigil_guard::alerts::judged_with_alerts`] weighs them.
pub(crate) async fn alert_evidence(
    state: &AppState,
    release: &Release,
    bundle: &Bundle,
) -> Result<AlertEvidence, ApiError> {
    let reference_hosts: Vec<String> = bundle
        .hosts
        .iter()
        .filter(|host| host.group == HostGroup::Reference)
        .map(|host| host.name.clone())
        .collect();
    let until = if release.state.is_terminal() {
        release.updated_at
    } else {
        state.clock.now()
    };
    let release = release.clone();
    let guard = Arc::clone(&state.guard);
    state
        .blocking(move |store| {
            // A release whose groups are label selectors is weighed on the hosts they find,
            // as the guard weighs it.
            let judged = guard.judged_release(&release, until)?;
            let (matches, hosts_judged) =
                vigil_guard::alerts::release_alerts(store, &judged, &reference_hosts, until)?;
            Ok(AlertEvidence {
                rows: vigil_guard::alerts::alert_rows(&matches, hosts_judged),
                findings: vigil_guard::alerts::alert_findings(&matches, hosts_judged),
            })
        })
        .await
}

/// The step a release's scorecard is judged at: the step the guard last judged, or
/// `latest`'s (its latest stored verdict) after a restart; `None` for a finished release (the
/// end of its window).
pub(crate) fn scorecard_step(
    state: &AppState,
    release: &Release,
    latest: Option<&VerdictRecord>,
) -> Option<i64> {
    if release.state.is_terminal() {
        return None;
    }
    state
        .guard
        .last_judged(&release.id)
        .or(latest.map(|record| record.at))
}

/// The stored settings of `app`, if any (read as the guard reads them).
pub(crate) async fn app_config(state: &AppState, app: &str) -> Result<Option<AppConfig>, ApiError> {
    let app = app.to_owned();
    state
        .blocking(move |store| Ok(vigil_guard::apps::stored_app_config(store, &app)?))
        .await
}

/// The scorecard of `release` (see [`vigil_guard::scorecard::release_scorecard`]) at
/// [`scorecard_step`]. Assembles the window and judges it on blocking threads: the caller
/// holds one of the budget's heavy-work cores.
async fn release_scorecard(
    state: &AppState,
    release: &Release,
    latest: Option<&VerdictRecord>,
) -> Result<Scorecard, ApiError> {
    let judged_at = scorecard_step(state, release, latest);
    let bundle = window(state, release).await?;
    let app = app_config(state, &release.spec.app).await?;
    let alerts = alert_evidence(state, release, &bundle).await?;
    let release = release.clone();
    let pull_failures = Arc::clone(&state.pull_failures);
    let scorecard = tokio::task::spawn_blocking(move || {
        scorecard_on(
            &release,
            &bundle,
            judged_at,
            app.as_ref(),
            &pull_failures,
            alerts,
        )
    })
    .await
    .map_err(|error| ApiError::internal(format!("scorecard task failed: {error}")))??;
    Ok(scorecard)
}
