//! The Apps pages: every app Vigil knows (its hosts sent data, or it has stored settings) with
//! its onboarding state, and one app's whole onboarding report: hosts, metric and log sources,
//! coverage, next steps, the pull source, and the discovery of its Prometheus with the query
//! proposed for each signal. Admins apply the proposals, or add a query of their own.
//!
//! The pages call the same functions as the JSON handlers (`crate::onboarding`): the list uses
//! the reports from ingested data alone, never a Prometheus call, and both forms go through
//! `apply_onboarding`, which checks the admin role itself.

mod metric_groups;
mod rules;
mod signatures;
mod view;
mod words;

use maud::html;
use std::fmt::Write;

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use vigil_core::model::{Direction, MetricKind, MetricMeta};
use vigil_core::release::Role;
use vigil_guard::pull::PullQuery;
use vigil_onboarding::Signal;

use super::html::{time_element, url};
use super::session::{checked_form, signed_in, Session, SessionForm};
use super::{html_page, PageError, Section};
use crate::error::ApiError;
use crate::onboarding::{
    app_report, apply_onboarding, change_declaration, remove_pull_query, reports_from_data,
    ApplyRequest, Declaration, DiscoveryQuery,
};
use crate::state::AppState;
pub use rules::{put_rule, remove_rule};
pub use signatures::remove as remove_signature;
use view::{apps_table, AppPage};

/// Longest metric name or query the form for a query of one's own takes, in bytes.
const MAX_QUERY_BYTES: usize = 4000;

/// `/apps`: every app with its state, hosts and the families covered.
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, PageError> {
    let session = signed_in(&state, &headers, &uri).await?;
    let reports = reports_from_data(&state).await?;
    let body = html! {
        h1 { "Apps" }
        p class="subtitle" {
            "Every app Vigil receives data from or holds settings for, and how much of it Vigil \
             sees, from the data it holds as of " (time_element(state.clock.now()))
            ". Open an app for its whole report and to look for its metrics in Prometheus."
        }
        (apps_table(&reports))
    };
    Ok(html_page(
        StatusCode::OK,
        "Apps",
        Some(&session),
        Some(Section::Apps),
        body,
    ))
}

/// The query of an app's page: where to look for its metrics, and what was just done.
#[derive(Debug, Default, Deserialize)]
pub struct AppQuery {
    #[serde(default)]
    prometheus: Option<String>,
    #[serde(default)]
    selector: Option<String>,
    #[serde(default)]
    host_label: Option<String>,
    /// `applied` or `query`.
    #[serde(default)]
    done: Option<String>,
    #[serde(default)]
    added: Option<usize>,
    #[serde(default)]
    skipped: Option<usize>,
}

/// A value given in a form, `None` when left empty.
fn given(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim)
        .filter(|text| !text.is_empty())
        .map(str::to_owned)
}

impl AppQuery {
    fn discovery_query(&self) -> DiscoveryQuery {
        DiscoveryQuery {
            prometheus: given(self.prometheus.as_deref()),
            selector: given(self.selector.as_deref()),
            host_label: given(self.host_label.as_deref()),
            step_seconds: None,
            discover: None,
        }
    }

    fn notice(&self) -> Option<String> {
        match self.done.as_deref()? {
            "applied" => {
                let added = self.added.unwrap_or(0);
                let skipped = self.skipped.unwrap_or(0);
                let mut text = format!(
                    "Applied: {added} {} added to the pull source",
                    if added == 1 { "query" } else { "queries" }
                );
                if skipped > 0 {
                    let _ = write!(
                        text,
                        ", {skipped} left out (already pulled, or failed when tried)"
                    );
                }
                text.push_str(". They are fetched every step.");
                Some(text)
            }
            "query" => Some(
                "Your query was added to the pull source; it is fetched every step.".to_owned(),
            ),
            "removed" => Some("The query was removed from the pull source.".to_owned()),
            "declared" => Some(
                "The metric is declared: every release created from now on is judged on it."
                    .to_owned(),
            ),
            "undeclared" => Some(
                "The metric is no longer declared; releases already created keep it.".to_owned(),
            ),
            "rule" => Some(
                "The rule is saved: every release created from now on is judged by it.".to_owned(),
            ),
            "unruled" => Some("The rule is removed; releases already created keep it.".to_owned()),
            "unsigned" => Some(
                "The signature is removed: it suppresses nothing from the next step on.".to_owned(),
            ),
            _ => None,
        }
    }
}

