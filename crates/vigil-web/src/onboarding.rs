//! App onboarding: what Vigil receives from an app and what to configure next
//! (`GET /api/v1/apps/{app}/onboarding`, with the discovery of the app's Prometheus when it has
//! a pull source or when `prometheus=URL` is given), and the discovered pull queries stored in
//! the app's settings (`POST /api/v1/apps/{app}/onboarding/apply`).
//!
//! Only admins may name a Prometheus in the request (anyone else gets a 403: the server would
//! fetch any address for them); one that does not answer makes a 502. The app's configured
//! one, which viewers may have queried, only adds a `discovery_error` beside the report from
//! data, and to non-admins any failure of it reads "could not reach the app's Prometheus".
//!
//! The Apps pages (`pages/apps/`) call the same functions: [`reports_from_data`],
//! [`app_report`] and [`apply_onboarding`], which checks the admin role itself.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use vigil_core::model::MetricMeta;
use vigil_core::release::{ApiToken, Role};
use vigil_core::validate;
use vigil_guard::apps::{self, AppConfig, PullQuery, PullSource};
use vigil_ingest::prometheus::PrometheusError;
use vigil_onboarding::apply::{merge_queries, ApplyError, SkippedQuery};
use vigil_onboarding::discover::{self, AskedParams, Discovery, DiscoveryParams, MissingSignal};
use vigil_onboarding::{Onboarding, ReportInput, Signal};
use vigil_store::Store;

use crate::error::ApiError;
use crate::state::AppState;

/// Where to look for the app's metrics; each left out is taken from the app's pull source,
/// else the defaults (`job="<app>"`, `instance`, 30 s).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryQuery {
    pub prometheus: Option<String>,
    pub selector: Option<String>,
    pub host_label: Option<String>,
    pub step_seconds: Option<i64>,
    /// `false` skips discovery (a list of many apps wants the report from data only).
    pub discover: Option<bool>,
}

/// The body of an apply request; every field may be left out.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    pub prometheus: Option<String>,
    pub selector: Option<String>,
    pub host_label: Option<String>,
    pub step_seconds: Option<i64>,
    /// Apply only the proposals for these signals (default: every one found); an empty list
    /// skips discovery and applies `queries` only.
    pub signals: Option<Vec<Signal>>,
    /// The user's own queries, for signals discovery did not find.
    #[serde(default)]
    pub queries: Vec<PullQuery>,
}

/// The answer to an apply request.
#[derive(Debug, Serialize)]
pub struct ApplyAnswer {
    pub app: String,
    /// Queries added to the pull source.
    pub added: Vec<PullQuery>,
    /// Queries left out, with the reason.
    pub skipped: Vec<SkippedQuery>,
    /// Signals asked for that discovery did not find, with what to give.
    pub missing: Vec<MissingSignal>,
    /// The app's settings as stored now.
    pub settings: AppConfig,
}

/// Stored settings that no longer read: the server's fault, not the request's.
fn unreadable_settings(problem: apps::UnreadableSettings) -> ApiError {
    tracing::error!(app = %problem.app, error = %problem, "stored app settings are not valid");
    ApiError::internal(problem.to_string())
}

/// The app's stored settings, if any.
pub(crate) fn stored_config(store: &dyn Store, app: &str) -> Result<Option<AppConfig>, ApiError> {
    match apps::stored_settings(store, app)? {
        Some(settings) => settings.map(Some).map_err(unreadable_settings),
        None => Ok(None),
    }
}

/// The discovery parameters from what the request gave and the app's pull source; `None`
/// when neither names a Prometheus server.
fn discovery_params(
    app: &str,
    asked: &DiscoveryQuery,
    configured: Option<&PullSource>,
) -> Result<Option<DiscoveryParams>, ApiError> {
    let asked = AskedParams {
        prometheus: asked.prometheus.as_deref(),
        selector: asked.selector.as_deref(),
        host_label: asked.host_label.as_deref(),
        step_seconds: asked.step_seconds,
    };
    DiscoveryParams::resolve(app, asked, configured)
        .map_err(|error| ApiError::bad_request(error.to_string()))
}

