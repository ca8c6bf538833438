//! The HTML of the Apps pages: the table of every app, and one app's whole onboarding report
//! with its forms.

mod discovery;

use maud::{html, Markup};
use vigil_core::model::MetricMeta;
use vigil_core::rules::Rule;
use vigil_guard::pull::PullFailure;
use vigil_onboarding::{FamilyCoverage, MetricSource, Onboarding, Signal, SignalFamily};

use super::metric_groups::{metric_groups, MetricGroup, GROUPED_ABOVE};
use super::rules::{RULE_BOUNDS, RULE_SEVERITIES};
use super::words::{
    declaration_words, family_words, metric_type_words, signal_list, state_meaning,
};
use crate::onboarding::{unknown_app, AppReport, DiscoveryQuery, UNREACHABLE_FOR_VIEWERS};
use crate::pages::html::{connection_badge, found_badge, time_element, url, Text};
use crate::pages::session::Session;

/// The families in the order the pages show them.
const FAMILIES: [SignalFamily; 3] = [
    SignalFamily::System,
    SignalFamily::Middleware,
    SignalFamily::Logs,
];

/// Most hosts listed in an app's hosts table.
const HOSTS_LISTED: usize = 100;

/// The head of a table of metric families.
fn metric_table_head() -> Markup {
    html! {
        thead {
            tr {
                th scope="col" { "Metric" }
                th scope="col" { "Signals" }
                th scope="col" { "Hosts reporting" }
                th scope="col" { "Type and unit" }
                th scope="col" { "Newest sample" }
                th scope="col" { "A release declares it" }
            }
        }
    }
}

/// The kinds a declared metric may have: value and words.
const DECLARED_KINDS: [(&str, &str); 3] = [
    ("middleware", "middleware"),
    ("system", "system"),
    ("business", "business"),
];

/// The directions in which a declared metric may harm: value and words.
const DECLARED_DIRECTIONS: [(&str, &str); 3] = [
    ("increase", "increases"),
    ("decrease", "decreases"),
    ("either", "changes either way"),
];

/// A labelled choice of the declare form, named `name`, of `choices` (value and words).
fn select_field(name: &str, label: &str, choices: &[(&str, &str)]) -> Markup {
    let id = format!("declare-{name}");
    html! {
        div class="field" {
            label for=(id) { (label) }
            select id=(id) name=(name) {
                @for (value, words) in choices { option value=(value) { (words) } }
            }
        }
    }
}

/// A labelled choice `name` with the element id `id`, of `choices` (value and words).
fn labelled_select(id: &str, name: &str, label: &str, choices: &[(&str, &str)]) -> Markup {
    html! {
        div class="field" {
            label for=(id) { (label) }
            select id=(id) name=(name) {
                @for (value, words) in choices { option value=(value) { (words) } }
            }
        }
    }
}

/// A table's head row of the given column headings.
fn table_head(headings: &[&str]) -> Markup {
    html! { thead { tr { @for heading in headings { th scope="col" { (heading) } } } } }
}

/// A section whose heading `title` labels it; `id` is its anchor.
fn section(id: &str, title: &str, content: Markup) -> Markup {
    html! {
        section id=(id) aria-labelledby={ (id) "-title" } {
            h2 id={ (id) "-title" } { (Text(title)) }
            (content)
        }
    }
}

/// A time, or `absent` without one.
fn optional_time(moment: Option<i64>, absent: &str) -> Markup {
    match moment {
        Some(unix) => time_element(unix),
        None => html! { (absent) },
    }
}

pub(super) fn apps_table(reports: &[Onboarding]) -> Markup {
    html! {
        table class="apps" {
            caption {
                "Apps by name: onboarding state, hosts and the signals covered (system: CPU, \
                 memory, load; middleware: request rate, latency, errors; logs)"
            }
            (table_head(&["App", "State", "Hosts", "System", "Middleware", "Logs", "Newest data"]))
            tbody {
                @if reports.is_empty() {
                    tr {
                        td colspan="7" {
                            "No app yet: push samples or log lines for an app, or give it \
                             settings (" code { "PUT /api/v1/apps/{app}" } ")."
                        }
                    }
                }
                @for report in reports {
                    tr {
                        th scope="row" {
                            a href={ "/apps/" (url(&report.app)) } { (Text(&report.app)) }
                        }
                        td { (connection_badge(report.state)) }
                        td { (report.hosts.count) }
                        @for family in FAMILIES {
                            td { (family_cell(&report.coverage, family)) }
                        }
                        td { (optional_time(report.hosts.last_seen, "none yet")) }
                    }
                }
            }
        }
    }
}

