//! The HTML of a release's page: a summary (state, verdict and why), the batches, the findings
//! with their charts, the log templates, the actions, the feedback and the transitions.

use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use vigil_core::release::{Action, ReleaseState, VerdictRecord};
use vigil_core::scorecard::Scorecard;
use vigil_core::text::figure;
use vigil_core::{Bundle, Finding, Signal, Verdict};

use super::rules::{action_label, effect_row, feedback_words, log_counts, ordered_findings};
use super::scorecard::RowOrder;
use super::{MAX_REASON_BYTES, PAGE_ACTIONS};
use crate::error::ApiError;
use crate::pages::chart::MetricChart;
use crate::pages::html::{
    is_running, state_badge, time_element, url, verdict_badge, verdict_words, Text,
};
use crate::pages::session::Session;
use crate::pages::{html_page, Section};
use crate::releases::{deciding_verdict, verdict_answer, ReleaseRecord, MAX_NOTE_BYTES};
use vigil_executor::view::ExecutionView;

/// Hosts named in full; longer lists are folded behind a disclosure.
const HOSTS_SHOWN: usize = 12;

/// Host names separated by commas.
fn host_names(hosts: &[String]) -> Markup {
    html! {
        @for (position, host) in hosts.iter().enumerate() {
            @if position > 0 { ", " }
            (Text(host))
        }
    }
}

/// A list of host names, long ones folded.
fn hosts_list(hosts: &[String]) -> Markup {
    if hosts.len() <= HOSTS_SHOWN {
        return host_names(hosts);
    }
    html! {
        (host_names(&hosts[..HOSTS_SHOWN])) " and "
        details class="inline" {
            summary { (hosts.len() - HOSTS_SHOWN) " more" }
            (host_names(&hosts[HOSTS_SHOWN..]))
        }
    }
}

/// Everything one release's page shows.
pub(super) struct Detail<'a> {
    pub(super) record: &'a ReleaseRecord,
    pub(super) bundle: Result<&'a Bundle, &'a ApiError>,
    pub(super) session: &'a Session,
    pub(super) notice: Option<&'static str>,
    /// The scorecard, sorted as asked, or why there is none.
    pub(super) scorecard: Result<&'a Scorecard, &'a str>,
    pub(super) order: RowOrder,
    /// The executor's progress, for a release Vigil ships.
    pub(super) execution: Option<&'a ExecutionView>,
}

/// The headings of the log templates' table.
const LOG_HEADINGS: [&str; 6] = [
    "Template",
    "Level",
    "Release hosts, before",
    "Release hosts, since",
    "Reference hosts, before",
    "Reference hosts, since",
];

/// The headings of the transitions' table.
const TRANSITION_HEADINGS: [&str; 6] = ["When", "Action", "From", "To", "Who", "Why"];

/// The kinds of feedback a person may give, with their words.
const FEEDBACK_CHOICES: [(&str, &str); 3] = [
    ("confirm_fault", "Confirm fault: the release was faulty"),
    ("false_alarm", "False alarm: the release was fine"),
    (
        "missed_fault",
        "Missed fault: the release was faulty and Vigil let it pass",
    ),
];