/// `/apps/{app}`: the app's whole report, with the discovery of its Prometheus when it pulls
/// from one or the form names one.
pub async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(app): Path<String>,
    Query(query): Query<AppQuery>,
) -> Result<Response, PageError> {
    let session = signed_in(&state, &headers, &uri).await?;
    let asked = query.discovery_query();
    let found = app_report(&state, &session.token, &app, &asked).await?;
    let unknown = !found.known && found.report.discovery.is_none();
    let status = match (&found.asked_failure, unknown) {
        (Some(error), _) => error.status,
        (None, true) => StatusCode::NOT_FOUND,
        (None, false) => StatusCode::OK,
    };
    let failing = state.pull_failures.of_app(&app);
    let settings_of = app.clone();
    let (declared, rules) = state
        .blocking(move |store| {
            let config = vigil_guard::apps::stored_app_config(store, &settings_of)?;
            Ok(config.map_or_else(Default::default, |settings| {
                (settings.metrics, settings.rules)
            }))
        })
        .await?;
    let library = crate::signatures::app_signatures(&state, app.clone()).await?;
    let view = AppPage {
        library: signatures::section(&app, &library, &session),
        found: &found,
        asked: &asked,
        session: &session,
        notice: query.notice(),
        failing: &failing,
        declared: &declared,
        rules: &rules,
    };
    let body = view.body(unknown);
    let title = format!("{app} (onboarding)");
    Ok(html_page(
        status,
        &title,
        Some(&session),
        Some(Section::Apps),
        body,
    ))
}

/// The fields of the forms of an app's page; each form sends some of them.
#[derive(Debug, Deserialize)]
pub struct AppForm {
    #[serde(default)]
    form_key: String,
    /// Where discovery looked, as the page showed it; empty: the app's pull source.
    #[serde(default)]
    prometheus: String,
    #[serde(default)]
    selector: String,
    #[serde(default)]
    host_label: String,
    #[serde(default)]
    step_seconds: String,
    /// A query of one's own: the metric name it is stored as, and its PromQL.
    #[serde(default)]
    metric: String,
    #[serde(default)]
    query: String,
    /// A declared metric: what a change of it is (`system`, `middleware`, `business`), which
    /// way it hurts (`increase`, `decrease`, `either`), its unit, and whether it is critical
    /// (a checkbox, sent only when ticked).
    #[serde(default)]
    kind: String,
    #[serde(default)]
    direction: String,
    #[serde(default)]
    unit: String,
    #[serde(default)]
    critical: Option<String>,
}

impl SessionForm for AppForm {
    fn form_key(&self) -> &str {
        &self.form_key
    }
}

impl AppForm {
    /// The metric this form declares, its choices read as the JSON words they are.
    fn declared_metric(&self) -> Result<MetricMeta, ApiError> {
        let kind = choice::<MetricKind>("kind", &self.kind)?;
        let direction = choice::<Direction>("direction", &self.direction)?;
        Ok(MetricMeta {
            name: self.metric.trim().to_owned(),
            kind,
            unit: self.unit.trim().to_owned(),
            direction,
            critical: self.critical.is_some(),
            judged: true,
        })
    }

    /// The apply request of this form: where to look, which proposals, which own queries.
    fn apply_request(
        &self,
        signals: Option<Vec<Signal>>,
        queries: Vec<PullQuery>,
    ) -> Result<ApplyRequest, ApiError> {
        let step_seconds = match given(Some(&self.step_seconds)) {
            Some(text) => Some(text.parse::<i64>().map_err(|_| {
                ApiError::bad_request("step_seconds must be a whole number of seconds")
            })?),
            None => None,
        };
        Ok(ApplyRequest {
            prometheus: given(Some(&self.prometheus)),
            selector: given(Some(&self.selector)),
            host_label: given(Some(&self.host_label)),
            step_seconds,
            signals,
            queries,
        })
    }
}

/// One of a form's choices, by the word the JSON API takes for it.
fn choice<T: serde::de::DeserializeOwned>(field: &str, word: &str) -> Result<T, ApiError> {
    serde_json::from_value(serde_json::Value::String(word.trim().to_owned())).map_err(|_| {
        ApiError::bad_request(format!(
            "{field}: {:?} is not one of the choices",
            word.trim()
        ))
    })
}

/// An admin's form post on an app's page (see [`checked_form`]).
async fn admin_form(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    app: &str,
    form: Result<Form<AppForm>, FormRejection>,
) -> Result<(Session, AppForm), PageError> {
    let back_to = format!("/apps/{}", url(app));
    checked_form(state, headers, uri, back_to, Role::Admin, form).await
}

