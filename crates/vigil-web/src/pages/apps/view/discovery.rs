//! The discovery part of an app's page: what Vigil found in the app's Prometheus, what is
//! missing, and the admin's forms to apply the proposals or add a query of one's own.

use maud::{html, Markup};
use vigil_onboarding::discover::{Discovery, FoundSignal};

use super::{section, table_head, AppPage};
use crate::pages::apps::words::family_words;
use crate::pages::apps::MAX_QUERY_BYTES;
use crate::pages::html::{found_badge, url, Text};
use vigil_guard::apps::selector::default_selector;
use vigil_guard::apps::DISCOVERY_HOST_LABEL;

impl AppPage<'_> {
    pub(super) fn discovery(&self) -> Markup {
        let report = self.report();
        let failures = [
            self.found
                .asked_failure
                .as_ref()
                .map(|error| error.message.as_str()),
            report.discovery_error.as_deref(),
        ];
        let content = html! {
            p class="help" {
                "Vigil asks the Prometheus server which usual metric families it holds under the \
                 app's labels (node exporter, client libraries, Micrometer, OpenTelemetry, gRPC, \
                 nginx, HAProxy, Envoy) and proposes one pull query per signal, one series per \
                 host, tried once."
            }
            (self.discovery_form())
            @for failure in failures.into_iter().flatten() {
                p class="notice error" role="alert" { (Text(failure)) }
            }
            @if let Some(discovery) = &report.discovery {
                (self.found_signals(discovery))
                (missing_signals(discovery))
            }
            (self.own_query_form())
        };
        section("discovery", "Metrics in Prometheus", content)
    }

    /// The form that names where to look (a GET: looking changes nothing, viewers may).
    fn discovery_form(&self) -> Markup {
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
            .unwrap_or_else(|| DISCOVERY_HOST_LABEL.to_owned());
        html! {
            form class="discover filters" method="get"
                action={ "/apps/" (url(&report.app)) "#discovery" }
                aria-label="Look for the app's metrics in Prometheus" {
                div class="field" {
                    label for="discover-prometheus" { "Prometheus URL" }
                    input id="discover-prometheus" name="prometheus" type="url"
                        value=(Text(&prometheus)) placeholder="http://prometheus:9090" required;
                }
                div class="field" {
                    label for="discover-selector" { "The app's labels there" }
                    input id="discover-selector" name="selector" type="text"
                        value=(Text(&selector)) aria-describedby="discover-selector-help"
                        autocomplete="off";
                    span id="discover-selector-help" class="help" {
                        "label matchers, such as " code { "job=\"checkout\"" }
                    }
                }
                div class="field" {
                    label for="discover-host-label" { "Host label" }
                    input id="discover-host-label" name="host_label" type="text"
                        value=(Text(&host_label)) autocomplete="off";
                }
                button type="submit" { "Look in Prometheus" }
            }
        }
    }

    fn found_signals(&self, discovery: &Discovery) -> Markup {
        let params = &discovery.params;
        html! {
            dl class="facts" {
                div { dt { "Prometheus" } dd { code { (Text(&params.prometheus)) } } }
                div { dt { "Selector" } dd { code { (Text(&params.selector)) } } }
                div { dt { "Host label" } dd { code { (Text(&params.host_label)) } } }
                div { dt { "Hosts under the selector" } dd { (discovery.hosts.len()) } }
                div { dt { "Metric names" } dd { (discovery.metric_names) } }
            }
            @if !discovery.notes.is_empty() {
                ul class="notes" { @for note in &discovery.notes { li { (Text(note)) } } }
            }
            @if discovery.found.is_empty() {
                p {
                    "No usual metric family was found under this selector: check the selector, \
                     or add a query of your own below."
                }
            } @else {
                table class="found" {
                    caption {
                        "Signals found, with the pull query proposed for each and how many hosts \
                         answered it when tried"
                    }
                    (table_head(&[
                        "Signal",
                        "Stored as",
                        "Proposed PromQL",
                        "Found in",
                        "Hosts answering",
                    ]))
                    tbody {
                        @for found in &discovery.found {
                            (found_row(found, discovery.hosts.len()))
                        }
                    }
                }
                @if self.session.is_admin() {
                    form class="apply" method="post"
                        action={ "/apps/" (url(&self.report().app)) "/apply" } {
                        (self.session.form_field())
                        (hidden_params(discovery))
                        p class="help" {
                            "Adds every proposal that answered its trial to the app's pull \
                             source, beside the queries it has; nothing stored is replaced."
                        }
                        button type="submit" { "Apply these queries" }
                    }
                } @else {
                    p class="help" {
                        "You are signed in without the admin role: applying these queries needs \
                         an admin token."
                    }
                }
            }
        }
    }

    /// The form for a query of one's own (admins, once the app has a server to pull from).
    fn own_query_form(&self) -> Markup {
        let report = self.report();
        let hidden = match (&report.discovery, &report.pull) {
            (Some(discovery), _) => hidden_params(discovery),
            (None, Some(_)) => html! {},
            (None, None) => return html! {},
        };
        if !self.session.is_admin() {
            return html! { p class="help" { "Adding a query of your own needs an admin token." } };
        }
        html! {
            form class="own-query" method="post"
                action={ "/apps/" (url(&report.app)) "/queries" } {
                (self.session.form_field())
                (hidden)
                fieldset {
                    legend { "Add a query of your own" }
                    div class="field" {
                        label for="own-metric" { "Metric name" }
                        input id="own-metric" name="metric" type="text" required
                            maxlength=(MAX_QUERY_BYTES) autocomplete="off"
                            aria-describedby="own-metric-help";
                        span id="own-metric-help" class="help" {
                            "what the results are stored as, such as " code { "load1" }
                        }
                    }
                    div class="field" {
                        label for="own-query" { "PromQL" }
                        textarea id="own-query" name="query" rows="2" required
                            maxlength=(MAX_QUERY_BYTES) aria-describedby="own-query-help" {}
                        span id="own-query-help" class="help" {
                            "a query returning one series per host, such as "
                            code { "max by (instance) (node_load1{job=\"node\"})" }
                        }
                    }
                }
                button type="submit" { "Add this query" }
            }
        }
    }
}

