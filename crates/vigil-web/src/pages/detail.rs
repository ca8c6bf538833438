//! One release's page: a summary (state, verdict and why), the batches, the findings most
//! severe first with a chart for each metric, the log templates that appeared or surged, the
//! actions (operators only), the feedback and the transitions.

use std::fmt::Write;

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use vigil_core::release::{Action, FeedbackKind, ReleaseState, Role, VerdictRecord};
use vigil_core::text::{change_words, figure};
use vigil_core::{Bundle, Finding, HostGroup, Signal, Verdict};

use super::chart::MetricChart;
use super::html::{esc, is_running, state_badge, time_element, url, verdict_badge, verdict_words};
use super::session::{checked_form, signed_in, Session, SessionForm};
use super::{html_page, PageError, Section};
use crate::error::ApiError;
use crate::releases::{
    deciding_verdict, perform, record_feedback, release_record, verdict_answer, window,
    ReleaseRecord, MAX_NOTE_BYTES,
};
use crate::AppState;

/// The actions a person may take from the page, in the order their buttons appear.
const PAGE_ACTIONS: [Action; 4] = [
    Action::Pause,
    Action::Resume,
    Action::Rollback,
    Action::Cancel,
];

/// Longest reason an action form may carry, in bytes.
const MAX_REASON_BYTES: usize = 1000;

/// Hosts named in full; longer lists are folded behind a disclosure.
const HOSTS_SHOWN: usize = 12;

#[derive(Debug, Default, Deserialize)]
pub struct NoticeQuery {
    /// What was just done (`pause`, `resume`, `rollback`, `cancel`, `feedback`).
    #[serde(default)]
    done: Option<String>,
}

pub async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(notice): Query<NoticeQuery>,
) -> Result<Response, PageError> {
    let session = signed_in(&state, &headers, &uri).await?;
    let record = release_record(&state, id).await?;
    // Assembling the window and drawing a chart for each finding's metric takes a core for
    // tens of milliseconds on a large release: one of the cores heavy work may take, on a
    // blocking thread, never an async worker (health checks and other requests wait on those).
    let _core = state.budget.heavy_work().await?;
    // The data window is assembled only when findings need it (for charts and log counts).
    let has_findings =
        deciding_verdict(&record.verdicts).is_some_and(|verdict| !verdict.findings.is_empty());
    let bundle = if has_findings {
        window(&state, &record.release).await
    } else {
        Err(ApiError::conflict("no finding needs the release's data"))
    };
    let notice = notice.done.as_deref().and_then(notice_text);
    let page = tokio::task::spawn_blocking(move || {
        let view = Detail {
            record: &record,
            bundle: bundle.as_ref(),
            session: &session,
            notice,
        };
        view.page()
    })
    .await
    .map_err(|error| ApiError::internal(format!("page task failed: {error}")))?;
    Ok(page)
}

fn notice_text(done: &str) -> Option<&'static str> {
    match done {
        "pause" => Some("Paused: no further batch may start."),
        "resume" => Some("Resumed: the guard judges the release again."),
        "rollback" => Some("Rollback requested: the release is rolling back."),
        "cancel" => Some("Cancelled."),
        "feedback" => Some("Thank you: your feedback is stored."),
        _ => None,
    }
}

/// The fields of the forms of a release's page; each form sends some of them.
#[derive(Debug, Deserialize)]
pub struct ReleaseForm {
    /// The session value (every form).
    #[serde(default)]
    form_key: String,
    /// `pause`, `resume`, `rollback` or `cancel` (the action buttons).
    #[serde(default)]
    action: String,
    #[serde(default)]
    reason: String,
    /// `confirm_fault`, `false_alarm` or `missed_fault` (the feedback form).
    #[serde(default)]
    kind: String,
    #[serde(default)]
    note: String,
}

impl SessionForm for ReleaseForm {
    fn form_key(&self) -> &str {
        &self.form_key
    }
}

/// The session and the fields of an operator's form post on a release's page (see
/// [`checked_form`]).
async fn operator_form(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    id: &str,
    form: Result<Form<ReleaseForm>, FormRejection>,
) -> Result<(Session, ReleaseForm), PageError> {
    let back_to = format!("/releases/{}", url(id));
    checked_form(state, headers, uri, back_to, Role::Operator, form).await
}

