//! The HTML of a release's page: a summary (state, verdict and why), the batches, the findings
//! with their charts, the log templates, the actions, the feedback and the transitions.

use std::fmt::Write;

use axum::http::StatusCode;
use axum::response::Response;
use vigil_core::release::{Action, ReleaseState, VerdictRecord};
use vigil_core::text::figure;
use vigil_core::{Bundle, Finding, Signal, Verdict};

use super::rules::{action_label, effect_row, feedback_words, log_counts, ordered_findings};
use super::{MAX_REASON_BYTES, PAGE_ACTIONS};
use crate::error::ApiError;
use crate::pages::chart::MetricChart;
use crate::pages::html::{
    esc, is_running, state_badge, time_element, url, verdict_badge, verdict_words,
};
use crate::pages::session::Session;
use crate::pages::{html_page, Section};
use crate::releases::{deciding_verdict, verdict_answer, ReleaseRecord, MAX_NOTE_BYTES};

/// Hosts named in full; longer lists are folded behind a disclosure.
const HOSTS_SHOWN: usize = 12;

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

/// Everything one release's page shows.
pub(super) struct Detail<'a> {
    pub(super) record: &'a ReleaseRecord,
    pub(super) bundle: Result<&'a Bundle, &'a ApiError>,
    pub(super) session: &'a Session,
    pub(super) notice: Option<&'static str>,
}

impl Detail<'_> {
    /// The whole page.
    pub(super) fn page(&self) -> Response {
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