/// Runs discovery on a blocking thread; an unreachable server is a 502 naming it.
async fn run_discovery(params: DiscoveryParams, now: i64) -> Result<Discovery, ApiError> {
    let url = params.prometheus.clone();
    let discovered = tokio::task::spawn_blocking(move || discover::run(&params, now))
        .await
        .map_err(|error| ApiError::internal(format!("discovery task failed: {error}")))?;
    discovered.map_err(|error| {
        tracing::warn!(prometheus = %url, %error, "prometheus discovery failed");
        match error {
            PrometheusError::Query { status, .. } if (400..500).contains(&status) => {
                ApiError::bad_request(format!("prometheus at {url} refused the request: {error}"))
            }
            PrometheusError::InvalidUrl { .. } | PrometheusError::InvalidQuery(_) => {
                ApiError::bad_request(error.to_string())
            }
            _ => ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("cannot query prometheus at {url}: {error}"),
            ),
        }
    })
}

fn query_parameters<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query.map(|Query(parsed)| parsed).map_err(|rejection| {
        ApiError::bad_request(format!(
            "invalid query parameters: {}",
            rejection.body_text()
        ))
    })
}

/// An app's report and what came of the discovery.
#[derive(Debug)]
pub(crate) struct AppReport {
    pub report: Onboarding,
    /// Data arrived from the app, or it has settings.
    pub known: bool,
    /// Why the discovery the request asked for (a Prometheus server, selector or host label
    /// given) could not run; a configured server's failure is the report's `discovery_error`.
    pub asked_failure: Option<ApiError>,
}

/// The reports of every app, from ingested data only (no Prometheus call): the apps whose
/// hosts sent data and those with stored settings, by name.
pub(crate) async fn reports_from_data(state: &AppState) -> Result<Vec<Onboarding>, ApiError> {
    let now = state.clock.now();
    let index = Arc::clone(state.guard.index());
    state
        .blocking(move |store| {
            let mut configs = BTreeMap::new();
            for (app, settings) in apps::all_stored_settings(store)? {
                configs.insert(app, Some(settings.map_err(unreadable_settings)?));
            }
            let held = index
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for app in held.hosts_by_app().into_keys() {
                if !app.is_empty() {
                    configs.entry(app).or_insert(None);
                }
            }
            let mut reports = Vec::with_capacity(configs.len());
            for (app, config) in &configs {
                let templates = store.templates(app)?;
                reports.push(vigil_onboarding::report(&ReportInput {
                    app,
                    index: &held,
                    config: config.as_ref(),
                    templates: &templates,
                    now,
                }));
            }
            Ok(reports)
        })
        .await
}

/// An app's report from ingested data, and whether the app is known at all.
async fn report_from_data(state: &AppState, app: &str) -> Result<(Onboarding, bool), ApiError> {
    let now = state.clock.now();
    let index = Arc::clone(state.guard.index());
    let report_app = app.to_owned();
    state
        .blocking(move |store| {
            let config = stored_config(store, &report_app)?;
            let templates = store.templates(&report_app)?;
            let held = index
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let report = vigil_onboarding::report(&ReportInput {
                app: &report_app,
                index: &held,
                config: config.as_ref(),
                templates: &templates,
                now,
            });
            let known = config.is_some() || report.hosts.count > 0 || !templates.is_empty();
            Ok((report, known))
        })
        .await
}

/// What non-admins are told when the app's Prometheus fails: the socket's words (connection
/// refused, timed out, the resolved address) would tell them which ports answer.
pub(crate) const UNREACHABLE_FOR_VIEWERS: &str = "could not reach the app's Prometheus";

/// Only admins name a server for Vigil to fetch from: anyone else may only have the app's
/// configured source queried (a URL of their own would make the server probe any address).
fn check_fetch_allowed(
    caller: Role,
    asked: &DiscoveryQuery,
    configured: Option<&PullSource>,
) -> Result<(), ApiError> {
    let Some(url) = asked.prometheus.as_deref() else {
        return Ok(());
    };
    let configured_url = configured.map(|source| source.url.trim().trim_end_matches('/'));
    if caller == Role::Admin || configured_url == Some(url.trim().trim_end_matches('/')) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "prometheus: only admins may name a prometheus server for vigil to query; leave it out \
         to look in the app's configured one",
    ))
}