/// An action button: pause, resume, roll back or cancel (operators only).
pub async fn act(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    form: Result<Form<ReleaseForm>, FormRejection>,
) -> Result<Response, PageError> {
    let (session, request) = operator_form(&state, &headers, &uri, &id, form).await?;
    let action = PAGE_ACTIONS
        .into_iter()
        .find(|action| action.as_str() == request.action)
        .ok_or_else(|| ApiError::bad_request(format!("unknown action {:?}", request.action)))?;
    if request.reason.len() > MAX_REASON_BYTES {
        return Err(ApiError::bad_request(format!(
            "the reason is longer than {MAX_REASON_BYTES} bytes"
        ))
        .into());
    }
    let reason = Some(request.reason.trim().to_string());
    let release = perform(&state, &session.token, id, action, reason).await?;
    let location = format!(
        "/releases/{}?done={}#summary",
        url(&release.id),
        action.as_str()
    );
    Ok(Redirect::to(&location).into_response())
}

/// The feedback form: confirm fault, false alarm or missed fault, with a note.
pub async fn feedback(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    form: Result<Form<ReleaseForm>, FormRejection>,
) -> Result<Response, PageError> {
    let (session, request) = operator_form(&state, &headers, &uri, &id, form).await?;
    let kind = match request.kind.as_str() {
        "confirm_fault" => FeedbackKind::ConfirmFault,
        "false_alarm" => FeedbackKind::FalseAlarm,
        "missed_fault" => FeedbackKind::MissedFault,
        "" => {
            return Err(ApiError::bad_request(
                "choose what the feedback says: confirm fault, false alarm or missed fault",
            )
            .into())
        }
        other => {
            return Err(ApiError::bad_request(format!("unknown feedback kind {other:?}")).into())
        }
    };
    let stored = record_feedback(
        &state,
        &session.token,
        id,
        kind,
        request.note.trim().to_string(),
    )
    .await?;
    let location = format!(
        "/releases/{}?done=feedback#feedback",
        url(&stored.release_id)
    );
    Ok(Redirect::to(&location).into_response())
}

fn feedback_words(kind: FeedbackKind) -> &'static str {
    match kind {
        FeedbackKind::ConfirmFault => "confirmed fault",
        FeedbackKind::FalseAlarm => "false alarm",
        FeedbackKind::MissedFault => "missed fault",
    }
}

fn action_label(action: Action) -> &'static str {
    match action {
        Action::Pause => "Pause",
        Action::Resume => "Resume",
        Action::Rollback => "Roll back",
        Action::Cancel => "Cancel the release",
        _ => action.as_str(),
    }
}

/// Findings, most severe first, then by the size of the change against the signal's noise.
fn ordered_findings(record: Option<&VerdictRecord>) -> Vec<&Finding> {
    let mut findings: Vec<&Finding> = record
        .map(|record| record.findings.iter().collect())
        .unwrap_or_default();
    findings.sort_by(|left, right| {
        left.severity
            .cmp(&right.severity)
            .then(right.score.total_cmp(&left.score))
    });
    findings
}