impl Detail<'_> {
    /// The whole page.
    pub(super) fn page(&self) -> Response {
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
            self.body(),
        )
    }

    fn body(&self) -> Markup {
        let release = &self.record.release;
        html! {
            h1 { (Text(&release.spec.app)) " " (Text(&release.spec.version)) }
            p class="subtitle" {
                "Release " code { (Text(&release.id)) } ", started by "
                (Text(&release.created_by)) " at " (time_element(release.created_at))
            }
            @if let Some(notice) = self.notice {
                p class="notice" role="status" { (Text(notice)) }
            }
            (self.summary())
            (self.batches())
            @if let Some(execution) = self.execution {
                (execution_progress(execution))
            }
            (self.findings())
            (self.scorecard())
            (self.logs())
            (self.feedback())
            (self.transitions())
        }
    }

    /// The verdict that decided the release (the pause, if any), and the newest one.
    pub(super) fn deciding(&self) -> Option<&VerdictRecord> {
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

    fn summary(&self) -> Markup {
        let release = &self.record.release;
        let answer = verdict_answer(release, self.record.verdicts.last());
        html! {
            section id="summary" class="summary panel" aria-labelledby="summary-title" {
                h2 id="summary-title" { "Summary" }
                dl class="facts" {
                    div { dt { "State" } dd { (state_badge(release.state)) } }
                    div { dt { "Verdict" } dd { (verdict_badge(release.verdict)) } }
                    div { dt { "Next batch" } dd { (Text(answer.decision)) } }
                    div {
                        dt { "Batches done" }
                        dd { (release.deployed.len()) " of " (release.spec.batches.len()) }
                    }
                }
                p class="reason" { strong { "Why:" } " " (Text(&self.reason())) }
                (self.actions())
            }
        }
    }

    fn actions(&self) -> Markup {
        let release = &self.record.release;
        let allowed: Vec<Action> = PAGE_ACTIONS
            .into_iter()
            .filter(|action| vigil_deploy::next_state(release.state, *action).is_ok())
            .collect();
        if allowed.is_empty() {
            return html! { p class="help" { "No action can change this release any more." } };
        }
        if !self.session.is_operator() {
            return html! {
                p class="help" {
                    "You are signed in as a viewer: pausing, resuming, rolling back and \
                     cancelling need an operator token."
                }
            };
        }
        html! {
            form class="actions" method="post" action={ "/releases/" (url(&release.id)) "/actions" } {
                (self.session.form_field())
                div class="field" {
                    label for="action-reason" { "Reason (optional, kept in the transitions)" }
                    input id="action-reason" name="reason" type="text" maxlength=(MAX_REASON_BYTES);
                }
                div class="buttons" role="group" aria-label="Actions" {
                    @for action in allowed {
                        @let danger = matches!(action, Action::Rollback | Action::Cancel);
                        button type="submit" name="action" value=(action.as_str())
                            class=[danger.then_some("danger")] {
                            (action_label(action))
                        }
                    }
                }
            }
        }
    }

    fn batches(&self) -> Markup {
        let release = &self.record.release;
        html! {
            section id="batches" aria-labelledby="batches-title" {
                h2 id="batches-title" { "Batches" }
                ol class="timeline" {
                    @for (index, planned) in release.spec.batches.iter().enumerate() {
                        @let deployed = release
                            .deployed
                            .iter()
                            .find(|batch| batch.index as usize == index);
                        @let (class, hosts) = match deployed {
                            Some(batch) => ("done", &batch.hosts),
                            None => ("planned", &planned.hosts),
                        };
                        // Numbered as the API and the transitions number batches: from 0.
                        li class=(class) {
                            span class="batch-name" { "Batch " (index) } " "
                            @match deployed {
                                Some(batch) => { "deployed at " (time_element(batch.at)) }
                                None => { "not deployed yet" }
                            }
                            @if let Some(selector) = release.spec.hosts.selector() {
                                div class="hosts" {
                                    "the hosts labelled " code { (Text(selector)) }
                                    ", found again at every step"
                                }
                            } @else {
                                div class="hosts" {
                                    (hosts.len()) " host" @if hosts.len() != 1 { "s" } ": "
                                    (hosts_list(hosts))
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    fn findings(&self) -> Markup {
        let Some(deciding) = self.deciding() else {
            return html! {
                section id="findings" aria-labelledby="findings-title" {
                    h2 id="findings-title" { "Findings" }
                    p { "No verdict yet: the guard has not judged this release." }
                }
            };
        };
        let findings = ordered_findings(Some(deciding));
        html! {
            section id="findings" aria-labelledby="findings-title" {
                h2 id="findings-title" { "Findings" }
                p class="help" {
                    "From the " (verdict_words(Some(deciding.verdict))) " verdict of the step at "
                    (time_element(deciding.at)) ", most severe first."
                }
                @if findings.is_empty() {
                    p { "No anomalies." }
                }
                @for (number_on_page, finding) in findings.iter().enumerate() {
                    (self.finding(finding, number_on_page))
                }
                (suppressed_findings(&deciding.suppressed))
            }
        }
    }

    /// The button that marks one finding a false alarm (operators, metric and log findings:
    /// those the feature library learns).
    fn false_alarm_button(&self, finding: &Finding) -> Markup {
        if !self.session.is_operator() || !vigil_guard::library::learnable(finding) {
            return html! {};
        }
        let release = &self.record.release;
        html! {
            form class="inline-form false-alarm" method="post"
                action={ "/releases/" (url(&release.id)) "/feedback" } {
                (self.session.form_field())
                input type="hidden" name="kind" value="false_alarm";
                input type="hidden" name="signal" value=(Text(&finding.signal.label()));
                button type="submit" class="small" { "Mark this finding a false alarm" }
            }
        }
    }

    fn finding(&self, finding: &Finding, number_on_page: usize) -> Markup {
        let (kind, name) = match &finding.signal {
            Signal::Metric { name } => ("Metric", name.as_str()),
            Signal::Log { text, .. } => ("Log template", text.as_str()),
            Signal::Silence => ("Silence", "no data"),
            Signal::Rule { name } => ("Rule", name.as_str()),
            Signal::Alert { name } => ("Alert", name.as_str()),
        };
        let heading_id = format!("finding-{number_on_page}");
        let compared_with = if finding.baseline == "reference" {
            "the reference hosts at the same time"
        } else {
            "the hosts' own history"
        };
        html! {
            article class="finding" aria-labelledby=(heading_id) {
                h3 id=(heading_id) {
                    (verdict_badge(Some(finding.severity)))
                    " " span class="signal-kind" { (kind) } " " code { (Text(name)) }
                }
                p { (Text(&finding.explanation)) }
                dl class="facts" {
                    div {
                        dt { "Hosts" }
                        dd {
                            (finding.hosts.len()) " of " (finding.hosts_judged)
                            " release hosts judged: " (hosts_list(&finding.hosts))
                        }
                    }
                    div { dt { "Effect" } dd { (Text(&effect_row(finding))) } }
                    div { dt { "Compared with" } dd { (compared_with) } }
                    div { dt { "Since" } dd { (time_element(finding.since)) } }
                    div {
                        dt { "Evidence" }
                        dd { (Text(&finding.evidence)) " (score " (figure(finding.score)) ")" }
                    }
                }
                @if let Signal::Metric { name } = &finding.signal {
                    (self.chart(name, finding, number_on_page))
                }
                (self.false_alarm_button(finding))
            }
        }
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

    fn chart(&self, metric: &str, finding: &Finding, number_on_page: usize) -> Markup {
        let bundle = match self.bundle {
            Ok(bundle) => bundle,
            Err(error) => {
                return html! { p class="help" { "No chart: " (Text(&error.message)) "." } };
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
        let chart = MetricChart {
            bundle,
            metric,
            unit,
            finding_hosts: &finding.hosts,
            pauses: &pauses,
            id: &id,
            finding: Some(finding),
        };
        html! { (chart) }
    }

    fn logs(&self) -> Markup {
        let findings = ordered_findings(self.deciding());
        let templates: Vec<(&str, &str, &str)> = findings
            .iter()
            .filter_map(|finding| match &finding.signal {
                Signal::Log {
                    template,
                    text,
                    level,
                } => Some((template.as_str(), text.as_str(), level.as_str())),
                Signal::Metric { .. }
                | Signal::Silence
                | Signal::Rule { .. }
                | Signal::Alert { .. } => None,
            })
            .collect();
        html! {
            section id="logs" aria-labelledby="logs-title" {
                h2 id="logs-title" { "New or surging log templates" }
                @if templates.is_empty() {
                    p { "No log template appeared or surged on the release hosts." }
                } @else if let Ok(bundle) = self.bundle {
                    table class="logs" {
                        caption { "Lines logged before and since the first batch" }
                        thead { tr { @for heading in LOG_HEADINGS { th scope="col" { (heading) } } } }
                        tbody {
                            @for (template, text, level) in templates {
                                @let counts = log_counts(bundle, template);
                                tr {
                                    th scope="row" { code { (Text(text)) } }
                                    td { (Text(level)) }
                                    td { (figure(counts.release_before)) }
                                    td { (figure(counts.release_since)) }
                                    td { (figure(counts.reference_before)) }
                                    td { (figure(counts.reference_since)) }
                                }
                            }
                        }
                    }
                } @else {
                    p class="help" {
                        "The counts need the release's data window, which is not available."
                    }
                }
            }
        }
    }

    fn feedback(&self) -> Markup {
        html! {
            section id="feedback" aria-labelledby="feedback-title" {
                h2 id="feedback-title" { "Feedback" }
                @if self.record.feedback.is_empty() {
                    p { "No feedback yet." }
                } @else {
                    ul class="feedback" {
                        @for item in &self.record.feedback {
                            li {
                                strong { (feedback_words(item.kind)) }
                                @if let Some(signal) = &item.signal {
                                    " on " code { (Text(signal)) }
                                }
                                " by " (Text(&item.actor))
                                " at " (time_element(item.at))
                                @if let Some(onset) = item.onset {
                                    ", began at " (time_element(onset))
                                }
                                @if !item.note.is_empty() { ": " q { (Text(&item.note)) } }
                            }
                        }
                    }
                }
                @if self.session.is_operator() {
                    (self.feedback_form())
                } @else {
                    p class="help" { "Leaving feedback needs an operator token." }
                }
            }
        }
    }

    fn feedback_form(&self) -> Markup {
        let release = &self.record.release;
        html! {
            form class="feedback-form" method="post"
                action={ "/releases/" (url(&release.id)) "/feedback" } {
                (self.session.form_field())
                fieldset {
                    legend { "Was Vigil right about this release?" }
                    @for (value, label) in FEEDBACK_CHOICES {
                        @let id = format!("feedback-{value}");
                        div class="choice" {
                            input type="radio" id=(id) name="kind" value=(value) required;
                            label for=(id) { (label) }
                        }
                    }
                }
                div class="field" {
                    label for="feedback-onset" { "Missed fault: when it began (UTC, optional)" }
                    input type="datetime-local" id="feedback-onset" name="onset";
                }
                div class="field" {
                    label for="feedback-note" { "Note" }
                    textarea id="feedback-note" name="note" rows="3" maxlength=(MAX_NOTE_BYTES) {}
                }
                button type="submit" { "Send feedback" }
            }
        }
    }

    fn transitions(&self) -> Markup {
        html! {
            section id="transitions" aria-labelledby="transitions-title" {
                h2 id="transitions-title" { "Transitions" }
                table class="transitions" {
                    caption { "Who changed the release's state, when and why, oldest first" }
                    thead {
                        tr { @for heading in TRANSITION_HEADINGS { th scope="col" { (heading) } } }
                    }
                    tbody {
                        @for transition in &self.record.transitions {
                            tr {
                                td { (time_element(transition.at)) }
                                td { (Text(&transition.action.as_str().replace('_', " "))) }
                                td { (state_badge(transition.from)) }
                                td { (state_badge(transition.to)) }
                                td { (Text(&transition.actor)) }
                                td { (Text(&transition.reason)) }
                            }
                        }
                    }
                }
                @if is_running(self.record.release.state) {
                    p class="help" {
                        "The release is running: reload the page to see what changed."
                    }
                }
            }
        }
    }
}

/// The findings the learned stage set aside at the deciding step, apart, each with why.
fn suppressed_findings(suppressed: &[vigil_core::Suppressed]) -> Markup {
    if suppressed.is_empty() {
        return html! {};
    }
    html! {
        details class="suppressed" id="suppressed" {
            summary {
                (suppressed.len()) " "
                (if suppressed.len() == 1 { "finding" } else { "findings" })
                " set aside by the learned stage"
            }
            table {
                thead { tr { th { "Signal" } th { "Severity" } th { "Effect" } th { "Why" } } }
                tbody {
                    @for aside in suppressed {
                        tr {
                            td { code { (Text(&aside.finding.signal.label())) } }
                            td { (aside.finding.severity.as_str()) }
                            td { (Text(&effect_row(&aside.finding))) }
                            td { (Text(&aside.reason)) }
                        }
                    }
                }
            }
        }
    }
}

/// What a task's state says to a person.
fn task_words(state: vigil_core::agent::TaskState) -> &'static str {
    use vigil_core::agent::TaskState;
    match state {
        TaskState::Pending => "waiting to be sent",
        TaskState::Sent => "sent to the agent",
        TaskState::Started => "running",
        TaskState::Succeeded => "succeeded",
        TaskState::Failed => "failed",
    }
}

/// The executor's progress of a release it ships: hosts deployed out of all (a progress bar),
/// each batch's state, each host's tasks with the agent's last words, and how far each host
/// holds the artifact.
fn execution_progress(execution: &ExecutionView) -> Markup {
    let (deployed, total) = execution.deployed_share();
    html! {
        section id="execution" aria-labelledby="execution-title" {
            h2 id="execution-title" { "Executor" }
            p {
                label for="execution-progress" {
                    (deployed) " of " (total) " hosts deployed"
                }
                " "
                progress id="execution-progress" value=(deployed) max=(total.max(1)) {
                    (deployed) " of " (total)
                }
            }
            p { "Artifact " code { (Text(&execution.artifact)) } }
            table class="execution-batches" {
                caption { "Batches as the executor runs them" }
                thead {
                    tr {
                        th scope="col" { "Batch" }
                        th scope="col" { "State" }
                        th scope="col" { "Started" }
                        th scope="col" { "Deployed" }
                        th scope="col" { "Observed for" }
                    }
                }
                tbody {
                    @for batch in &execution.batches {
                        tr data-batch-state=(batch.state) {
                            td { (batch.index) }
                            td { (batch.state) }
                            td { @if let Some(at) = batch.started_at { (time_element(at)) } }
                            td { @if let Some(at) = batch.deployed_at { (time_element(at)) } }
                            td { (batch.observe_seconds) " s" }
                        }
                    }
                }
            }
            table class="execution-hosts" {
                caption { "Tasks per host, oldest first" }
                thead {
                    tr {
                        th scope="col" { "Host" }
                        th scope="col" { "Batch" }
                        th scope="col" { "Task" }
                        th scope="col" { "State" }
                        th scope="col" { "Ended" }
                        th scope="col" { "Message" }
                    }
                }
                tbody {
                    @for task in &execution.tasks {
                        tr data-task-state=(task.state.as_str()) {
                            td { (Text(&task.host)) }
                            td { (task.batch) }
                            td { (task.kind.as_str()) " " (Text(&task.version)) }
                            td { (task_words(task.state)) }
                            td { @if let Some(at) = task.ended_at { (time_element(at)) } }
                            td { (Text(&task.message)) }
                        }
                    }
                }
            }
            table class="execution-distribution" {
                caption { "The artifact on each host" }
                thead {
                    tr {
                        th scope="col" { "Host" }
                        th scope="col" { "Pieces" }
                        th scope="col" { "Verified" }
                    }
                }
                tbody {
                    @for host in &execution.distribution {
                        tr {
                            td { (Text(&host.host)) }
                            td {
                                progress value=(host.pieces_held) max=(host.pieces.max(1)) {
                                    (host.pieces_held) " of " (host.pieces)
                                }
                                " " (host.pieces_held) " of " (host.pieces)
                            }
                            td { @if host.verified { "yes" } @else { "not yet" } }
                        }
                    }
                }
            }
        }
    }
}
