//! The discovery part of an app's page: what Vigil found in the app's Prometheus, what is
//! missing, and the admin's forms to apply the proposals or add a query of one's own.

use maud::Render;
use std::fmt::Write;

use vigil_onboarding::discover::{Discovery, FoundSignal};

use super::{open_section, AppPage};
use crate::pages::apps::words::family_words;
use crate::pages::apps::MAX_QUERY_BYTES;
use crate::pages::html::{esc, found_badge, url};
use vigil_guard::apps::selector::default_selector;
use vigil_guard::apps::DISCOVERY_HOST_LABEL;

impl AppPage<'_> {
    pub(super) fn write_discovery(&self, out: &mut String) {
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
            .unwrap_or_else(|| DISCOVERY_HOST_LABEL.to_owned());
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
            self.session.form_field().into_string(),
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
            found_badge(false, missing.signal.describe()).render_to(out);
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
            self.session.form_field().into_string()
        );
    }
}

fn write_found_row(out: &mut String, found: &FoundSignal, hosts_under_selector: usize) {
    out.push_str("<tr><th scope=\"row\">");
    found_badge(true, found.signal.describe()).render_to(out);
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
                found_badge(false, "the trial failed").render_to(out);
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