/// The report as a caller of `role` may see it: for non-admins, failures of the app's
/// Prometheus say only that it could not be reached.
fn as_seen_by(role: Role, mut found: AppReport) -> AppReport {
    if role == Role::Admin {
        return found;
    }
    if let Some(error) = found.asked_failure.as_mut() {
        if error.status.is_server_error() {
            error.message = UNREACHABLE_FOR_VIEWERS.to_owned();
        }
    }
    if found.report.discovery_error.is_some() {
        found.report.discovery_error = Some(UNREACHABLE_FOR_VIEWERS.to_owned());
    }
    if let Some(discovery) = found.report.discovery.as_mut() {
        let checks = discovery
            .found
            .iter_mut()
            .filter_map(|signal| signal.check.as_mut());
        for check in checks.filter(|check| check.error.is_some()) {
            check.error = Some(UNREACHABLE_FOR_VIEWERS.to_owned());
        }
    }
    found
}

/// An app's report, with the discovery of its Prometheus when the request names one (admins)
/// or the app pulls from one (unless `discover=false`), as `caller` may see it.
pub(crate) async fn app_report(
    state: &AppState,
    caller: &ApiToken,
    app: &str,
    asked: &DiscoveryQuery,
) -> Result<AppReport, ApiError> {
    let found = discover_report(state, caller.role, app, asked).await?;
    Ok(as_seen_by(caller.role, found))
}

async fn discover_report(
    state: &AppState,
    caller: Role,
    app: &str,
    asked: &DiscoveryQuery,
) -> Result<AppReport, ApiError> {
    let (report, known) = report_from_data(state, app).await?;
    if let Err(error) = check_fetch_allowed(caller, asked, report.pull.as_ref()) {
        return Ok(AppReport {
            report,
            known,
            asked_failure: Some(error),
        });
    }
    let params = match discovery_params(app, asked, report.pull.as_ref()) {
        Ok(params) => params,
        Err(error) => {
            return Ok(AppReport {
                report,
                known,
                asked_failure: Some(error),
            })
        }
    };
    let Some(params) = params.filter(|_| asked.discover != Some(false)) else {
        return Ok(AppReport {
            report,
            known,
            asked_failure: None,
        });
    };
    // Asked for, a failing server is the answer; configured, the report still comes.
    let asked_for = asked.prometheus.is_some();
    match run_discovery(params, state.clock.now()).await {
        Ok(discovery) => Ok(AppReport {
            report: report.with_discovery(discovery),
            known,
            asked_failure: None,
        }),
        Err(error) if !asked_for => Ok(AppReport {
            report: Onboarding {
                discovery_error: Some(error.message),
                ..report
            },
            known,
            asked_failure: None,
        }),
        Err(error) => Ok(AppReport {
            report,
            known,
            asked_failure: Some(error),
        }),
    }
}

/// The answer for an app nobody knows of.
pub(crate) fn unknown_app(app: &str) -> ApiError {
    ApiError::not_found(format!(
        "app {app} is unknown: no data arrived from it and it has no settings; give \
         prometheus=URL&selector=... to discover its metrics"
    ))
}

/// Tries each of a person's own queries once against the Prometheus it will be pulled from: a
/// query it refuses (bad PromQL, several series per host) is a 400 naming it, never stored to
/// fail at every pull.
async fn check_own_queries(
    params: &DiscoveryParams,
    queries: &[PullQuery],
    now: i64,
) -> Result<(), ApiError> {
    if queries.is_empty() {
        return Ok(());
    }
    let checked_params = params.clone();
    let checked = queries.to_vec();
    let failure = tokio::task::spawn_blocking(move || {
        let client = vigil_ingest::prometheus::PrometheusClient::new(
            &checked_params.prometheus,
            discover::discovery_options(),
        )?;
        for (index, query) in checked.iter().enumerate() {
            if let Err(error) = discover::try_query(&client, &checked_params, query, now) {
                return Ok(Some((index, error)));
            }
        }
        Ok::<_, PrometheusError>(None)
    })
    .await
    .map_err(|error| ApiError::internal(format!("query check failed: {error}")))?;
    let (index, error) = match failure {
        Ok(None) => return Ok(()),
        Ok(Some(found)) => found,
        Err(error) => (0, error),
    };
    let refused = matches!(
        error,
        PrometheusError::Query { status, .. } if (400..500).contains(&status)
    ) || matches!(
        error,
        PrometheusError::InvalidQuery(_) | PrometheusError::DuplicateHost { .. }
    );
    if refused {
        return Err(ApiError::bad_request(format!(
            "queries[{index}].query: {error}"
        )));
    }
    Err(ApiError::new(
        StatusCode::BAD_GATEWAY,
        format!(
            "cannot check queries[{index}] against prometheus at {}: {error}",
            params.prometheus
        ),
    ))
}

