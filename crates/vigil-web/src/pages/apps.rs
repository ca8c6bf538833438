//! The Apps pages: every app Vigil knows (its hosts sent data, or it has stored settings) with
//! its onboarding state, and one app's whole onboarding report: hosts, metric and log sources,
//! coverage, next steps, the pull source, and the discovery of its Prometheus with the query
//! proposed for each signal. Admins apply the proposals, or add a query of their own.
//!
//! The pages call the same functions as the JSON handlers (`crate::onboarding`): the list uses
//! the reports from ingested data alone, never a Prometheus call, and both forms go through
//! `apply_onboarding`, which checks the admin role itself.

use std::fmt::Write;

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use vigil_core::model::{Direction, MetricKind, MetricMeta};
use vigil_core::release::Role;
use vigil_guard::onboarding::discover::{Discovery, FoundSignal};
use vigil_guard::onboarding::{
    ConnectionState, FamilyCoverage, MetricSource, MetricType, Onboarding, Signal, SignalFamily,
};
use vigil_guard::pull::{PullFailure, PullQuery};

use super::html::{connection_badge, esc, found_badge, time_element, url};
use super::metric_groups::{metric_groups, MetricGroup, GROUPED_ABOVE};
use super::session::{checked_form, signed_in, Session, SessionForm};
use super::{html_page, PageError, Section};
use crate::error::ApiError;
use crate::onboarding::{
    app_report, apply_onboarding, change_declaration, default_selector, remove_pull_query,
    reports_from_data, unknown_app, AppReport, ApplyRequest, Declaration, DiscoveryQuery,
    DEFAULT_HOST_LABEL, UNREACHABLE_FOR_VIEWERS,
};
use crate::AppState;

/// The families in the order the pages show them.
const FAMILIES: [SignalFamily; 3] = [
    SignalFamily::System,
    SignalFamily::Middleware,
    SignalFamily::Logs,
];

/// Most hosts listed in an app's hosts table.
const HOSTS_LISTED: usize = 100;

/// The head of a table of metric families, and the opening of its body.
const METRIC_TABLE_HEAD: &str = "<thead><tr><th scope=\"col\">Metric</th>\
     <th scope=\"col\">Signals</th><th scope=\"col\">Hosts reporting</th>\
     <th scope=\"col\">Type and unit</th><th scope=\"col\">Newest sample</th>\
     <th scope=\"col\">A release declares it</th></tr></thead><tbody>";

/// Longest metric name or query the form for a query of one's own takes, in bytes.
const MAX_QUERY_BYTES: usize = 4000;

fn family_words(family: SignalFamily) -> &'static str {
    match family {
        SignalFamily::System => "system",
        SignalFamily::Middleware => "middleware",
        SignalFamily::Logs => "logs",
    }
}

/// What a state means, in one sentence.
fn state_meaning(state: ConnectionState) -> &'static str {
    match state {
        ConnectionState::Connected => "System and middleware metrics arrive.",
        ConnectionState::Partial => {
            "Some data arrives, but not both system and middleware metrics."
        }
        ConnectionState::NotConnected => "Nothing arrives from this app yet.",
    }
}

fn metric_type_words(metric_type: MetricType) -> &'static str {
    match metric_type {
        MetricType::Counter => "counter",
        MetricType::Gauge => "gauge",
        MetricType::Histogram => "histogram",
        MetricType::Summary => "summary",
        MetricType::Unknown => "unknown",
    }
}

/// What a release should declare of a metric: `middleware, harmful when it increases,
/// critical`.
fn declaration_words(meta: &MetricMeta) -> String {
    let kind = match meta.kind {
        MetricKind::System => "system",
        MetricKind::Middleware => "middleware",
        MetricKind::Business => "business",
    };
    let direction = match meta.direction {
        Direction::Increase => "harmful when it increases",
        Direction::Decrease => "harmful when it decreases",
        Direction::Either => "harmful either way",
    };
    let critical = if meta.critical { ", critical" } else { "" };
    format!("{kind}, {direction}{critical}")
}

