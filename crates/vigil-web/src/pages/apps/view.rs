//! The HTML of the Apps pages: the table of every app, and one app's whole onboarding report
//! with its forms.

mod discovery;

use maud::Render;
use std::fmt::Write;

use vigil_core::model::MetricMeta;
use vigil_guard::pull::PullFailure;
use vigil_onboarding::{FamilyCoverage, MetricSource, Onboarding, Signal, SignalFamily};

use super::metric_groups::{metric_groups, MetricGroup, GROUPED_ABOVE};
use super::words::{
    declaration_words, family_words, metric_type_words, signal_list, state_meaning,
};
use crate::onboarding::{unknown_app, AppReport, DiscoveryQuery, UNREACHABLE_FOR_VIEWERS};
use crate::pages::html::{connection_badge, esc, found_badge, time_element, url};
use crate::pages::session::Session;

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
        Some(unix) => time_element(unix).render_to(out),
        None => out.push_str(absent),
    }
}

pub(super) fn apps_table(out: &mut String, reports: &[Onboarding]) {
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
        connection_badge(report.state).render_to(out);
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
        found_badge(false, "not covered").render_to(out);
        return;
    };
    found_badge(
        entry.covered,
        if entry.covered {
            "covered"
        } else {
            "not covered"
        },
    )
    .render_to(out);
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

/// Everything one app's page shows.
pub(super) struct AppPage<'a> {
    pub(super) found: &'a AppReport,
    pub(super) asked: &'a DiscoveryQuery,
    pub(super) session: &'a Session,
    pub(super) notice: Option<String>,
    /// The app's pull queries whose last pull failed.
    pub(super) failing: &'a [PullFailure],
    /// The metrics the app declares judged in every release.
    pub(super) declared: &'a [MetricMeta],
}

impl AppPage<'_> {
    fn report(&self) -> &Onboarding {
        &self.found.report
    }

    pub(super) fn write(&self, out: &mut String, unknown: bool) {
        let report = self.report();
        let _ = write!(
            out,
            "<h1>{}</h1><p class=\"subtitle\">What Vigil receives from this app and what to \
             configure next, as of ",
            esc(&report.app)
        );
        time_element(report.at).render_to(out);
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
        connection_badge(report.state).render_to(out);
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
                found_badge(signal.found, if signal.found { "found" } else { "missing" })
                    .render_to(out);
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
            time_element(host.last_seen).render_to(out);
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
            self.session.form_field().into_string(),
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
            self.session.form_field().into_string(),
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
        time_element(metric.last_sample).render_to(out);
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
        time_element(failure.at).render_to(out);
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
            self.session.form_field().into_string(),
            esc(metric),
            esc(metric)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_family_cell_says_what_is_found_and_missing_in_words() {
        use vigil_onboarding::SignalCoverage;
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