/// The signals the discovery did not find, each with what to do.
fn missing_signals(discovery: &Discovery) -> Markup {
    if discovery.missing.is_empty() {
        return html! {};
    }
    html! {
        h3 id="missing-title" { "Signals not found" }
        ul class="missing" aria-labelledby="missing-title" {
            @for missing in &discovery.missing {
                li {
                    (found_badge(false, missing.signal.describe()))
                    " (" (family_words(missing.family)) "): " (Text(&missing.prompt))
                }
            }
        }
    }
}

fn found_row(found: &FoundSignal, hosts_under_selector: usize) -> Markup {
    html! {
        tr {
            th scope="row" {
                (found_badge(true, found.signal.describe()))
                " " span class="help" { "(" (family_words(found.family)) ")" }
            }
            td { code { (Text(&found.query.metric)) } }
            td { code { (Text(&found.query.query)) } }
            td {
                (Text(&found.convention)) ": "
                @for (position, name) in found.metrics.iter().enumerate() {
                    @if position > 0 { ", " }
                    code { (Text(name)) }
                }
                @if !found.alternatives.is_empty() {
                    div class="help" { "also: " (Text(&found.alternatives.join(", "))) }
                }
            }
            td {
                @match &found.check {
                    Some(check) => {
                        @match &check.error {
                            Some(error) => {
                                (found_badge(false, "the trial failed"))
                                div class="help" { (Text(error)) }
                            }
                            None => { (check.hosts) " of " (hosts_under_selector) }
                        }
                    }
                    None => { "not tried" }
                }
            }
        }
    }
}

/// The hidden fields that make an apply look where the page's discovery looked.
fn hidden_params(discovery: &Discovery) -> Markup {
    let params = &discovery.params;
    html! {
        input type="hidden" name="prometheus" value=(Text(&params.prometheus));
        input type="hidden" name="selector" value=(Text(&params.selector));
        input type="hidden" name="host_label" value=(Text(&params.host_label));
        input type="hidden" name="step_seconds" value=(params.step_seconds);
    }
}