/// Takes the query stored as `metric` out of the app's pull source (the source goes with its
/// last query: a pull source holds at least one) and returns the app. Needs an admin token,
/// checked here.
pub(crate) async fn remove_pull_query(
    state: &AppState,
    token: &ApiToken,
    app: String,
    metric: String,
) -> Result<String, ApiError> {
    crate::auth::require(token, Role::Admin)?;
    let intake = Arc::clone(&state.intake);
    let store_app = app.clone();
    state
        .blocking(move |store| {
            let mut config = stored_config(store, &store_app)?.unwrap_or_default();
            let source = config.prometheus.as_mut().ok_or_else(|| {
                ApiError::not_found(format!("app: {store_app} has no pull source"))
            })?;
            let before = source.queries.len();
            source.queries.retain(|query| query.metric != metric);
            if source.queries.len() == before {
                return Err(ApiError::not_found(format!(
                    "metric: the pull source of {store_app} has no query stored as {metric:?}"
                )));
            }
            if source.queries.is_empty() {
                config.prometheus = None;
            }
            crate::ingest::store_app_settings(store, &intake, &store_app, &config)?;
            Ok(())
        })
        .await?;
    tracing::info!(app = %app, by = %token.name, "pull query removed");
    Ok(app)
}

/// A change of the metrics an app declares judged in every release.
#[derive(Debug, Clone)]
pub(crate) enum Declaration {
    /// Declare the metric (in place of the app's earlier declaration of the same name).
    Declare(MetricMeta),
    /// Take the metric of this name out.
    Remove(String),
}

impl Declaration {
    fn apply_to(self, app: &str, declared: &mut Vec<MetricMeta>) -> Result<(), ApiError> {
        match self {
            Declaration::Declare(meta) => {
                match declared.iter_mut().find(|known| known.name == meta.name) {
                    Some(known) => *known = meta,
                    None => declared.push(meta),
                }
                Ok(())
            }
            Declaration::Remove(metric) => {
                let before = declared.len();
                declared.retain(|known| known.name != metric);
                if declared.len() == before {
                    return Err(ApiError::not_found(format!(
                        "metric: app {app} declares no metric {metric:?}"
                    )));
                }
                Ok(())
            }
        }
    }
}

/// Changes the metrics `app` declares judged, through the checks and the storing of
/// `PUT /api/v1/apps/{app}`, and returns the app. Needs an admin token, checked here.
pub(crate) async fn change_declaration(
    state: &AppState,
    token: &ApiToken,
    app: String,
    change: Declaration,
) -> Result<String, ApiError> {
    crate::auth::require(token, Role::Admin)?;
    validate::name(&app).map_err(|problem| problem.at("app"))?;
    let described = format!("{change:?}");
    let intake = Arc::clone(&state.intake);
    let store_app = app.clone();
    state
        .blocking(move |store| {
            // Read, changed and stored in one blocking call.
            let mut config = stored_config(store, &store_app)?.unwrap_or_default();
            change.apply_to(&store_app, &mut config.metrics)?;
            crate::ingest::store_app_settings(store, &intake, &store_app, &config)?;
            Ok(())
        })
        .await?;
    tracing::info!(app = %app, change = %described, by = %token.name, "declared metrics changed");
    Ok(app)
}

/// `GET /api/v1/apps/{app}/onboarding`.
pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(app): Path<String>,
    query: Result<Query<DiscoveryQuery>, QueryRejection>,
) -> Result<Json<Onboarding>, ApiError> {
    let token = state.authorize(&headers, Role::Viewer).await?;
    let asked = query_parameters(query)?;
    let found = app_report(&state, &token, &app, &asked).await?;
    if let Some(error) = found.asked_failure {
        return Err(error);
    }
    if !found.known && found.report.discovery.is_none() {
        return Err(unknown_app(&app));
    }
    Ok(Json(found.report))
}