/// "Apply these queries": every proposal that answered its trial joins the pull source.
pub async fn apply(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(app): Path<String>,
    form: Result<Form<AppForm>, FormRejection>,
) -> Result<Response, PageError> {
    let (session, request) = admin_form(&state, &headers, &uri, &app, form).await?;
    let apply_request = request.apply_request(None, Vec::new())?;
    let answer = apply_onboarding(&state, &session.token, app, apply_request).await?;
    let location = format!(
        "/apps/{}?done=applied&added={}&skipped={}#summary",
        url(&answer.app),
        answer.added.len(),
        answer.skipped.len()
    );
    Ok(Redirect::to(&location).into_response())
}

/// A query of the admin's own (metric name and PromQL) joins the pull source, without
/// discovery.
pub async fn add_query(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(app): Path<String>,
    form: Result<Form<AppForm>, FormRejection>,
) -> Result<Response, PageError> {
    let (session, request) = admin_form(&state, &headers, &uri, &app, form).await?;
    let metric = request.metric.trim();
    let query = request.query.trim();
    if metric.is_empty() || query.is_empty() {
        return Err(ApiError::bad_request(
            "give both the metric name and its promql query returning one series per host",
        )
        .into());
    }
    if metric.len() > MAX_QUERY_BYTES || query.len() > MAX_QUERY_BYTES {
        return Err(ApiError::bad_request(format!(
            "the metric name and the query must each fit in {MAX_QUERY_BYTES} bytes"
        ))
        .into());
    }
    let own = PullQuery {
        metric: metric.to_owned(),
        query: query.to_owned(),
    };
    let apply_request = request.apply_request(Some(Vec::new()), vec![own])?;
    let answer = apply_onboarding(&state, &session.token, app, apply_request).await?;
    if let Some(left_out) = answer.skipped.first() {
        return Err(
            ApiError::conflict(format!("the query was not added: {}", left_out.reason)).into(),
        );
    }
    let location = format!("/apps/{}?done=query#pull", url(&answer.app));
    Ok(Redirect::to(&location).into_response())
}

/// "Remove": an admin takes a query out of the app's pull source.
pub async fn remove_query(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(app): Path<String>,
    form: Result<Form<AppForm>, FormRejection>,
) -> Result<Response, PageError> {
    let (session, request) = admin_form(&state, &headers, &uri, &app, form).await?;
    let metric = request.metric.trim().to_owned();
    let removed = remove_pull_query(&state, &session.token, app, metric).await?;
    let location = format!("/apps/{}?done=removed#pull", url(&removed));
    Ok(Redirect::to(&location).into_response())
}

/// "Declare": an admin declares a metric judged in every release of the app.
pub async fn declare(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(app): Path<String>,
    form: Result<Form<AppForm>, FormRejection>,
) -> Result<Response, PageError> {
    let (session, request) = admin_form(&state, &headers, &uri, &app, form).await?;
    let change = Declaration::Declare(request.declared_metric()?);
    let declared = change_declaration(&state, &session.token, app, change).await?;
    Ok(Redirect::to(&format!("/apps/{}?done=declared#judged", url(&declared))).into_response())
}

/// "Remove": an admin takes a metric out of the app's declared metrics.
pub async fn undeclare(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(app): Path<String>,
    form: Result<Form<AppForm>, FormRejection>,
) -> Result<Response, PageError> {
    let (session, request) = admin_form(&state, &headers, &uri, &app, form).await?;
    let change = Declaration::Remove(request.metric.trim().to_owned());
    let removed = change_declaration(&state, &session.token, app, change).await?;
    Ok(Redirect::to(&format!("/apps/{}?done=undeclared#judged", url(&removed))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_notice_names_what_was_done() {
        let applied = AppQuery {
            done: Some("applied".to_owned()),
            added: Some(1),
            skipped: Some(2),
            ..AppQuery::default()
        };
        assert_eq!(
            applied.notice().as_deref(),
            Some(
                "Applied: 1 query added to the pull source, 2 left out (already pulled, or \
                 failed when tried). They are fetched every step."
            )
        );
        let own = AppQuery {
            done: Some("query".to_owned()),
            ..AppQuery::default()
        };
        assert!(own.notice().unwrap().starts_with("Your query was added"));
        let odd = AppQuery {
            done: Some("<script>".to_owned()),
            ..AppQuery::default()
        };
        assert_eq!(odd.notice(), None);
    }

    #[test]
    fn empty_form_values_leave_the_choice_to_the_pull_source() {
        let query = AppQuery {
            prometheus: Some("  ".to_owned()),
            selector: Some(" job=\"a\" ".to_owned()),
            ..AppQuery::default()
        };
        let asked = query.discovery_query();
        assert_eq!(asked.prometheus, None);
        assert_eq!(asked.selector.as_deref(), Some("job=\"a\""));
        assert_eq!(asked.host_label, None);
    }
}