/// Signals as a person reads them: `CPU, memory`.
fn signal_list(signals: &[Signal]) -> String {
    signals
        .iter()
        .map(|signal| signal.describe())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Opens a section whose heading `title` labels it; `id` is its anchor.
fn open_section(out: &mut String, id: &str, title: &str) {
    let _ = write!(
        out,
        "<section id=\"{id}\" aria-labelledby=\"{id}-title\"><h2 id=\"{id}-title\">{}</h2>",
        esc(title)
    );
}

/// A time, or `absent` without one.
fn optional_time(out: &mut String, moment: Option<i64>, absent: &str) {
    match moment {
        Some(unix) => time_element(out, unix),
        None => out.push_str(absent),
    }
}

/// `/apps`: every app with its state, hosts and the families covered.
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, PageError> {
    let session = signed_in(&state, &headers, &uri).await?;
    let reports = reports_from_data(&state).await?;
    let mut body = String::with_capacity(2048 + reports.len() * 1200);
    body.push_str(
        "<h1>Apps</h1><p class=\"subtitle\">Every app Vigil receives data from or holds \
         settings for, and how much of it Vigil sees, from the data it holds as of ",
    );
    time_element(&mut body, state.clock.now());
    body.push_str(
        ". Open an app for its whole report and to look for its metrics in Prometheus.</p>",
    );
    apps_table(&mut body, &reports);
    Ok(html_page(
        StatusCode::OK,
        "Apps",
        Some(&session),
        Some(Section::Apps),
        &body,
    ))
}

fn apps_table(out: &mut String, reports: &[Onboarding]) {
    out.push_str(
        "<table class=\"apps\"><caption>Apps by name: onboarding state, hosts and the signals \
         covered (system: CPU, memory, load; middleware: request rate, latency, errors; logs)\
         </caption><thead><tr><th scope=\"col\">App</th><th scope=\"col\">State</th>\
         <th scope=\"col\">Hosts</th><th scope=\"col\">System</th>\
         <th scope=\"col\">Middleware</th><th scope=\"col\">Logs</th>\
         <th scope=\"col\">Newest data</th></tr></thead><tbody>",
    );
    if reports.is_empty() {
        out.push_str(
            "<tr><td colspan=\"7\">No app yet: push samples or log lines for an app, or give \
             it settings (<code>PUT /api/v1/apps/{app}</code>).</td></tr>",
        );
    }
    for report in reports {
        let _ = write!(
            out,
            "<tr><th scope=\"row\"><a href=\"/apps/{}\">{}</a></th><td>",
            url(&report.app),
            esc(&report.app)
        );
        connection_badge(out, report.state);
        let _ = write!(out, "</td><td>{}</td>", report.hosts.count);
        for family in FAMILIES {
            out.push_str("<td>");
            family_cell(out, &report.coverage, family);
            out.push_str("</td>");
        }
        out.push_str("<td>");
        optional_time(out, report.hosts.last_seen, "none yet");
        out.push_str("</td></tr>");
    }
    out.push_str("</tbody></table>");
}

/// A family's badge (covered or not) and, for a family of several signals, which are found.
fn family_cell(out: &mut String, coverage: &[FamilyCoverage], family: SignalFamily) {
    let Some(entry) = coverage.iter().find(|entry| entry.family == family) else {
        found_badge(out, false, "not covered");
        return;
    };
    found_badge(
        out,
        entry.covered,
        if entry.covered {
            "covered"
        } else {
            "not covered"
        },
    );
    if entry.signals.len() < 2 {
        return;
    }
    let signals_where = |found: bool| -> Vec<Signal> {
        entry
            .signals
            .iter()
            .filter(|signal| signal.found == found)
            .map(|signal| signal.signal)
            .collect()
    };
    let found = signals_where(true);
    let missing = signals_where(false);
    out.push_str("<div class=\"help\">");
    if !found.is_empty() {
        let _ = write!(out, "found: {}", signal_list(&found));
    }
    if !found.is_empty() && !missing.is_empty() {
        out.push_str("; ");
    }
    if !missing.is_empty() {
        let _ = write!(out, "missing: {}", signal_list(&missing));
    }
    out.push_str("</div>");
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
    let declared = state
        .blocking(move |store| {
            let config = vigil_guard::pull::stored_app_config(store, &settings_of)?;
            Ok(config.map(|settings| settings.metrics).unwrap_or_default())
        })
        .await?;
    let view = AppPage {
        found: &found,
        asked: &asked,
        session: &session,
        notice: query.notice(),
        failing: &failing,
        declared: &declared,
    };
    let mut body = String::with_capacity(32 * 1024);
    view.write(&mut body, unknown);
    let title = format!("{app} (onboarding)");
    Ok(html_page(
        status,
        &title,
        Some(&session),
        Some(Section::Apps),
        &body,
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

/// Everything one app's page shows.
struct AppPage<'a> {
    found: &'a AppReport,
    asked: &'a DiscoveryQuery,
    session: &'a Session,
    notice: Option<String>,
    /// The app's pull queries whose last pull failed.
    failing: &'a [PullFailure],
    /// The metrics the app declares judged in every release.
    declared: &'a [MetricMeta],
}

impl AppPage<'_> {
    fn report(&self) -> &Onboarding {
        &self.found.report
    }

    fn write(&self, out: &mut String, unknown: bool) {
        let report = self.report();
        let _ = write!(
            out,
            "<h1>{}</h1><p class=\"subtitle\">What Vigil receives from this app and what to \
             configure next, as of ",
            esc(&report.app)
        );
        time_element(out, report.at);
        out.push_str(". <a href=\"/apps\">All apps</a></p>");
        if let Some(notice) = &self.notice {
            let _ = write!(
                out,
                "<p class=\"notice\" role=\"status\">{}</p>",
                esc(notice)
            );
        }
        if unknown {
            let _ = write!(
                out,
                "<p class=\"notice error\" role=\"alert\">{}</p>",
                esc(&unknown_app(&report.app).message)
            );
            self.write_discovery(out);
            return;
        }
        self.write_summary(out);
        self.write_coverage(out);
        self.write_next_steps(out);
        self.write_hosts(out);
        self.write_metrics(out);
        self.write_judged(out);
        self.write_logs(out);
        self.write_pull(out);
        self.write_discovery(out);
    }

    fn write_summary(&self, out: &mut String) {
        let report = self.report();
        out.push_str(
            "<section id=\"summary\" class=\"summary panel\" aria-labelledby=\"summary-title\">\
             <h2 id=\"summary-title\">Summary</h2><dl class=\"facts\"><div><dt>State</dt><dd>",
        );
        connection_badge(out, report.state);
        let _ = write!(
            out,
            "</dd></div><div><dt>Hosts seen</dt><dd>{}</dd></div><div><dt>Newest data</dt><dd>",
            report.hosts.count
        );
        optional_time(out, report.hosts.last_seen, "none yet");
        out.push_str("</dd></div><div><dt>Pull source</dt><dd>");
        match &report.pull {
            Some(source) => {
                let _ = write!(out, "<code>{}</code>", esc(&source.url));
            }
            None => out.push_str("none"),
        }
        let _ = write!(
            out,
            "</dd></div></dl><p class=\"reason\">{}</p></section>",
            state_meaning(report.state)
        );
    }

    fn write_coverage(&self, out: &mut String) {
        open_section(out, "coverage", "Coverage");
        out.push_str(
            "<table class=\"coverage\"><caption>The signals a release is judged on, found or missing, with what fills \
             each</caption><thead><tr><th scope=\"col\">Family</th>\
             <th scope=\"col\">Signal</th><th scope=\"col\">Status</th>\
             <th scope=\"col\">Filled by</th></tr></thead><tbody>",
        );
        for family in &self.report().coverage {
            for signal in &family.signals {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><th scope=\"row\">{}</th><td>",
                    family_words(family.family),
                    esc(signal.signal.describe())
                );
                found_badge(
                    out,
                    signal.found,
                    if signal.found { "found" } else { "missing" },
                );
                out.push_str("</td><td>");
                let sources: Vec<String> = signal
                    .sources
                    .iter()
                    .map(|source| format!("<code>{}</code>", esc(source)))
                    .collect();
                if sources.is_empty() {
                    out.push_str("nothing yet");
                } else {
                    out.push_str(&sources.join(", "));
                }
                out.push_str("</td></tr>");
            }
        }
        out.push_str("</tbody></table></section>");
    }

    fn write_next_steps(&self, out: &mut String) {
        open_section(out, "next-steps", "Next steps");
        let steps = &self.report().next_steps;
        if steps.is_empty() {
            out.push_str("<p>Nothing to do: every expected signal arrives.</p></section>");
            return;
        }
        out.push_str("<ol class=\"steps\">");
        for step in steps {
            let _ = write!(
                out,
                "<li><strong>{}</strong> ({}): {}</li>",
                esc(step.signal.describe()),
                family_words(step.family),
                esc(&step.text)
            );
        }
        out.push_str("</ol></section>");
    }

    fn write_hosts(&self, out: &mut String) {
        let hosts = &self.report().hosts;
        open_section(out, "hosts", "Hosts seen");
        if hosts.hosts.is_empty() {
            out.push_str("<p>No host of this app sent data yet.</p></section>");
            return;
        }
        out.push_str(
            "<table class=\"hosts\"><caption>The app's hosts with data, by name</caption>\
             <thead><tr><th scope=\"col\">Host</th><th scope=\"col\">Newest data</th>\
             <th scope=\"col\">Metric series</th><th scope=\"col\">Log templates</th></tr>\
             </thead><tbody>",
        );
        for host in hosts.hosts.iter().take(HOSTS_LISTED) {
            let _ = write!(out, "<tr><th scope=\"row\">{}</th><td>", esc(&host.host));
            time_element(out, host.last_seen);
            let _ = write!(
                out,
                "</td><td>{}</td><td>{}</td></tr>",
                host.metric_series, host.log_templates
            );
        }
        out.push_str("</tbody></table>");
        if hosts.hosts.len() > HOSTS_LISTED {
            let _ = write!(
                out,
                "<p class=\"help\">Showing the first {HOSTS_LISTED} of {} hosts.</p>",
                hosts.hosts.len()
            );
        }
        out.push_str("</section>");
    }

    fn write_metrics(&self, out: &mut String) {
        let report = self.report();
        open_section(out, "metrics", "Metric sources");
        if report.metrics.is_empty() {
            out.push_str("<p>No metric arrived from this app yet.</p></section>");
            return;
        }
        if report.metrics.len() <= GROUPED_ABOVE {
            out.push_str(
                "<table class=\"metrics\"><caption>Metric families received, most hosts \
                 first, with the signals each fills</caption>",
            );
            out.push_str(METRIC_TABLE_HEAD);
            for metric in &report.metrics {
                self.write_metric_row(out, metric);
            }
            out.push_str("</tbody></table></section>");
            return;
        }
        let _ = write!(
            out,
            "<p class=\"help\">{} metric families received, grouped by the words their \
             names start with; the groups holding a family that fills a signal or is judged \
             are open.</p>",
            report.metrics.len()
        );
        for group in metric_groups(&report.metrics, self.declared) {
            self.write_metric_group(out, &group);
        }
        out.push_str("</section>");
    }

    /// One group of metric families, folded unless a family of it is in use.
    fn write_metric_group(&self, out: &mut String, group: &MetricGroup<'_>) {
        let open = if group.in_use > 0 { " open" } else { "" };
        let families = group.metrics.len();
        let _ = write!(
            out,
            "<details class=\"metric-group\"{open}><summary><code>{}_*</code> ({families} \
             {}, {} in use)</summary><table class=\"metrics\"><caption>Metric families \
             named <code>{}_*</code>, most hosts first</caption>",
            esc(group.prefix),
            if families == 1 { "family" } else { "families" },
            group.in_use,
            esc(group.prefix)
        );
        out.push_str(METRIC_TABLE_HEAD);
        for metric in &group.metrics {
            self.write_metric_row(out, metric);
        }
        out.push_str("</tbody></table></details>");
    }

    /// The metrics the app declares judged, with the admin's forms to declare and remove one.
    fn write_judged(&self, out: &mut String) {
        open_section(out, "judged", "Judged metrics");
        out.push_str(
            "<p class=\"help\">A release is judged on the metrics it lists and on these, \
             which are copied into every release of the app when it is created: a change of \
             one may pause the release. Every other metric may only recommend.</p>",
        );
        let admin = self.session.is_admin();
        if self.declared.is_empty() {
            out.push_str("<p>The app declares no metric.</p>");
        } else {
            out.push_str(
                "<table class=\"judged\"><caption>The metrics every release of the app is \
                 judged on</caption><thead><tr><th scope=\"col\">Metric</th>\
                 <th scope=\"col\">Declared as</th><th scope=\"col\">Unit</th>",
            );
            if admin {
                out.push_str("<th scope=\"col\">Remove</th>");
            }
            out.push_str("</tr></thead><tbody>");
            for meta in self.declared {
                let _ = write!(
                    out,
                    "<tr><th scope=\"row\"><code>{}</code></th><td>{}</td><td>{}</td>",
                    esc(&meta.name),
                    esc(&declaration_words(meta)),
                    esc(&meta.unit)
                );
                if admin {
                    self.write_undeclare_form(out, &meta.name);
                }
                out.push_str("</tr>");
            }
            out.push_str("</tbody></table>");
        }
        if admin {
            self.write_declare_form(out);
        } else {
            out.push_str("<p class=\"help\">Declaring a metric needs an admin token.</p>");
        }
        out.push_str("</section>");
    }

    fn write_undeclare_form(&self, out: &mut String, metric: &str) {
        let _ = write!(
            out,
            "<td><form class=\"remove-declared\" method=\"post\" \
             action=\"/apps/{}/metrics/remove\">{}\
             <input type=\"hidden\" name=\"metric\" value=\"{}\">\
             <button type=\"submit\" aria-label=\"Remove the declaration of {}\">Remove\
             </button></form></td>",
            url(&self.report().app),
            self.session.form_field(),
            esc(metric),
            esc(metric)
        );
    }

    fn write_declare_form(&self, out: &mut String) {
        let _ = write!(
            out,
            "<form class=\"declare-metric\" method=\"post\" action=\"/apps/{}/metrics\">{}\
             <fieldset><legend>Declare a judged metric</legend>\
             <div class=\"field\"><label for=\"declare-metric\">Metric name</label>\
             <input id=\"declare-metric\" name=\"metric\" type=\"text\" required \
             maxlength=\"{}\" autocomplete=\"off\"></div>\
             <div class=\"field\"><label for=\"declare-kind\">Kind</label>\
             <select id=\"declare-kind\" name=\"kind\"><option value=\"middleware\">middleware\
             </option><option value=\"system\">system</option>\
             <option value=\"business\">business</option></select></div>\
             <div class=\"field\"><label for=\"declare-direction\">Harmful when it</label>\
             <select id=\"declare-direction\" name=\"direction\">\
             <option value=\"increase\">increases</option>\
             <option value=\"decrease\">decreases</option>\
             <option value=\"either\">changes either way</option></select></div>\
             <div class=\"field\"><label for=\"declare-unit\">Unit</label>\
             <input id=\"declare-unit\" name=\"unit\" type=\"text\" maxlength=\"{}\" \
             autocomplete=\"off\"></div>\
             <div class=\"field\"><input id=\"declare-critical\" name=\"critical\" \
             type=\"checkbox\" value=\"on\"><label for=\"declare-critical\">Critical \
             (every host must report it)</label></div>\
             </fieldset><button type=\"submit\">Declare this metric</button></form>",
            url(&self.report().app),
            self.session.form_field(),
            vigil_core::validate::MAX_NAME_BYTES,
            vigil_core::validate::MAX_NAME_BYTES
        );
    }

    fn write_metric_row(&self, out: &mut String, metric: &MetricSource) {
        let pulled = if metric.pulled {
            " <span class=\"help\">(pulled)</span>"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<tr><th scope=\"row\"><code>{}</code>{pulled}</th><td>{}",
            esc(&metric.name),
            esc(&signal_list(&metric.signals))
        );
        if !metric.evidence.is_empty() {
            let _ = write!(
                out,
                "<div class=\"help\">{}</div>",
                esc(&metric.evidence.join("; "))
            );
        }
        let _ = write!(
            out,
            "</td><td>{} of {}",
            metric.hosts_reporting,
            self.report().hosts.count
        );
        if !metric.hosts_missing.is_empty() {
            let _ = write!(
                out,
                "<div class=\"help\">not from {}</div>",
                esc(&metric.hosts_missing.join(", "))
            );
        }
        let unit = if metric.unit.is_empty() {
            String::new()
        } else {
            format!(", {}", metric.unit)
        };
        let _ = write!(
            out,
            "</td><td>{}{}</td><td>",
            metric_type_words(metric.metric_type),
            esc(&unit)
        );
        time_element(out, metric.last_sample);
        out.push_str("</td><td>");
        match &metric.suggested {
            Some(meta) => out.push_str(&esc(&declaration_words(meta)).to_string()),
            None => out.push_str("not judged: no expected signal, or not one series per host"),
        }
        out.push_str("</td></tr>");
    }

    fn write_logs(&self, out: &mut String) {
        let logs = &self.report().logs;
        open_section(out, "logs", "Log sources");
        if logs.hosts.is_empty() {
            out.push_str("<p>No log line arrived from this app yet.</p></section>");
            return;
        }
        let _ = write!(
            out,
            "<dl class=\"facts\"><div><dt>Hosts sending lines</dt><dd>{}</dd></div>\
             <div><dt>Lines</dt><dd>{}</dd></div><div><dt>Exception lines</dt><dd>{}</dd></div>\
             <div><dt>Templates</dt><dd>{}</dd></div>\
             <div><dt>Exception templates</dt><dd>{}</dd></div><div><dt>Newest line</dt><dd>",
            logs.hosts.len(),
            logs.lines,
            logs.exception_lines,
            logs.templates,
            logs.exception_templates
        );
        optional_time(out, logs.last_line, "none");
        out.push_str("</dd></div></dl>");
        if logs.top_exceptions.is_empty() {
            out.push_str("<p>No exception (error level or worse) was logged.</p></section>");
            return;
        }
        out.push_str(
            "<table class=\"exceptions\"><caption>The most frequent exception templates\
             </caption><thead><tr><th scope=\"col\">Template</th><th scope=\"col\">Level</th>\
             <th scope=\"col\">Lines</th><th scope=\"col\">Hosts</th></tr></thead><tbody>",
        );
        for template in &logs.top_exceptions {
            let _ = write!(
                out,
                "<tr><th scope=\"row\"><code>{}</code></th><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&template.text),
                esc(&template.level),
                template.lines,
                template.hosts
            );
        }
        out.push_str("</tbody></table></section>");
    }

    fn write_pull(&self, out: &mut String) {
        open_section(out, "pull", "Pull source");
        let Some(source) = &self.report().pull else {
            out.push_str(
                "<p>The app has no pull source: Vigil fetches nothing from Prometheus for it. \
                 Look for its metrics below; applying the proposed queries makes one.</p>\
                 </section>",
            );
            return;
        };
        let _ = write!(
            out,
            "<dl class=\"facts\"><div><dt>Prometheus</dt><dd><code>{}</code></dd></div>\
             <div><dt>Selector</dt><dd><code>{}</code></dd></div>\
             <div><dt>Host label</dt><dd><code>{}</code></dd></div>\
             <div><dt>Step</dt><dd>{} s</dd></div></dl>",
            esc(&source.url),
            esc(source.selector.as_deref().unwrap_or("none")),
            esc(&source.host_label),
            source.step_seconds
        );
        let admin = self.session.is_admin();
        out.push_str(
            "<table class=\"queries\"><caption>The queries fetched every step, each stored as \
             a metric of every host</caption><thead><tr><th scope=\"col\">Metric</th>\
             <th scope=\"col\">PromQL</th><th scope=\"col\">Last pull</th>",
        );
        if admin {
            out.push_str("<th scope=\"col\">Remove</th>");
        }
        out.push_str("</tr></thead><tbody>");
        for query in &source.queries {
            let _ = write!(
                out,
                "<tr><th scope=\"row\"><code>{}</code></th><td><code>{}</code></td><td>",
                esc(&query.metric),
                esc(&query.query)
            );
            self.write_pull_state(out, &query.metric);
            out.push_str("</td>");
            if admin {
                self.write_remove_form(out, &query.metric);
            }
            out.push_str("</tr>");
        }
        out.push_str("</tbody></table></section>");
    }

    /// Whether a query's last pull failed: when and (to admins, who chose the server) why.
    fn write_pull_state(&self, out: &mut String, metric: &str) {
        let Some(failure) = self.failing.iter().find(|failure| failure.metric == metric) else {
            out.push_str("ok");
            return;
        };
        out.push_str("<span class=\"notice error\" role=\"alert\">failing, last at ");
        time_element(out, failure.at);
        if self.session.is_admin() {
            let _ = write!(out, ": {}", esc(&failure.error));
        } else {
            let _ = write!(out, ": {}", esc(UNREACHABLE_FOR_VIEWERS));
        }
        out.push_str("</span>");
    }

    fn write_remove_form(&self, out: &mut String, metric: &str) {
        let _ = write!(
            out,
            "<td><form class=\"remove-query\" method=\"post\" action=\"/apps/{}/queries/remove\">\
             {}<input type=\"hidden\" name=\"metric\" value=\"{}\">\
             <button type=\"submit\" aria-label=\"Remove the query of {}\">Remove</button>\
             </form></td>",
            url(&self.report().app),
            self.session.form_field(),
            esc(metric),
            esc(metric)
        );
    }

    fn write_discovery(&self, out: &mut String) {
        open_section(out, "discovery", "Metrics in Prometheus");
        out.push_str(
            "<p class=\"help\">Vigil asks the Prometheus server which usual metric families it \
             holds under the app's labels (node exporter, client libraries, Micrometer, \
             OpenTelemetry, gRPC, nginx, HAProxy, Envoy) and proposes one pull query per \
             signal, one series per host, tried once.</p>",
        );
        self.write_discovery_form(out);
        let report = self.report();
        let failures = [
            self.found
                .asked_failure
                .as_ref()
                .map(|error| error.message.as_str()),
            report.discovery_error.as_deref(),
        ];
        for failure in failures.into_iter().flatten() {
            let _ = write!(
                out,
                "<p class=\"notice error\" role=\"alert\">{}</p>",
                esc(failure)
            );
        }
        if let Some(discovery) = &report.discovery {
            self.write_found(out, discovery);
            self.write_missing(out, discovery);
        }
        self.write_own_query_form(out);
        out.push_str("</section>");
    }

    /// The form that names where to look (a GET: looking changes nothing, viewers may).
    fn write_discovery_form(&self, out: &mut String) {
        let report = self.report();
        let params = report.discovery.as_ref().map(|discovery| &discovery.params);
        let pull = report.pull.as_ref();
        let prometheus = self
            .asked
            .prometheus
            .clone()
            .or_else(|| params.map(|params| params.prometheus.clone()))
            .or_else(|| pull.map(|source| source.url.clone()))
            .unwrap_or_default();
        let selector = self
            .asked
            .selector
            .clone()
            .or_else(|| params.map(|params| params.selector.clone()))
            .or_else(|| pull.and_then(|source| source.selector.clone()))
            .unwrap_or_else(|| default_selector(&report.app));
        let host_label = self
            .asked
            .host_label
            .clone()
            .or_else(|| params.map(|params| params.host_label.clone()))
            .or_else(|| pull.map(|source| source.host_label.clone()))
            .unwrap_or_else(|| DEFAULT_HOST_LABEL.to_owned());
        let _ = write!(
            out,
            "<form class=\"discover filters\" method=\"get\" action=\"/apps/{}#discovery\" \
             aria-label=\"Look for the app's metrics in Prometheus\">\
             <div class=\"field\"><label for=\"discover-prometheus\">Prometheus URL</label>\
             <input id=\"discover-prometheus\" name=\"prometheus\" type=\"url\" value=\"{}\" \
             placeholder=\"http://prometheus:9090\" required></div>\
             <div class=\"field\"><label for=\"discover-selector\">The app's labels there\
             </label><input id=\"discover-selector\" name=\"selector\" type=\"text\" \
             value=\"{}\" aria-describedby=\"discover-selector-help\" autocomplete=\"off\">\
             <span id=\"discover-selector-help\" class=\"help\">label matchers, such as \
             <code>job=\"checkout\"</code></span></div>\
             <div class=\"field\"><label for=\"discover-host-label\">Host label</label>\
             <input id=\"discover-host-label\" name=\"host_label\" type=\"text\" value=\"{}\" \
             autocomplete=\"off\"></div>\
             <button type=\"submit\">Look in Prometheus</button></form>",
            url(&report.app),
            esc(&prometheus),
            esc(&selector),
            esc(&host_label)
        );
    }

    fn write_found(&self, out: &mut String, discovery: &Discovery) {
        let params = &discovery.params;
        let _ = write!(
            out,
            "<dl class=\"facts\"><div><dt>Prometheus</dt><dd><code>{}</code></dd></div>\
             <div><dt>Selector</dt><dd><code>{}</code></dd></div>\
             <div><dt>Host label</dt><dd><code>{}</code></dd></div>\
             <div><dt>Hosts under the selector</dt><dd>{}</dd></div>\
             <div><dt>Metric names</dt><dd>{}</dd></div></dl>",
            esc(&params.prometheus),
            esc(&params.selector),
            esc(&params.host_label),
            discovery.hosts.len(),
            discovery.metric_names
        );
        if !discovery.notes.is_empty() {
            out.push_str("<ul class=\"notes\">");
            for note in &discovery.notes {
                let _ = write!(out, "<li>{}</li>", esc(note));
            }
            out.push_str("</ul>");
        }
        if discovery.found.is_empty() {
            out.push_str(
                "<p>No usual metric family was found under this selector: check the selector, \
                 or add a query of your own below.</p>",
            );
            return;
        }
        out.push_str(
            "<table class=\"found\"><caption>Signals found, with the pull query proposed for \
             each and how many hosts answered it when tried</caption><thead><tr>\
             <th scope=\"col\">Signal</th><th scope=\"col\">Stored as</th>\
             <th scope=\"col\">Proposed PromQL</th><th scope=\"col\">Found in</th>\
             <th scope=\"col\">Hosts answering</th></tr></thead><tbody>",
        );
        for found in &discovery.found {
            write_found_row(out, found, discovery.hosts.len());
        }
        out.push_str("</tbody></table>");
        if !self.session.is_admin() {
            out.push_str(
                "<p class=\"help\">You are signed in without the admin role: applying these \
                 queries needs an admin token.</p>",
            );
            return;
        }
        let _ = write!(
            out,
            "<form class=\"apply\" method=\"post\" action=\"/apps/{}/apply\">{}{}\
             <p class=\"help\">Adds every proposal that answered its trial to the app's pull \
             source, beside the queries it has; nothing stored is replaced.</p>\
             <button type=\"submit\">Apply these queries</button></form>",
            url(&self.report().app),
            self.session.form_field(),
            hidden_params(discovery)
        );
    }

    fn write_missing(&self, out: &mut String, discovery: &Discovery) {
        if discovery.missing.is_empty() {
            return;
        }
        out.push_str(
            "<h3 id=\"missing-title\">Signals not found</h3>\
             <ul class=\"missing\" aria-labelledby=\"missing-title\">",
        );
        for missing in &discovery.missing {
            out.push_str("<li>");
            found_badge(out, false, missing.signal.describe());
            let _ = write!(
                out,
                " ({}): {}</li>",
                family_words(missing.family),
                esc(&missing.prompt)
            );
        }
        out.push_str("</ul>");
    }

    /// The form for a query of one's own (admins, once the app has a server to pull from).
    fn write_own_query_form(&self, out: &mut String) {
        let report = self.report();
        let hidden = match (&report.discovery, &report.pull) {
            (Some(discovery), _) => hidden_params(discovery),
            (None, Some(_)) => String::new(),
            (None, None) => return,
        };
        if !self.session.is_admin() {
            out.push_str("<p class=\"help\">Adding a query of your own needs an admin token.</p>");
            return;
        }
        let _ = write!(
            out,
            "<form class=\"own-query\" method=\"post\" action=\"/apps/{}/queries\">{}{hidden}\
             <fieldset><legend>Add a query of your own</legend>\
             <div class=\"field\"><label for=\"own-metric\">Metric name</label>\
             <input id=\"own-metric\" name=\"metric\" type=\"text\" required \
             maxlength=\"{MAX_QUERY_BYTES}\" autocomplete=\"off\" \
             aria-describedby=\"own-metric-help\"><span id=\"own-metric-help\" class=\"help\">\
             what the results are stored as, such as <code>load1</code></span></div>\
             <div class=\"field\"><label for=\"own-query\">PromQL</label>\
             <textarea id=\"own-query\" name=\"query\" rows=\"2\" required \
             maxlength=\"{MAX_QUERY_BYTES}\" aria-describedby=\"own-query-help\"></textarea>\
             <span id=\"own-query-help\" class=\"help\">a query returning one series per host, \
             such as <code>max by (instance) (node_load1{{job=\"node\"}})</code></span></div>\
             </fieldset><button type=\"submit\">Add this query</button></form>",
            url(&report.app),
            self.session.form_field()
        );
    }
}

fn write_found_row(out: &mut String, found: &FoundSignal, hosts_under_selector: usize) {
    out.push_str("<tr><th scope=\"row\">");
    found_badge(out, true, found.signal.describe());
    let _ = write!(
        out,
        " <span class=\"help\">({})</span></th><td><code>{}</code></td>\
         <td><code>{}</code></td><td>{}: ",
        family_words(found.family),
        esc(&found.query.metric),
        esc(&found.query.query),
        esc(&found.convention)
    );
    let metrics: Vec<String> = found
        .metrics
        .iter()
        .map(|name| format!("<code>{}</code>", esc(name)))
        .collect();
    out.push_str(&metrics.join(", "));
    if !found.alternatives.is_empty() {
        let _ = write!(
            out,
            "<div class=\"help\">also: {}</div>",
            esc(&found.alternatives.join(", "))
        );
    }
    out.push_str("</td><td>");
    match &found.check {
        Some(check) => match &check.error {
            Some(error) => {
                found_badge(out, false, "the trial failed");
                let _ = write!(out, "<div class=\"help\">{}</div>", esc(error));
            }
            None => {
                let _ = write!(out, "{} of {hosts_under_selector}", check.hosts);
            }
        },
        None => out.push_str("not tried"),
    }
    out.push_str("</td></tr>");
}

/// The hidden fields that make an apply look where the page's discovery looked.
fn hidden_params(discovery: &Discovery) -> String {
    let params = &discovery.params;
    format!(
        "<input type=\"hidden\" name=\"prometheus\" value=\"{}\">\
         <input type=\"hidden\" name=\"selector\" value=\"{}\">\
         <input type=\"hidden\" name=\"host_label\" value=\"{}\">\
         <input type=\"hidden\" name=\"step_seconds\" value=\"{}\">",
        esc(&params.prometheus),
        esc(&params.selector),
        esc(&params.host_label),
        params.step_seconds
    )
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

    #[test]
    fn a_family_cell_says_what_is_found_and_missing_in_words() {
        use vigil_guard::onboarding::SignalCoverage;
        let coverage = [FamilyCoverage {
            family: SignalFamily::System,
            covered: true,
            signals: vec![
                SignalCoverage {
                    signal: Signal::Cpu,
                    found: true,
                    sources: vec!["cpu".to_owned()],
                },
                SignalCoverage {
                    signal: Signal::Load,
                    found: false,
                    sources: Vec::new(),
                },
            ],
        }];
        let mut out = String::new();
        family_cell(&mut out, &coverage, SignalFamily::System);
        assert!(out.contains("<span>covered</span>"), "{out}");
        assert!(out.contains("found: CPU; missing: load"), "{out}");
        let mut logs = String::new();
        family_cell(&mut logs, &coverage, SignalFamily::Logs);
        assert!(logs.contains("<span>not covered</span>"), "{logs}");
    }
}