/// `POST /api/v1/apps/{app}/onboarding/apply`.
pub async fn apply(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(app): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<ApplyAnswer>, ApiError> {
    let token = state.authorize(&headers, Role::Admin).await?;
    let request: ApplyRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ApplyRequest::default()
    } else {
        crate::request::parse_request(body).await?
    };
    Ok(Json(apply_onboarding(&state, &token, app, request).await?))
}

/// Discovers the app's Prometheus (unless `signals` is empty), merges the proposals asked for
/// and the request's own queries into the app's pull source and stores it. Needs an admin
/// token, checked here.
pub(crate) async fn apply_onboarding(
    state: &AppState,
    token: &ApiToken,
    app: String,
    request: ApplyRequest,
) -> Result<ApplyAnswer, ApiError> {
    crate::auth::require(token, Role::Admin)?;
    validate::name(&app).map_err(|problem| problem.at("app"))?;
    for (index, query) in request.queries.iter().enumerate() {
        validate::name(&query.metric)
            .map_err(|problem| problem.at(format!("queries[{index}].metric")))?;
    }
    let lookup_app = app.clone();
    let current = state
        .blocking(move |store| stored_config(store, &lookup_app))
        .await?;
    let asked = DiscoveryQuery {
        prometheus: request.prometheus.clone(),
        selector: request.selector.clone(),
        host_label: request.host_label.clone(),
        step_seconds: request.step_seconds,
        discover: None,
    };
    let configured = current
        .as_ref()
        .and_then(|config| config.prometheus.as_ref());
    let params = discovery_params(&app, &asked, configured)?.ok_or_else(|| {
        ApiError::bad_request(
            "no prometheus server: give \"prometheus\" (and \"selector\"), or configure the \
             app's pull source first",
        )
    })?;
    let wanted = |signal: Signal| {
        request
            .signals
            .as_ref()
            .is_none_or(|signals| signals.contains(&signal))
    };
    let mut queries = Vec::new();
    let mut skipped = Vec::new();
    let mut missing = Vec::new();
    if request
        .signals
        .as_ref()
        .is_none_or(|signals| !signals.is_empty())
    {
        let discovery = run_discovery(params.clone(), state.clock.now()).await?;
        for found in discovery.found.iter().filter(|found| wanted(found.signal)) {
            match found.check.as_ref().and_then(|check| check.error.as_ref()) {
                Some(error) => skipped.push(SkippedQuery {
                    query: found.query.clone(),
                    reason: format!("the query failed when tried: {error}"),
                }),
                None => queries.push(found.query.clone()),
            }
        }
        let asked_for = |entry: &&MissingSignal| request.signals.is_some() && wanted(entry.signal);
        missing.extend(discovery.missing.iter().filter(asked_for).cloned());
    }
    check_own_queries(&params, &request.queries, state.clock.now()).await?;
    queries.extend(request.queries.iter().cloned());
    let intake = Arc::clone(&state.intake);
    let store_app = app.clone();
    let merged = state
        .blocking(move |store| {
            let latest = stored_config(store, &store_app)?;
            let merged =
                merge_queries(latest.as_ref(), &params, &queries).map_err(|error| match error {
                    ApplyError::OtherServer { .. } | ApplyError::OtherHostLabel { .. } => {
                        ApiError::conflict(error.to_string())
                    }
                    ApplyError::Nothing => ApiError::bad_request(format!(
                        "nothing to apply: discovery found no metric for {} on {} and no \
                         queries were given",
                        params.selector, params.prometheus
                    )),
                    ApplyError::Invalid(_) => ApiError::bad_request(error.to_string()),
                })?;
            crate::ingest::store_app_settings(store, &intake, &store_app, &merged.settings)?;
            Ok(merged)
        })
        .await?;
    tracing::info!(app = %app, by = %token.name, added = merged.added.len(), skipped = merged.skipped.len(), "onboarding queries applied");
    skipped.extend(merged.skipped);
    Ok(ApplyAnswer {
        app,
        added: merged.added,
        skipped,
        missing,
        settings: merged.settings,
    })
}