/// Writes a list of host names, folding long ones.
fn write_hosts(out: &mut String, hosts: &[String]) {
    let names = |slice: &[String]| {
        slice
            .iter()
            .map(|host| esc(host).to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if hosts.len() <= HOSTS_SHOWN {
        out.push_str(&names(hosts));
        return;
    }
    let _ = write!(
        out,
        "{} and <details class=\"inline\"><summary>{} more</summary>{}</details>",
        names(&hosts[..HOSTS_SHOWN]),
        hosts.len() - HOSTS_SHOWN,
        names(&hosts[HOSTS_SHOWN..])
    );
}

/// Lines of a log template on release and reference hosts, before and after the first batch.
#[derive(Debug, Default, PartialEq)]
struct LogCounts {
    release_before: f64,
    release_since: f64,
    reference_before: f64,
    reference_since: f64,
}

fn log_counts(bundle: &Bundle, template: &str) -> LogCounts {
    let mut counts = LogCounts::default();
    let Some(by_host) = bundle.logs.counts.get(template) else {
        return counts;
    };
    let first_deploy = bundle.batches.first().map_or(i64::MAX, |batch| batch.at);
    for host in &bundle.hosts {
        let Some(values) = by_host.get(&host.name) else {
            continue;
        };
        for (step, value) in values.iter().enumerate() {
            let lines = value.unwrap_or(0.0);
            let since = bundle.time_of(step) >= first_deploy;
            let slot = match (host.group, since) {
                (HostGroup::Release, false) => &mut counts.release_before,
                (HostGroup::Release, true) => &mut counts.release_since,
                (HostGroup::Reference, false) => &mut counts.reference_before,
                (HostGroup::Reference, true) => &mut counts.reference_since,
            };
            *slot += lines;
        }
    }
    counts
}

/// A finding's Effect row: for a metric, the same words and numbers as its sentence and its
/// chart (one effect, taken between the observed and the expected value shown).
fn effect_row(finding: &Finding) -> String {
    if matches!(finding.signal, Signal::Silence) {
        return "no samples".to_owned();
    }
    format!(
        "{} ({} against {} expected, {})",
        change_words(finding.effect),
        figure(finding.observed),
        figure(finding.expected),
        finding.direction
    )
}

/// Everything one release's page shows.
struct Detail<'a> {
    record: &'a ReleaseRecord,
    bundle: Result<&'a Bundle, &'a ApiError>,
    session: &'a Session,
    notice: Option<&'static str>,
}

impl Detail<'_> {
    /// The whole page.
    fn page(&self) -> Response {
        let mut body = String::with_capacity(64 * 1024);
        self.write(&mut body);
        let release = &self.record.release;
        let title = format!(
            "{} {} ({})",
            release.spec.app,
            release.spec.version,
            release.state.as_str()
        );
        html_page(
            StatusCode::OK,
            &title,
            Some(self.session),
            Some(Section::Releases),
            &body,
        )
    }

    fn write(&self, out: &mut String) {
        let release = &self.record.release;
        let _ = write!(
            out,
            "<h1>{} {}</h1><p class=\"subtitle\">Release <code>{}</code>, started by {} at ",
            esc(&release.spec.app),
            esc(&release.spec.version),
            esc(&release.id),
            esc(&release.created_by)
        );
        time_element(out, release.created_at);
        out.push_str("</p>");
        if let Some(notice) = self.notice {
            let _ = write!(
                out,
                "<p class=\"notice\" role=\"status\">{}</p>",
                esc(notice)
            );
        }
        self.write_summary(out);
        self.write_batches(out);
        self.write_findings(out);
        self.write_logs(out);
        self.write_feedback(out);
        self.write_transitions(out);
    }

    /// The verdict that decided the release (the pause, if any), and the newest one.
    fn deciding(&self) -> Option<&VerdictRecord> {
        deciding_verdict(&self.record.verdicts)
    }

    /// One line: why the release is where it is.
    fn reason(&self) -> String {
        let release = &self.record.release;
        let stopped = matches!(
            release.state,
            ReleaseState::Paused
                | ReleaseState::RollingBack
                | ReleaseState::RolledBack
                | ReleaseState::Failed
                | ReleaseState::Cancelled
        );
        if stopped && !release.reason.is_empty() {
            return release.reason.clone();
        }
        let latest = self.record.verdicts.last();
        if let Some(record) = latest {
            if record.verdict == Verdict::Healthy && record.findings.is_empty() {
                return "No anomalies.".to_string();
            }
        }
        verdict_answer(release, latest).reason
    }

    fn write_summary(&self, out: &mut String) {
        let release = &self.record.release;
        let answer = verdict_answer(release, self.record.verdicts.last());
        out.push_str(
            "<section id=\"summary\" class=\"summary panel\" aria-labelledby=\"summary-title\">\
             <h2 id=\"summary-title\">Summary</h2><dl class=\"facts\"><div><dt>State</dt><dd>",
        );
        state_badge(out, release.state);
        out.push_str("</dd></div><div><dt>Verdict</dt><dd>");
        verdict_badge(out, release.verdict);
        let _ = write!(
            out,
            "</dd></div><div><dt>Next batch</dt><dd>{}</dd></div>\
             <div><dt>Batches done</dt><dd>{} of {}</dd></div></dl>\
             <p class=\"reason\"><strong>Why:</strong> {}</p>",
            esc(answer.decision),
            release.deployed.len(),
            release.spec.batches.len(),
            esc(&self.reason())
        );
        self.write_actions(out);
        out.push_str("</section>");
    }

    fn write_actions(&self, out: &mut String) {
        let release = &self.record.release;
        let allowed: Vec<Action> = PAGE_ACTIONS
            .into_iter()
            .filter(|action| vigil_deploy::next_state(release.state, *action).is_ok())
            .collect();
        if allowed.is_empty() {
            out.push_str("<p class=\"help\">No action can change this release any more.</p>");
            return;
        }
        if !self.session.is_operator() {
            out.push_str(
                "<p class=\"help\">You are signed in as a viewer: pausing, resuming, rolling \
                 back and cancelling need an operator token.</p>",
            );
            return;
        }
        let _ = write!(
            out,
            "<form class=\"actions\" method=\"post\" action=\"/releases/{}/actions\">{}\
             <div class=\"field\"><label for=\"action-reason\">Reason (optional, kept in the \
             transitions)</label><input id=\"action-reason\" name=\"reason\" type=\"text\" \
             maxlength=\"{MAX_REASON_BYTES}\"></div><div class=\"buttons\" role=\"group\" \
             aria-label=\"Actions\">",
            url(&release.id),
            self.session.form_field()
        );
        for action in allowed {
            let class = if matches!(action, Action::Rollback | Action::Cancel) {
                " class=\"danger\""
            } else {
                ""
            };
            let _ = write!(
                out,
                "<button type=\"submit\" name=\"action\" value=\"{}\"{class}>{}</button>",
                action.as_str(),
                action_label(action)
            );
        }
        out.push_str("</div></form>");
    }

    fn write_batches(&self, out: &mut String) {
        let release = &self.record.release;
        out.push_str(
            "<section id=\"batches\" aria-labelledby=\"batches-title\">\
             <h2 id=\"batches-title\">Batches</h2><ol class=\"timeline\">",
        );
        for (index, planned) in release.spec.batches.iter().enumerate() {
            let deployed = release
                .deployed
                .iter()
                .find(|batch| batch.index as usize == index);
            let (class, hosts) = match deployed {
                Some(batch) => ("done", &batch.hosts),
                None => ("planned", &planned.hosts),
            };
            // Numbered as the API and the transitions number batches: from 0.
            let _ = write!(
                out,
                "<li class=\"{class}\"><span class=\"batch-name\">Batch {index}</span> "
            );
            match deployed {
                Some(batch) => {
                    out.push_str("deployed at ");
                    time_element(out, batch.at);
                }
                None => out.push_str("not deployed yet"),
            }
            let _ = write!(
                out,
                "<div class=\"hosts\">{} host{}: ",
                hosts.len(),
                if hosts.len() == 1 { "" } else { "s" }
            );
            write_hosts(out, hosts);
            out.push_str("</div></li>");
        }
        out.push_str("</ol></section>");
    }

    fn write_findings(&self, out: &mut String) {
        out.push_str(
            "<section id=\"findings\" aria-labelledby=\"findings-title\">\
             <h2 id=\"findings-title\">Findings</h2>",
        );
        let Some(deciding) = self.deciding() else {
            out.push_str("<p>No verdict yet: the guard has not judged this release.</p></section>");
            return;
        };
        let findings = ordered_findings(Some(deciding));
        let _ = write!(
            out,
            "<p class=\"help\">From the {} verdict of the step at ",
            verdict_words(Some(deciding.verdict))
        );
        time_element(out, deciding.at);
        out.push_str(", most severe first.</p>");
        if findings.is_empty() {
            out.push_str("<p>No anomalies.</p></section>");
            return;
        }
        for (number_on_page, finding) in findings.iter().enumerate() {
            self.write_finding(out, finding, number_on_page);
        }
        out.push_str("</section>");
    }

    fn write_finding(&self, out: &mut String, finding: &Finding, number_on_page: usize) {
        let (kind, name) = match &finding.signal {
            Signal::Metric { name } => ("Metric", name.as_str()),
            Signal::Log { text, .. } => ("Log template", text.as_str()),
            Signal::Silence => ("Silence", "no data"),
        };
        let _ = write!(
            out,
            "<article class=\"finding\" aria-labelledby=\"finding-{number_on_page}\">\
             <h3 id=\"finding-{number_on_page}\">"
        );
        verdict_badge(out, Some(finding.severity));
        let _ = write!(
            out,
            " <span class=\"signal-kind\">{kind}</span> <code>{}</code></h3><p>{}</p>\
             <dl class=\"facts\"><div><dt>Hosts</dt><dd>{} of {} release hosts judged: ",
            esc(name),
            esc(&finding.explanation),
            finding.hosts.len(),
            finding.hosts_judged
        );
        write_hosts(out, &finding.hosts);
        let _ = write!(
            out,
            "</dd></div><div><dt>Effect</dt><dd>{}</dd></div>\
             <div><dt>Compared with</dt><dd>{}</dd></div><div><dt>Since</dt><dd>",
            esc(&effect_row(finding)),
            if finding.baseline == "reference" {
                "the reference hosts at the same time"
            } else {
                "the hosts' own history"
            }
        );
        time_element(out, finding.since);
        let _ = write!(
            out,
            "</dd></div><div><dt>Evidence</dt><dd>{} (score {})</dd></div></dl>",
            esc(&finding.evidence),
            figure(finding.score)
        );
        if let Signal::Metric { name } = &finding.signal {
            self.write_chart(out, name, finding, number_on_page);
        }
        out.push_str("</article>");
    }

    /// Pause moments to mark on charts. A pause recorded after the window's data (an imported
    /// release is paused when imported) is drawn at the fault verdict's step that decided it.
    fn pause_moments(&self, bundle: &Bundle) -> Vec<i64> {
        let window_end = bundle.time_of(bundle.points.saturating_sub(1));
        let fault_at = self
            .deciding()
            .filter(|record| record.verdict == Verdict::Fault)
            .map(|record| record.at);
        self.record
            .transitions
            .iter()
            .filter(|transition| transition.to == ReleaseState::Paused)
            .map(|transition| match fault_at {
                Some(at) if transition.at > window_end && at <= transition.at => at,
                _ => transition.at,
            })
            .collect()
    }

    fn write_chart(
        &self,
        out: &mut String,
        metric: &str,
        finding: &Finding,
        number_on_page: usize,
    ) {
        let bundle = match self.bundle {
            Ok(bundle) => bundle,
            Err(error) => {
                let _ = write!(
                    out,
                    "<p class=\"help\">No chart: {}.</p>",
                    esc(&error.message)
                );
                return;
            }
        };
        let unit = bundle
            .metrics
            .iter()
            .chain(&self.record.release.spec.metrics)
            .find(|meta| meta.name == metric)
            .map_or("", |meta| meta.unit.as_str());
        let pauses = self.pause_moments(bundle);
        let id = format!("chart-{number_on_page}");
        MetricChart {
            bundle,
            metric,
            unit,
            finding_hosts: &finding.hosts,
            pauses: &pauses,
            id: &id,
            finding: Some(finding),
        }
        .write(out);
    }

    fn write_logs(&self, out: &mut String) {
        out.push_str(
            "<section id=\"logs\" aria-labelledby=\"logs-title\">\
             <h2 id=\"logs-title\">New or surging log templates</h2>",
        );
        let findings = ordered_findings(self.deciding());
        let templates: Vec<(&str, &str, &str)> = findings
            .iter()
            .filter_map(|finding| match &finding.signal {
                Signal::Log {
                    template,
                    text,
                    level,
                } => Some((template.as_str(), text.as_str(), level.as_str())),
                Signal::Metric { .. } | Signal::Silence => None,
            })
            .collect();
        if templates.is_empty() {
            out.push_str(
                "<p>No log template appeared or surged on the release hosts.</p></section>",
            );
            return;
        }
        let Ok(bundle) = self.bundle else {
            out.push_str("<p class=\"help\">The counts need the release's data window, which is not available.</p></section>");
            return;
        };
        out.push_str(
            "<table class=\"logs\"><caption>Lines logged before and since the first batch\
             </caption><thead><tr><th scope=\"col\">Template</th><th scope=\"col\">Level</th>\
             <th scope=\"col\">Release hosts, before</th><th scope=\"col\">Release hosts, since\
             </th><th scope=\"col\">Reference hosts, before</th>\
             <th scope=\"col\">Reference hosts, since</th></tr></thead><tbody>",
        );
        for (template, text, level) in templates {
            let counts = log_counts(bundle, template);
            let _ = write!(
                out,
                "<tr><th scope=\"row\"><code>{}</code></th><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td></tr>",
                esc(text),
                esc(level),
                figure(counts.release_before),
                figure(counts.release_since),
                figure(counts.reference_before),
                figure(counts.reference_since)
            );
        }
        out.push_str("</tbody></table></section>");
    }

    fn write_feedback(&self, out: &mut String) {
        let release = &self.record.release;
        out.push_str(
            "<section id=\"feedback\" aria-labelledby=\"feedback-title\">\
             <h2 id=\"feedback-title\">Feedback</h2>",
        );
        if self.record.feedback.is_empty() {
            out.push_str("<p>No feedback yet.</p>");
        } else {
            out.push_str("<ul class=\"feedback\">");
            for item in &self.record.feedback {
                let _ = write!(
                    out,
                    "<li><strong>{}</strong> by {} at ",
                    feedback_words(item.kind),
                    esc(&item.actor)
                );
                time_element(out, item.at);
                if !item.note.is_empty() {
                    let _ = write!(out, ": <q>{}</q>", esc(&item.note));
                }
                out.push_str("</li>");
            }
            out.push_str("</ul>");
        }
        if !self.session.is_operator() {
            out.push_str(
                "<p class=\"help\">Leaving feedback needs an operator token.</p></section>",
            );
            return;
        }
        let _ = write!(
            out,
            "<form class=\"feedback-form\" method=\"post\" action=\"/releases/{}/feedback\">{}\
             <fieldset><legend>Was Vigil right about this release?</legend>",
            url(&release.id),
            self.session.form_field()
        );
        let choices = [
            ("confirm_fault", "Confirm fault: the release was faulty"),
            ("false_alarm", "False alarm: the release was fine"),
            (
                "missed_fault",
                "Missed fault: the release was faulty and Vigil let it pass",
            ),
        ];
        for (value, label) in choices {
            let _ = write!(
                out,
                "<div class=\"choice\"><input type=\"radio\" id=\"feedback-{value}\" \
                 name=\"kind\" value=\"{value}\" required><label for=\"feedback-{value}\">\
                 {label}</label></div>"
            );
        }
        let _ = write!(
            out,
            "</fieldset><div class=\"field\"><label for=\"feedback-note\">Note</label>\
             <textarea id=\"feedback-note\" name=\"note\" rows=\"3\" \
             maxlength=\"{MAX_NOTE_BYTES}\"></textarea></div>\
             <button type=\"submit\">Send feedback</button></form></section>"
        );
    }

    fn write_transitions(&self, out: &mut String) {
        out.push_str(
            "<section id=\"transitions\" aria-labelledby=\"transitions-title\">\
             <h2 id=\"transitions-title\">Transitions</h2><table class=\"transitions\">\
             <caption>Who changed the release's state, when and why, oldest first</caption>\
             <thead><tr><th scope=\"col\">When</th><th scope=\"col\">Action</th>\
             <th scope=\"col\">From</th><th scope=\"col\">To</th><th scope=\"col\">Who</th>\
             <th scope=\"col\">Why</th></tr></thead><tbody>",
        );
        for transition in &self.record.transitions {
            out.push_str("<tr><td>");
            time_element(out, transition.at);
            let _ = write!(
                out,
                "</td><td>{}</td><td>",
                esc(&transition.action.as_str().replace('_', " "))
            );
            state_badge(out, transition.from);
            out.push_str("</td><td>");
            state_badge(out, transition.to);
            let _ = write!(
                out,
                "</td><td>{}</td><td>{}</td></tr>",
                esc(&transition.actor),
                esc(&transition.reason)
            );
        }
        out.push_str("</tbody></table>");
        if is_running(self.record.release.state) {
            out.push_str(
                "<p class=\"help\">The release is running: reload the page to see what \
                 changed.</p>",
            );
        }
        out.push_str("</section>");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn log_counts_split_hosts_and_time_at_the_first_batch() {
        let mut by_host = BTreeMap::new();
        by_host.insert(
            "r1".to_string(),
            vec![Some(1.0), None, Some(4.0), Some(5.0)],
        );
        by_host.insert(
            "k1".to_string(),
            vec![Some(2.0), Some(2.0), Some(1.0), None],
        );
        let mut bundle = crate::pages::test_bundle(30, 0, 4, 60);
        bundle.logs.counts.insert("t1".to_string(), by_host);
        assert_eq!(
            log_counts(&bundle, "t1"),
            LogCounts {
                release_before: 1.0,
                release_since: 9.0,
                reference_before: 4.0,
                reference_since: 1.0,
            }
        );
        assert_eq!(log_counts(&bundle, "absent"), LogCounts::default());
    }

    /// The case: reference hosts at 99 and 101, a release host at 102 that goes to
    /// about 302 after its deploy. The sentence, the Effect row and the chart must state one
    /// effect and one expected value (they said "302 vs 102", "+77 %" beside "+69 %" and a
    /// chart with no expected value at all).
    #[test]
    fn sentence_effect_row_and_chart_state_the_same_numbers() {
        let points = 90;
        let deployed = 60;
        let wobble = |step: usize| [0.0, 0.6, -0.4, 0.9, -0.7, 0.2][step % 6];
        let series = |level: f64, after: f64| -> Vec<Option<f64>> {
            (0..points)
                .map(|step| {
                    let base = if step >= deployed { after } else { level };
                    Some(base + wobble(step) * base / 100.0)
                })
                .collect()
        };
        let start = 1_700_000_000;
        let mut bundle = crate::pages::test_bundle(60, start, points, start + 60 * deployed as i64);
        let by_host: BTreeMap<String, Vec<Option<f64>>> = [
            ("r1".to_string(), series(102.0, 302.0)),
            ("k1".to_string(), series(99.0, 99.0)),
            ("k2".to_string(), series(101.0, 101.0)),
        ]
        .into_iter()
        .collect();
        bundle.series.insert("latency".to_string(), by_host);
        bundle.metrics.push(vigil_core::MetricMeta {
            name: "latency".to_string(),
            kind: vigil_core::MetricKind::Middleware,
            unit: "ms".to_string(),
            direction: vigil_core::Direction::Increase,
            critical: true,
            judged: true,
        });
        let judgement =
            vigil_analysis::Evaluator::new(&bundle, &vigil_analysis::Settings::default())
                .judge_at(points - 1);
        let finding = judgement.findings.first().expect("a finding");
        assert_eq!(finding.severity, Verdict::Fault, "{judgement:?}");
        let stated = format!(
            "{} against {} expected",
            figure(finding.observed),
            figure(finding.expected)
        );
        let effect = change_words(finding.effect);
        let ratio = finding.observed / finding.expected - 1.0;
        assert!((finding.effect - ratio).abs() < 1e-6, "{finding:?}");
        let mut chart = String::new();
        MetricChart {
            bundle: &bundle,
            metric: "latency",
            unit: "ms",
            finding_hosts: &finding.hosts,
            pauses: &[],
            id: "chart-0",
            finding: Some(finding),
        }
        .write(&mut chart);
        for (place, text) in [
            ("sentence", finding.explanation.as_str()),
            ("effect row", effect_row(finding).as_str()),
            ("chart", chart.as_str()),
        ] {
            assert!(text.contains(&stated), "{place}: {text} lacks {stated}");
            assert!(text.contains(&effect), "{place}: {text} lacks {effect}");
        }
        assert!(
            finding.evidence.contains(&effect),
            "the evidence line: {}",
            finding.evidence
        );
    }

    #[test]
    fn every_notice_and_action_has_words() {
        for action in PAGE_ACTIONS {
            assert!(notice_text(action.as_str()).is_some());
            assert_ne!(action_label(action), action.as_str());
        }
        assert!(notice_text("feedback").is_some());
        assert!(notice_text("<script>").is_none());
    }
}