/// A family's badge (covered or not) and, for a family of several signals, which are found.
fn family_cell(coverage: &[FamilyCoverage], family: SignalFamily) -> Markup {
    let Some(entry) = coverage.iter().find(|entry| entry.family == family) else {
        return found_badge(false, "not covered");
    };
    let badge = found_badge(
        entry.covered,
        if entry.covered {
            "covered"
        } else {
            "not covered"
        },
    );
    if entry.signals.len() < 2 {
        return badge;
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
    html! {
        (badge)
        div class="help" {
            @if !found.is_empty() { "found: " (signal_list(&found)) }
            @if !found.is_empty() && !missing.is_empty() { "; " }
            @if !missing.is_empty() { "missing: " (signal_list(&missing)) }
        }
    }
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
    /// The app's rules.
    pub(super) rules: &'a [Rule],
    /// The app's false-alarm signatures, drawn.
    pub(super) library: Markup,
}

impl AppPage<'_> {
    fn report(&self) -> &Onboarding {
        &self.found.report
    }

    pub(super) fn body(&self, unknown: bool) -> Markup {
        let report = self.report();
        html! {
            h1 { (Text(&report.app)) }
            p class="subtitle" {
                "What Vigil receives from this app and what to configure next, as of "
                (time_element(report.at)) ". " a href="/apps" { "All apps" }
            }
            @if let Some(notice) = &self.notice {
                p class="notice" role="status" { (Text(notice)) }
            }
            @if unknown {
                p class="notice error" role="alert" { (Text(&unknown_app(&report.app).message)) }
            } @else {
                (self.summary())
                (self.coverage())
                (self.next_steps())
                (self.hosts())
                (self.metrics())
                (self.judged())
                (self.rules())
                (self.library)
                (self.logs())
                (self.pull())
            }
            (self.discovery())
        }
    }

    fn summary(&self) -> Markup {
        let report = self.report();
        html! {
            section id="summary" class="summary panel" aria-labelledby="summary-title" {
                h2 id="summary-title" { "Summary" }
                dl class="facts" {
                    div { dt { "State" } dd { (connection_badge(report.state)) } }
                    div { dt { "Hosts seen" } dd { (report.hosts.count) } }
                    div {
                        dt { "Newest data" }
                        dd { (optional_time(report.hosts.last_seen, "none yet")) }
                    }
                    div {
                        dt { "Pull source" }
                        dd {
                            @match &report.pull {
                                Some(source) => { code { (Text(&source.url)) } }
                                None => { "none" }
                            }
                        }
                    }
                }
                p class="reason" { (state_meaning(report.state)) }
            }
        }
    }

    fn coverage(&self) -> Markup {
        let content = html! {
            table class="coverage" {
                caption {
                    "The signals a release is judged on, found or missing, with what fills each"
                }
                (table_head(&["Family", "Signal", "Status", "Filled by"]))
                tbody {
                    @for family in &self.report().coverage {
                        @for signal in &family.signals {
                            tr {
                                td { (family_words(family.family)) }
                                th scope="row" { (Text(signal.signal.describe())) }
                                td {
                                    (found_badge(
                                        signal.found,
                                        if signal.found { "found" } else { "missing" },
                                    ))
                                }
                                td {
                                    @if signal.sources.is_empty() { "nothing yet" }
                                    @for (position, source) in signal.sources.iter().enumerate() {
                                        @if position > 0 { ", " }
                                        code { (Text(source)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        };
        section("coverage", "Coverage", content)
    }

    fn next_steps(&self) -> Markup {
        let steps = &self.report().next_steps;
        let content = html! {
            @if steps.is_empty() {
                p { "Nothing to do: every expected signal arrives." }
            } @else {
                ol class="steps" {
                    @for step in steps {
                        li {
                            strong { (Text(step.signal.describe())) }
                            " (" (family_words(step.family)) "): " (Text(&step.text))
                        }
                    }
                }
            }
        };
        section("next-steps", "Next steps", content)
    }

    fn hosts(&self) -> Markup {
        let hosts = &self.report().hosts;
        let content = html! {
            @if hosts.hosts.is_empty() {
                p { "No host of this app sent data yet." }
            } @else {
                table class="hosts" {
                    caption { "The app's hosts with data, by name" }
                    (table_head(&["Host", "Newest data", "Metric series", "Log templates"]))
                    tbody {
                        @for host in hosts.hosts.iter().take(HOSTS_LISTED) {
                            tr {
                                th scope="row" { (Text(&host.host)) }
                                td { (time_element(host.last_seen)) }
                                td { (host.metric_series) }
                                td { (host.log_templates) }
                            }
                        }
                    }
                }
                @if hosts.hosts.len() > HOSTS_LISTED {
                    p class="help" {
                        "Showing the first " (HOSTS_LISTED) " of " (hosts.hosts.len()) " hosts."
                    }
                }
            }
        };
        section("hosts", "Hosts seen", content)
    }

    fn metrics(&self) -> Markup {
        let report = self.report();
        let content = html! {
            @if report.metrics.is_empty() {
                p { "No metric arrived from this app yet." }
            } @else if report.metrics.len() <= GROUPED_ABOVE {
                table class="metrics" {
                    caption {
                        "Metric families received, most hosts first, with the signals each fills"
                    }
                    (metric_table_head())
                    tbody { @for metric in &report.metrics { (self.metric_row(metric)) } }
                }
            } @else {
                p class="help" {
                    (report.metrics.len()) " metric families received, grouped by the words \
                     their names start with; the groups holding a family that fills a signal \
                     or is judged are open."
                }
                @for group in metric_groups(&report.metrics, self.declared) {
                    (self.metric_group(&group))
                }
            }
        };
        section("metrics", "Metric sources", content)
    }

    /// One group of metric families, folded unless a family of it is in use.
    fn metric_group(&self, group: &MetricGroup<'_>) -> Markup {
        let families = group.metrics.len();
        html! {
            details class="metric-group" open[group.in_use > 0] {
                summary {
                    code { (Text(group.prefix)) "_*" } " (" (families) " "
                    (if families == 1 { "family" } else { "families" }) ", "
                    (group.in_use) " in use)"
                }
                table class="metrics" {
                    caption {
                        "Metric families named " code { (Text(group.prefix)) "_*" }
                        ", most hosts first"
                    }
                    (metric_table_head())
                    tbody { @for metric in &group.metrics { (self.metric_row(metric)) } }
                }
            }
        }
    }

    /// The metrics the app declares judged, with the admin's forms to declare and remove one.
    fn judged(&self) -> Markup {
        let admin = self.session.is_admin();
        let content = html! {
            p class="help" {
                "A release is judged on the metrics it lists and on these, which are copied into \
                 every release of the app when it is created: a change of one may pause the \
                 release. Every other metric may only recommend."
            }
            @if self.declared.is_empty() {
                p { "The app declares no metric." }
            } @else {
                table class="judged" {
                    caption { "The metrics every release of the app is judged on" }
                    thead {
                        tr {
                            th scope="col" { "Metric" }
                            th scope="col" { "Declared as" }
                            th scope="col" { "Unit" }
                            @if admin { th scope="col" { "Remove" } }
                        }
                    }
                    tbody {
                        @for meta in self.declared {
                            tr {
                                th scope="row" { code { (Text(&meta.name)) } }
                                td { (Text(&declaration_words(meta))) }
                                td { (Text(&meta.unit)) }
                                @if admin { (self.undeclare_form(&meta.name)) }
                            }
                        }
                    }
                }
            }
            @if admin {
                (self.declare_form())
            } @else {
                p class="help" { "Declaring a metric needs an admin token." }
            }
        };
        section("judged", "Judged metrics", content)
    }

    /// The app's rules, with the admin's forms to save and remove one.
    fn rules(&self) -> Markup {
        let admin = self.session.is_admin();
        let content = html! {
            p class="help" {
                "A rule bounds a metric the app sends, or a PromQL query on its Prometheus, on \
                 the release hosts: a broken fault rule pauses the release, a broken anomaly \
                 rule recommends a look. Rules are copied into every release of the app when it \
                 is created; a release's own rule of the same name replaces the app's."
            }
            @if self.rules.is_empty() {
                p { "The app has no rule." }
            } @else {
                table class="rules" {
                    caption { "The rules every release of the app is judged by" }
                    thead {
                        tr {
                            th scope="col" { "Rule" }
                            th scope="col" { "Broken when" }
                            th scope="col" { "Severity" }
                            @if admin { th scope="col" { "Remove" } }
                        }
                    }
                    tbody {
                        @for rule in self.rules {
                            tr {
                                th scope="row" { code { (Text(&rule.name)) } }
                                td { (Text(&rule.describe())) }
                                td { (rule.severity.as_str()) }
                                @if admin { (self.remove_rule_form(&rule.name)) }
                            }
                        }
                    }
                }
            }
            @if admin {
                (self.rule_form())
            } @else {
                p class="help" { "Changing a rule needs an admin token." }
            }
        };
        section("rules", "Rules", content)
    }

    fn remove_rule_form(&self, name: &str) -> Markup {
        self.remove_form(
            "remove-rule",
            "rules/remove",
            ("name", name),
            &format!("Remove the rule {name}"),
        )
    }

    /// A cell with one "Remove" button: a form posting `field` (its name and value) to the
    /// app's `path` under `/apps/{app}/`, with the session's field; `label` names what it removes.
    fn remove_form(
        &self,
        class: &str,
        path: &str,
        (field, value): (&str, &str),
        label: &str,
    ) -> Markup {
        html! {
            td {
                form class=(class) method="post"
                    action={ "/apps/" (url(&self.report().app)) "/" (path) } {
                    (self.session.form_field())
                    input type="hidden" name=(field) value=(Text(value));
                    button type="submit" aria-label=(Text(label)) {
                        "Remove"
                    }
                }
            }
        }
    }

    fn rule_form(&self) -> Markup {
        let max_name_bytes = vigil_core::validate::MAX_NAME_BYTES;
        let max_query_bytes = vigil_core::rules::MAX_RULE_QUERY_BYTES;
        html! {
            form class="save-rule" method="post"
                action={ "/apps/" (url(&self.report().app)) "/rules" } {
                (self.session.form_field())
                fieldset {
                    legend { "Save a rule (a rule of the same name is replaced)" }
                    div class="field" {
                        label for="rule-name" { "Rule name" }
                        input id="rule-name" name="name" type="text" required
                            maxlength=(max_name_bytes) autocomplete="off";
                    }
                    div class="field" {
                        label for="rule-metric" { "Metric (or a query below)" }
                        input id="rule-metric" name="metric" type="text"
                            maxlength=(max_name_bytes) autocomplete="off";
                    }
                    div class="field" {
                        label for="rule-query" { "PromQL query, one series per host" }
                        input id="rule-query" name="query" type="text"
                            maxlength=(max_query_bytes) autocomplete="off";
                    }
                    (labelled_select("rule-bound", "bound", "Broken when it is", &RULE_BOUNDS))
                    div class="field" {
                        label for="rule-value" { "Value, or share (0.2 = 20 %)" }
                        input id="rule-value" name="value" type="text" required
                            inputmode="decimal" autocomplete="off";
                    }
                    div class="field" {
                        label for="rule-duration" { "For at least (seconds)" }
                        input id="rule-duration" name="duration_seconds" type="number" min="0"
                            placeholder="0";
                    }
                    (labelled_select("rule-severity", "severity", "Severity", &RULE_SEVERITIES))
                }
                button type="submit" { "Save this rule" }
            }
        }
    }

    fn undeclare_form(&self, metric: &str) -> Markup {
        self.remove_form(
            "remove-declared",
            "metrics/remove",
            ("metric", metric),
            &format!("Remove the declaration of {metric}"),
        )
    }

    fn declare_form(&self) -> Markup {
        let max_name_bytes = vigil_core::validate::MAX_NAME_BYTES;
        html! {
            form class="declare-metric" method="post"
                action={ "/apps/" (url(&self.report().app)) "/metrics" } {
                (self.session.form_field())
                fieldset {
                    legend { "Declare a judged metric" }
                    div class="field" {
                        label for="declare-metric" { "Metric name" }
                        input id="declare-metric" name="metric" type="text" required
                            maxlength=(max_name_bytes) autocomplete="off";
                    }
                    (select_field("kind", "Kind", &DECLARED_KINDS))
                    (select_field("direction", "Harmful when it", &DECLARED_DIRECTIONS))
                    div class="field" {
                        label for="declare-unit" { "Unit" }
                        input id="declare-unit" name="unit" type="text" maxlength=(max_name_bytes)
                            autocomplete="off";
                    }
                    div class="field" {
                        input id="declare-critical" name="critical" type="checkbox" value="on";
                        label for="declare-critical" {
                            "Critical (every host must report it)"
                        }
                    }
                }
                button type="submit" { "Declare this metric" }
            }
        }
    }

    fn metric_row(&self, metric: &MetricSource) -> Markup {
        html! {
            tr {
                th scope="row" {
                    code { (Text(&metric.name)) }
                    @if metric.pulled { " " span class="help" { "(pulled)" } }
                }
                td {
                    (Text(&signal_list(&metric.signals)))
                    @if !metric.evidence.is_empty() {
                        div class="help" { (Text(&metric.evidence.join("; "))) }
                    }
                }
                td {
                    (metric.hosts_reporting) " of " (self.report().hosts.count)
                    @if !metric.hosts_missing.is_empty() {
                        div class="help" { "not from " (Text(&metric.hosts_missing.join(", "))) }
                    }
                }
                td {
                    (metric_type_words(metric.metric_type))
                    @if !metric.unit.is_empty() { ", " (Text(&metric.unit)) }
                }
                td { (time_element(metric.last_sample)) }
                td {
                    @match &metric.suggested {
                        Some(meta) => { (Text(&declaration_words(meta))) }
                        None => {
                            "not judged: no expected signal, or not one series per host"
                        }
                    }
                }
            }
        }
    }

    fn logs(&self) -> Markup {
        let logs = &self.report().logs;
        let content = html! {
            @if logs.hosts.is_empty() {
                p { "No log line arrived from this app yet." }
            } @else {
                dl class="facts" {
                    div { dt { "Hosts sending lines" } dd { (logs.hosts.len()) } }
                    div { dt { "Lines" } dd { (logs.lines) } }
                    div { dt { "Exception lines" } dd { (logs.exception_lines) } }
                    div { dt { "Templates" } dd { (logs.templates) } }
                    div { dt { "Exception templates" } dd { (logs.exception_templates) } }
                    div { dt { "Newest line" } dd { (optional_time(logs.last_line, "none")) } }
                }
                @if logs.top_exceptions.is_empty() {
                    p { "No exception (error level or worse) was logged." }
                } @else {
                    table class="exceptions" {
                        caption { "The most frequent exception templates" }
                        (table_head(&["Template", "Level", "Lines", "Hosts"]))
                        tbody {
                            @for template in &logs.top_exceptions {
                                tr {
                                    th scope="row" { code { (Text(&template.text)) } }
                                    td { (Text(&template.level)) }
                                    td { (template.lines) }
                                    td { (template.hosts) }
                                }
                            }
                        }
                    }
                }
            }
        };
        section("logs", "Log sources", content)
    }

    fn pull(&self) -> Markup {
        let Some(source) = &self.report().pull else {
            let content = html! {
                p {
                    "The app has no pull source: Vigil fetches nothing from Prometheus for it. \
                     Look for its metrics below; applying the proposed queries makes one."
                }
            };
            return section("pull", "Pull source", content);
        };
        let admin = self.session.is_admin();
        let content = html! {
            dl class="facts" {
                div { dt { "Prometheus" } dd { code { (Text(&source.url)) } } }
                div {
                    dt { "Selector" }
                    dd { code { (Text(source.selector.as_deref().unwrap_or("none"))) } }
                }
                div { dt { "Host label" } dd { code { (Text(&source.host_label)) } } }
                div { dt { "Step" } dd { (source.step_seconds) " s" } }
            }
            table class="queries" {
                caption {
                    "The queries fetched every step, each stored as a metric of every host"
                }
                thead {
                    tr {
                        th scope="col" { "Metric" }
                        th scope="col" { "PromQL" }
                        th scope="col" { "Last pull" }
                        @if admin { th scope="col" { "Remove" } }
                    }
                }
                tbody {
                    @for query in &source.queries {
                        tr {
                            th scope="row" { code { (Text(&query.metric)) } }
                            td { code { (Text(&query.query)) } }
                            td { (self.pull_state(&query.metric)) }
                            @if admin { (self.remove_query_form(&query.metric)) }
                        }
                    }
                }
            }
        };
        section("pull", "Pull source", content)
    }

    /// Whether a query's last pull failed: when and (to admins, who chose the server) why.
    fn pull_state(&self, metric: &str) -> Markup {
        let Some(failure) = self.failing.iter().find(|failure| failure.metric == metric) else {
            return html! { "ok" };
        };
        let why = if self.session.is_admin() {
            failure.error.as_str()
        } else {
            UNREACHABLE_FOR_VIEWERS
        };
        html! {
            span class="notice error" role="alert" {
                "failing, last at " (time_element(failure.at)) ": " (Text(why))
            }
        }
    }

    fn remove_query_form(&self, metric: &str) -> Markup {
        self.remove_form(
            "remove-query",
            "queries/remove",
            ("metric", metric),
            &format!("Remove the query of {metric}"),
        )
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
        let out = family_cell(&coverage, SignalFamily::System).into_string();
        assert!(out.contains("<span>covered</span>"), "{out}");
        assert!(out.contains("found: CPU; missing: load"), "{out}");
        let logs = family_cell(&coverage, SignalFamily::Logs).into_string();
        assert!(logs.contains("<span>not covered</span>"), "{logs}");
    }
}
