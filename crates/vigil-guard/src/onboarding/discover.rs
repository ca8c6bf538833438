//! Discovery: which usual metric families an app's Prometheus holds under the app's labels
//! (a selector such as `job="checkout"`), and a pull query proposed for each signal, PromQL
//! that yields one series per host.
//!
//! [`collect_inventory`] asks the server (metric names, hosts, metadata, then the labels of the
//! names worth a look); [`discover`] is the matching, without IO, over that [`Inventory`];
//! [`check_proposals`] runs each proposed query once to show how many hosts answer it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use vigil_core::model::MetricMeta;
use vigil_ingest::prometheus::{
    is_label_name, FamilyMetadata, PrometheusClient, PrometheusError, PrometheusOptions, RangeQuery,
};

use super::names::{self, Classified, Facts, Part, STATUS_LABELS};
use super::{MetricType, Signal, SignalFamily, METRIC_SIGNALS};
use crate::apps::selector::normalize_selector;
use crate::apps::PullQuery;

/// How far back series count as present, in seconds.
pub const LOOKBACK_SECONDS: i64 = 3600;

/// Most metric names whose labels are asked for.
pub const MAX_INSPECTED_NAMES: usize = 64;

/// Labels whose values matter to the proposals (besides the host label).
const VALUE_LABELS: [&str; 3] = ["mode", "quantile", "area"];

/// gRPC codes that are the server's fault.
const GRPC_SERVER_ERRORS: &str =
    "Unknown|DeadlineExceeded|Unimplemented|Internal|Unavailable|DataLoss";

/// Where and how to look.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveryParams {
    /// Base URL of the Prometheus server.
    pub prometheus: String,
    /// The app's label matchers, without braces: `job="checkout"`.
    pub selector: String,
    /// The label naming the host in the proposed queries' results.
    pub host_label: String,
    /// The pull step the queries are proposed for.
    pub step_seconds: i64,
    /// The range of `rate()` in the proposed queries.
    pub rate_window_seconds: i64,
}

/// Why discovery could not start or finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    #[error("prometheus address {0:?} must start with http:// or https://")]
    Url(String),
    #[error("selector {0:?} is not a list of label matchers such as job=\"checkout\"")]
    Selector(String),
    #[error("host_label {0:?} is not a label name")]
    HostLabel(String),
    #[error("step_seconds must be between 1 and 3600")]
    Step,
    #[error(transparent)]
    Prometheus(#[from] PrometheusError),
}

/// The default `rate()` range for a pull step: four steps, at least two minutes, so that a
/// scrape interval up to a minute leaves enough samples.
pub fn default_rate_window(step_seconds: i64) -> i64 {
    step_seconds.saturating_mul(4).max(120)
}

impl DiscoveryParams {
    /// Checks and normalizes the parameters (the selector loses its braces).
    pub fn new(
        prometheus: &str,
        selector: &str,
        host_label: &str,
        step_seconds: i64,
    ) -> Result<DiscoveryParams, DiscoveryError> {
        let url = prometheus.trim().trim_end_matches('/');
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(DiscoveryError::Url(prometheus.to_owned()));
        }
        let normalized = normalize_selector(selector)
            .ok_or_else(|| DiscoveryError::Selector(selector.to_owned()))?;
        if !is_label_name(host_label) {
            return Err(DiscoveryError::HostLabel(host_label.to_owned()));
        }
        if !(1..=3600).contains(&step_seconds) {
            return Err(DiscoveryError::Step);
        }
        Ok(DiscoveryParams {
            prometheus: url.to_owned(),
            selector: normalized,
            host_label: host_label.to_owned(),
            step_seconds,
            rate_window_seconds: default_rate_window(step_seconds),
        })
    }

    /// `name{selector, extra...}`.
    fn select(&self, name: &str, extra: &[String]) -> String {
        let mut matchers = vec![self.selector.clone()];
        matchers.extend(extra.iter().cloned());
        format!("{name}{{{}}}", matchers.join(","))
    }

    /// `rate(name{selector, extra...}[window])`.
    fn rate(&self, name: &str, extra: &[String]) -> String {
        format!(
            "rate({}[{}])",
            self.select(name, extra),
            duration_text(self.rate_window_seconds)
        )
    }
}

/// `120` as `2m`, `90` as `90s`.
fn duration_text(seconds: i64) -> String {
    if seconds % 60 == 0 {
        return format!("{}m", seconds / 60);
    }
    format!("{seconds}s")
}

/// What a Prometheus server holds under an app's selector.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inventory {
    /// Metric names with series under the selector.
    pub names: Vec<String>,
    /// Values of the host label under the selector.
    pub hosts: Vec<String>,
    /// Per inspected name: its label names, each with its values when they matter (the host
    /// label, status labels, `mode`, `quantile`, `area`), empty otherwise.
    pub labels: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    /// Metric families' metadata, by family.
    pub metadata: BTreeMap<String, FamilyMetadata>,
    /// What could not be read (metadata is optional).
    pub notes: Vec<String>,
}

fn value_matters(label: &str, host_label: &str) -> bool {
    label == host_label || STATUS_LABELS.contains(&label) || VALUE_LABELS.contains(&label)
}

impl Inventory {
    /// The inventory a list of series (label sets, `__name__` included) makes, as
    /// `/api/v1/series` returns them.
    pub fn from_series(
        series: &[BTreeMap<String, String>],
        host_label: &str,
        metadata: BTreeMap<String, FamilyMetadata>,
    ) -> Inventory {
        let mut names = BTreeSet::new();
        let mut hosts = BTreeSet::new();
        let mut labels: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
        for one in series {
            let Some(name) = one.get("__name__") else {
                continue;
            };
            names.insert(name.clone());
            let name_labels = labels.entry(name.clone()).or_default();
            for (label, value) in one.iter().filter(|(label, _)| *label != "__name__") {
                let values = name_labels.entry(label.clone()).or_default();
                if value_matters(label, host_label) {
                    values.insert(value.clone());
                }
                if label == host_label {
                    hosts.insert(value.clone());
                }
            }
        }
        let names: Vec<String> = names.into_iter().collect();
        let inspected: BTreeSet<String> = names_to_inspect(&names, &metadata).into_iter().collect();
        Inventory {
            labels: labels
                .into_iter()
                .filter(|(name, _)| inspected.contains(name))
                .map(|(name, by_label)| {
                    let listed = by_label
                        .into_iter()
                        .map(|(label, values)| (label, values.into_iter().collect()))
                        .collect();
                    (name, listed)
                })
                .collect(),
            names,
            hosts: hosts.into_iter().collect(),
            metadata,
            notes: Vec::new(),
        }
    }

    /// The metadata of a metric name's family.
    pub fn metadata_of(&self, name: &str) -> Option<&FamilyMetadata> {
        family_metadata(&self.metadata, name)
    }
}

/// The metadata of a metric name's family: the name itself, without its histogram part, or
/// without `_total` (OpenMetrics names the family without it).
fn family_metadata<'a>(
    metadata: &'a BTreeMap<String, FamilyMetadata>,
    name: &str,
) -> Option<&'a FamilyMetadata> {
    let (_, base) = Part::split(name);
    let without_total = name.strip_suffix("_total");
    [Some(name), Some(base), without_total]
        .into_iter()
        .flatten()
        .find_map(|family| metadata.get(family))
}

/// The names worth asking labels for: those the conventions say fill a signal, the known
/// conventions first, at most [`MAX_INSPECTED_NAMES`].
pub fn names_to_inspect(
    names: &[String],
    metadata: &BTreeMap<String, FamilyMetadata>,
) -> Vec<String> {
    let mut ranked: Vec<(usize, &String)> = names
        .iter()
        .filter_map(|name| {
            let declared = family_metadata(metadata, name);
            let classified = names::classify(&Facts {
                name,
                labels: None,
                metric_type: declared_type(declared),
                help: declared.map_or("", |found| found.help.as_str()),
            });
            (!classified.signals.is_empty()).then_some((classified.rank, name))
        })
        .collect();
    ranked.sort();
    ranked
        .into_iter()
        .take(MAX_INSPECTED_NAMES)
        .map(|(_, name)| name.clone())
        .collect()
}

fn declared_type(declared: Option<&FamilyMetadata>) -> MetricType {
    declared.map_or(MetricType::Unknown, |found| {
        MetricType::from_metadata(&found.metric_type)
    })
}

/// Asks the server what it holds under the selector over the last hour before `now`.
pub fn collect_inventory(
    client: &PrometheusClient,
    params: &DiscoveryParams,
    now: i64,
) -> Result<Inventory, PrometheusError> {
    let start = now - LOOKBACK_SECONDS;
    let app_series = vec![format!("{{{}}}", params.selector)];
    let names = client.label_values("__name__", &app_series, start, now)?;
    let hosts = client.label_values(&params.host_label, &app_series, start, now)?;
    let mut notes = Vec::new();
    let metadata: BTreeMap<String, FamilyMetadata> = match client.metadata(None) {
        Ok(all) => all
            .into_iter()
            .filter_map(|(family, mut declared)| {
                (!declared.is_empty()).then(|| (family, declared.swap_remove(0)))
            })
            .collect(),
        Err(error) => {
            tracing::warn!(prometheus = %params.prometheus, %error, "prometheus metadata is not available");
            notes.push(format!("metric metadata is not available: {error}"));
            BTreeMap::new()
        }
    };
    let mut labels = BTreeMap::new();
    for name in names_to_inspect(&names, &metadata) {
        let name_series = vec![params.select(&name, &[])];
        let mut by_label = BTreeMap::new();
        for label in client.label_names(&name_series, start, now)? {
            if label == "__name__" {
                continue;
            }
            let values = if value_matters(&label, &params.host_label) {
                client.label_values(&label, &name_series, start, now)?
            } else {
                Vec::new()
            };
            by_label.insert(label, values);
        }
        labels.insert(name, by_label);
    }
    Ok(Inventory {
        names,
        hosts,
        labels,
        metadata,
        notes,
    })
}

/// What discovery found on the server and proposes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Discovery {
    #[serde(flatten)]
    pub params: DiscoveryParams,
    /// Values of the host label under the selector.
    pub hosts: Vec<String>,
    /// Metric names under the selector.
    pub metric_names: usize,
    /// One entry per signal found, in the order of the signals.
    pub found: Vec<FoundSignal>,
    /// One entry per signal not found, with what the user must give.
    pub missing: Vec<MissingSignal>,
    /// Remarks on the whole (hosts that differ between metrics, unreadable metadata).
    pub notes: Vec<String>,
}

/// A signal found, with the query proposed for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoundSignal {
    pub signal: Signal,
    pub family: SignalFamily,
    /// The convention the metric follows, or how it was recognized.
    pub convention: String,
    /// The Prometheus metric names the query reads.
    pub metrics: Vec<String>,
    /// As declared by metadata, or guessed from the name.
    pub metric_type: MetricType,
    /// The metadata's help text, or empty.
    pub help: String,
    /// Hosts carrying the metric.
    pub hosts: usize,
    /// Ready to store in the app's pull source.
    pub query: PullQuery,
    /// What a release should declare of the pulled metric.
    pub meta: MetricMeta,
    pub evidence: Vec<String>,
    /// Other metric names that fill the same signal.
    pub alternatives: Vec<String>,
    /// The query run once against the server, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<QueryCheck>,
}

/// The outcome of running a proposed query once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryCheck {
    /// Hosts with a series in the answer.
    pub hosts: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A signal not found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingSignal {
    pub signal: Signal,
    pub family: SignalFamily,
    /// What the user must give, in one or two sentences.
    pub prompt: String,
}

impl Discovery {
    pub fn found_signal(&self, signal: Signal) -> Option<&FoundSignal> {
        self.found.iter().find(|found| found.signal == signal)
    }

    pub fn missing_signal(&self, signal: Signal) -> Option<&MissingSignal> {
        self.missing.iter().find(|missing| missing.signal == signal)
    }

    /// The proposed pull queries, in the order of the signals.
    pub fn proposed_queries(&self) -> Vec<PullQuery> {
        self.found.iter().map(|found| found.query.clone()).collect()
    }
}

/// A metric name that fills a signal, with what is known of it.
#[derive(Debug)]
struct Candidate<'a> {
    name: &'a str,
    labels: &'a BTreeMap<String, Vec<String>>,
    classified: Classified,
    metric_type: MetricType,
    metadata: Option<&'a FamilyMetadata>,
}

impl Candidate<'_> {
    fn hosts(&self, host_label: &str) -> usize {
        self.labels.get(host_label).map_or(0, Vec::len)
    }

    fn values(&self, label: &str) -> &[String] {
        self.labels.get(label).map_or(&[], Vec::as_slice)
    }

    fn is_counter(&self) -> bool {
        self.metric_type == MetricType::Counter
    }

    fn unit(&self) -> String {
        names::unit_of(
            self.name,
            self.metadata.map_or("", |declared| declared.unit.as_str()),
        )
    }

    /// A proposal reading this metric alone, named `base` followed by the metric's unit.
    fn proposal_with_unit(&self, base: &str, query: String, shape_rank: usize) -> Proposal {
        let unit = self.unit();
        proposal(
            &with_unit(base, &unit),
            query,
            &unit,
            &[self.name],
            shape_rank,
        )
    }
}

/// A query for one signal.
#[derive(Debug)]
struct Proposal {
    metric: String,
    query: String,
    unit: String,
    /// The metric names the query reads.
    reads: Vec<String>,
    /// Lower is preferred among proposals of the same convention rank.
    shape_rank: usize,
}

/// Matches the inventory against the conventions and proposes one query per signal.
pub fn discover(inventory: &Inventory, params: &DiscoveryParams) -> Discovery {
    let candidates = candidates(inventory);
    let mut found: Vec<FoundSignal> = Vec::new();
    let mut missing = Vec::new();
    for signal in METRIC_SIGNALS {
        let Some(family) = signal.family() else {
            continue;
        };
        let filling: Vec<&Candidate<'_>> = candidates
            .iter()
            .filter(|candidate| candidate.classified.signals.contains(&signal))
            .collect();
        let request_query = found
            .iter()
            .find(|entry| entry.signal == Signal::RequestRate)
            .map(|entry| entry.query.query.clone());
        let best = filling
            .iter()
            .filter(|candidate| candidate.hosts(&params.host_label) > 0)
            .filter_map(|candidate| {
                let proposal = propose(
                    signal,
                    candidate,
                    inventory,
                    params,
                    request_query.as_deref(),
                )?;
                let key = (
                    candidate.classified.rank,
                    proposal.shape_rank,
                    usize::MAX - candidate.hosts(&params.host_label),
                );
                Some((key, *candidate, proposal))
            })
            .min_by(|first, second| (first.0, first.1.name).cmp(&(second.0, second.1.name)));
        match best {
            Some((_, candidate, proposal)) => {
                found.push(found_signal(
                    signal, family, candidate, proposal, &filling, params,
                ));
            }
            None => missing.push(MissingSignal {
                signal,
                family,
                prompt: missing_prompt(signal, &filling, &candidates, params),
            }),
        }
    }
    let mut notes = inventory.notes.clone();
    notes.extend(overall_notes(inventory, &found, &candidates, params));
    Discovery {
        params: params.clone(),
        hosts: inventory.hosts.clone(),
        metric_names: inventory.names.len(),
        found,
        missing,
        notes,
    }
}

fn candidates(inventory: &Inventory) -> Vec<Candidate<'_>> {
    inventory
        .labels
        .iter()
        .filter_map(|(name, labels)| {
            let label_names: Vec<String> = labels.keys().cloned().collect();
            let metadata = inventory.metadata_of(name);
            let metric_type = type_of(name, &label_names, metadata);
            let classified = names::classify(&Facts {
                name,
                labels: Some(&label_names),
                metric_type,
                help: metadata.map_or("", |declared| declared.help.as_str()),
            });
            (!classified.signals.is_empty()).then_some(Candidate {
                name,
                labels,
                classified,
                metric_type,
                metadata,
            })
        })
        .collect()
}

/// The type of a name: a counter by its part or suffix, else as declared, else by its labels.
fn type_of(name: &str, labels: &[String], declared: Option<&FamilyMetadata>) -> MetricType {
    let (part, _) = Part::split(name);
    if matches!(part, Part::Count | Part::Sum) || name.ends_with("_total") {
        return MetricType::Counter;
    }
    if part == Part::Bucket && labels.iter().any(|label| label == "le") {
        return MetricType::Histogram;
    }
    match declared_type(declared) {
        MetricType::Unknown if labels.iter().any(|label| label == "quantile") => {
            MetricType::Summary
        }
        MetricType::Histogram | MetricType::Unknown => MetricType::Gauge,
        other => other,
    }
}

fn found_signal(
    signal: Signal,
    family: SignalFamily,
    candidate: &Candidate<'_>,
    proposal: Proposal,
    filling: &[&Candidate<'_>],
    params: &DiscoveryParams,
) -> FoundSignal {
    let meta = signal
        .suggested_meta(&proposal.metric, &proposal.unit)
        .unwrap_or_else(|| MetricMeta {
            name: proposal.metric.clone(),
            kind: vigil_core::model::MetricKind::Business,
            unit: proposal.unit.clone(),
            direction: vigil_core::model::Direction::Either,
            critical: false,
            judged: true,
        });
    FoundSignal {
        signal,
        family,
        convention: candidate
            .classified
            .convention
            .unwrap_or("metric name or help text")
            .to_owned(),
        metrics: proposal.reads,
        metric_type: candidate.metric_type,
        help: candidate
            .metadata
            .map(|declared| declared.help.clone())
            .unwrap_or_default(),
        hosts: candidate.hosts(&params.host_label),
        query: PullQuery {
            metric: proposal.metric,
            query: proposal.query,
        },
        meta,
        evidence: candidate.classified.evidence.clone(),
        alternatives: filling
            .iter()
            .filter(|other| other.name != candidate.name)
            .map(|other| other.name.to_owned())
            .collect(),
        check: None,
    }
}

/// `by (host)`: every proposal keeps one series per host.
fn by_host(params: &DiscoveryParams) -> String {
    format!("by ({})", params.host_label)
}

/// `name_unit` or `name` when the unit is empty.
fn with_unit(name: &str, unit: &str) -> String {
    if unit.is_empty() {
        return name.to_owned();
    }
    format!("{name}_{unit}")
}

fn propose(
    signal: Signal,
    candidate: &Candidate<'_>,
    inventory: &Inventory,
    params: &DiscoveryParams,
    request_query: Option<&str>,
) -> Option<Proposal> {
    match signal {
        Signal::Cpu => propose_cpu(candidate, params),
        Signal::Memory => propose_memory(candidate, inventory, params),
        Signal::Load => propose_load(candidate, params),
        Signal::RequestRate => propose_request_rate(candidate, params),
        Signal::Errors => propose_errors(candidate, params, request_query),
        Signal::Latency => propose_latency(candidate, inventory, params),
        Signal::Logs | Signal::Other => None,
    }
}

fn proposal(
    metric: &str,
    query: String,
    unit: &str,
    reads: &[&str],
    shape_rank: usize,
) -> Proposal {
    Proposal {
        metric: metric.to_owned(),
        query,
        unit: unit.to_owned(),
        reads: reads.iter().map(|name| (*name).to_owned()).collect(),
        shape_rank,
    }
}

fn propose_cpu(candidate: &Candidate<'_>, params: &DiscoveryParams) -> Option<Proposal> {
    let name = candidate.name;
    let by = by_host(params);
    if name == "node_cpu_seconds_total" {
        if !candidate.values("mode").iter().any(|mode| mode == "idle") {
            return None;
        }
        let idle = params.rate(name, &["mode=\"idle\"".to_owned()]);
        let query = format!("1 - avg {by} ({idle})");
        return Some(proposal("cpu_busy_ratio", query, "ratio", &[name], 0));
    }
    if candidate.is_counter() {
        let query = format!("sum {by} ({})", params.rate(name, &[]));
        return Some(proposal("cpu_cores_used", query, "cores", &[name], 1));
    }
    let unit = candidate.unit();
    let query = format!("avg {by} ({})", params.select(name, &[]));
    Some(proposal("cpu_usage", query, &unit, &[name], 2))
}

fn propose_memory(
    candidate: &Candidate<'_>,
    inventory: &Inventory,
    params: &DiscoveryParams,
) -> Option<Proposal> {
    const AVAILABLE: &str = "node_memory_MemAvailable_bytes";
    const TOTAL: &str = "node_memory_MemTotal_bytes";
    let name = candidate.name;
    let by = by_host(params);
    if name == AVAILABLE {
        if !inventory.names.iter().any(|other| other == TOTAL) {
            return None;
        }
        let query = format!(
            "1 - sum {by} ({}) / sum {by} ({})",
            params.select(AVAILABLE, &[]),
            params.select(TOTAL, &[])
        );
        return Some(proposal(
            "memory_used_ratio",
            query,
            "ratio",
            &[AVAILABLE, TOTAL],
            0,
        ));
    }
    // Other node exporter memory figures (the total, caches) are not what a process uses.
    if name.starts_with("node_memory_") || candidate.is_counter() {
        return None;
    }
    let heap_only = candidate.values("area").iter().any(|area| area == "heap");
    let extra: Vec<String> = if heap_only {
        vec!["area=\"heap\"".to_owned()]
    } else {
        Vec::new()
    };
    let unit = candidate.unit();
    let selected = params.select(name, &extra);
    if unit == "bytes" {
        let metric = if heap_only {
            "memory_heap_used_bytes"
        } else {
            "memory_used_bytes"
        };
        return Some(proposal(
            metric,
            format!("sum {by} ({selected})"),
            &unit,
            &[name],
            1,
        ));
    }
    Some(proposal(
        "memory_usage",
        format!("avg {by} ({selected})"),
        &unit,
        &[name],
        2,
    ))
}

fn propose_load(candidate: &Candidate<'_>, params: &DiscoveryParams) -> Option<Proposal> {
    if candidate.is_counter() {
        return None;
    }
    let name = candidate.name;
    let metric = if name == "node_load1" {
        "load1"
    } else {
        "load"
    };
    let query = format!("max {} ({})", by_host(params), params.select(name, &[]));
    Some(proposal(metric, query, "", &[name], 0))
}

/// The matcher that leaves out a status label's `total` value (nginx VTS counts every
/// response once more under `code="total"`).
fn without_total(candidate: &Candidate<'_>, status: Option<&str>) -> Vec<String> {
    match status {
        Some(label) if candidate.values(label).iter().any(|value| value == "total") => {
            vec![format!("{label}!=\"total\"")]
        }
        _ => Vec::new(),
    }
}

fn status_label_of(candidate: &Candidate<'_>) -> Option<&'static str> {
    STATUS_LABELS
        .into_iter()
        .find(|label| candidate.labels.contains_key(*label))
}

fn propose_request_rate(candidate: &Candidate<'_>, params: &DiscoveryParams) -> Option<Proposal> {
    let name = candidate.name;
    let by = by_host(params);
    if candidate.is_counter() {
        let extra = without_total(candidate, status_label_of(candidate));
        let query = format!("sum {by} ({})", params.rate(name, &extra));
        return Some(proposal("requests_per_second", query, "", &[name], 0));
    }
    if candidate.classified.part != Part::Whole || candidate.metric_type != MetricType::Gauge {
        return None;
    }
    let query = format!("sum {by} ({})", params.select(name, &[]));
    Some(proposal("requests_per_second", query, "", &[name], 1))
}

/// The matcher of server errors for a status label, from the values it takes.
fn server_error_matcher(candidate: &Candidate<'_>, label: &str) -> String {
    if label == "grpc_code" {
        return format!("grpc_code=~\"{GRPC_SERVER_ERRORS}\"");
    }
    if label == "envoy_response_code_class" {
        return format!("{label}=\"5\"");
    }
    let three_characters = candidate
        .values(label)
        .iter()
        .filter(|value| value.as_str() != "total")
        .all(|value| value.chars().count() == 3);
    if three_characters {
        return format!("{label}=~\"5..\"");
    }
    format!("{label}=~\"5.*\"")
}

/// `(errors or requests * 0) / requests`: hosts without a single error get 0, not nothing.
fn error_ratio(errors: &str, requests: &str) -> String {
    format!("({errors} or {requests} * 0) / {requests}")
}

fn propose_errors(
    candidate: &Candidate<'_>,
    params: &DiscoveryParams,
    request_query: Option<&str>,
) -> Option<Proposal> {
    let name = candidate.name;
    let by = by_host(params);
    if let Some(label) = status_label_of(candidate).filter(|_| candidate.is_counter()) {
        let all = without_total(candidate, Some(label));
        let errors = format!(
            "sum {by} ({})",
            params.rate(name, &[server_error_matcher(candidate, label)])
        );
        let requests = format!("sum {by} ({})", params.rate(name, &all));
        return Some(proposal(
            "error_ratio",
            error_ratio(&errors, &requests),
            "ratio",
            &[name],
            0,
        ));
    }
    if candidate.is_counter() {
        let errors = format!("sum {by} ({})", params.rate(name, &[]));
        return Some(match request_query {
            Some(requests) => proposal(
                "error_ratio",
                error_ratio(&errors, &format!("({requests})")),
                "ratio",
                &[name],
                1,
            ),
            None => proposal("errors_per_second", errors, "", &[name], 1),
        });
    }
    if candidate.classified.part != Part::Whole {
        return None;
    }
    let query = format!("avg {by} ({})", params.select(name, &[]));
    Some(candidate.proposal_with_unit("error_rate", query, 2))
}

fn propose_latency(
    candidate: &Candidate<'_>,
    inventory: &Inventory,
    params: &DiscoveryParams,
) -> Option<Proposal> {
    let name = candidate.name;
    let by = by_host(params);
    match candidate.classified.part {
        Part::Bucket => {
            let query = format!(
                "histogram_quantile(0.99, sum by ({}, le) ({}))",
                params.host_label,
                params.rate(name, &[])
            );
            Some(candidate.proposal_with_unit("latency_p99", query, 0))
        }
        Part::Sum => {
            let (_, base) = Part::split(name);
            let count = format!("{base}_count");
            if !inventory.names.contains(&count) {
                return None;
            }
            let query = format!(
                "sum {by} ({}) / sum {by} ({})",
                params.rate(name, &[]),
                params.rate(&count, &[])
            );
            let unit = candidate.unit();
            Some(proposal(
                &with_unit("latency_mean", &unit),
                query,
                &unit,
                &[name, &count],
                2,
            ))
        }
        Part::Max => {
            let query = format!("max {by} ({})", params.select(name, &[]));
            Some(candidate.proposal_with_unit("latency_max", query, 3))
        }
        Part::Count => None,
        Part::Whole => {
            let quantiles = candidate.values("quantile");
            if quantiles.is_empty() {
                if candidate.is_counter() {
                    return None;
                }
                let query = format!("max {by} ({})", params.select(name, &[]));
                return Some(candidate.proposal_with_unit("latency", query, 4));
            }
            let highest = quantiles
                .iter()
                .filter_map(|text| Some((text.parse::<f64>().ok()?, text)))
                .filter(|(value, _)| *value < 1.0)
                .max_by(|first, second| first.0.total_cmp(&second.0))?;
            let percentile = (highest.0 * 1000.0).round() / 10.0;
            let query = format!(
                "max {by} ({})",
                params.select(name, &[format!("quantile=\"{}\"", highest.1)])
            );
            let base = format!("latency_p{percentile}").replace('.', "_");
            Some(candidate.proposal_with_unit(&base, query, 1))
        }
    }
}

/// Example names of the usual sources of a signal, for a prompt.
fn usual_sources(signal: Signal) -> &'static str {
    match signal {
        Signal::Cpu => "node exporter's node_cpu_seconds_total or process_cpu_seconds_total",
        Signal::Memory => {
            "node exporter's node_memory_MemAvailable_bytes and node_memory_MemTotal_bytes, or \
             process_resident_memory_bytes"
        }
        Signal::Load => "node exporter's node_load1",
        Signal::RequestRate => {
            "http_requests_total, an HTTP server histogram (http_request_duration_seconds, \
             http_server_requests_seconds, http_server_request_duration_seconds) or \
             grpc_server_handled_total"
        }
        Signal::Latency => {
            "an HTTP server histogram (http_request_duration_seconds_bucket, \
             http_server_requests_seconds_bucket, http_server_request_duration_seconds_bucket) \
             or grpc_server_handling_seconds_bucket"
        }
        Signal::Errors => {
            "a request counter with a status label (code, status, status_code, \
             http_response_status_code) or grpc_server_handled_total"
        }
        Signal::Logs | Signal::Other => "",
    }
}

/// The pull metric name a user's query for a missing signal could take.
fn example_metric(signal: Signal) -> &'static str {
    match signal {
        Signal::Cpu => "cpu_busy_ratio",
        Signal::Memory => "memory_used_ratio",
        Signal::Load => "load1",
        Signal::RequestRate => "requests_per_second",
        Signal::Latency => "latency_p99_seconds",
        Signal::Errors => "error_ratio",
        Signal::Logs | Signal::Other => "",
    }
}

fn missing_prompt(
    signal: Signal,
    filling: &[&Candidate<'_>],
    candidates: &[Candidate<'_>],
    params: &DiscoveryParams,
) -> String {
    let what = signal.describe();
    let selector = &params.selector;
    let host_label = &params.host_label;
    let mut prompt = format!(
        "no {what} metric found for {selector}; give a PromQL query returning one series per \
         host (label {host_label}), named for example {}",
        example_metric(signal)
    );
    let without_host: Vec<&Candidate<'_>> = filling
        .iter()
        .copied()
        .filter(|candidate| candidate.hosts(host_label) == 0)
        .collect();
    if let Some(first) = without_host.first() {
        let labels: Vec<&str> = first.labels.keys().map(String::as_str).collect();
        prompt.push_str(&format!(
            ". {} has no label {host_label} (its labels: {}): give host_label",
            first.name,
            labels.join(", ")
        ));
        return prompt;
    }
    if signal == Signal::Errors {
        let counted = candidates.iter().find(|candidate| {
            candidate.classified.signals.contains(&Signal::RequestRate) && candidate.is_counter()
        });
        if let Some(counter) = counted {
            prompt.push_str(&format!(
                ". {} counts requests without a status label, so errors cannot be told apart",
                counter.name
            ));
            return prompt;
        }
    }
    prompt.push_str(&format!(". Usual sources: {}", usual_sources(signal)));
    if signal.family() == Some(SignalFamily::System) {
        prompt.push_str(
            "; node exporter often runs as a job of its own: its series may need another \
             selector",
        );
    }
    prompt
}

fn overall_notes(
    inventory: &Inventory,
    found: &[FoundSignal],
    candidates: &[Candidate<'_>],
    params: &DiscoveryParams,
) -> Vec<String> {
    let selector = &params.selector;
    if inventory.names.is_empty() {
        return vec![format!(
            "no series match {{{selector}}} in the last hour: check the selector"
        )];
    }
    let mut notes = Vec::new();
    if inventory.hosts.is_empty() {
        notes.push(format!(
            "no series under {{{selector}}} carry the label {}: give the label that names \
             the host as host_label",
            params.host_label
        ));
    }
    let host_sets: BTreeMap<&str, BTreeSet<&String>> = found
        .iter()
        .filter_map(|entry| {
            let name = entry.metrics.first()?;
            let candidate = candidates.iter().find(|candidate| candidate.name == name)?;
            Some((
                name.as_str(),
                candidate.values(&params.host_label).iter().collect(),
            ))
        })
        .collect();
    let distinct: BTreeSet<&BTreeSet<&String>> = host_sets.values().collect();
    if distinct.len() > 1 {
        let listed: Vec<String> = host_sets
            .iter()
            .map(|(name, hosts)| {
                let example = hosts.iter().next().map_or("", |host| host.as_str());
                format!("{name}: {} (e.g. {example})", hosts.len())
            })
            .collect();
        notes.push(format!(
            "the metrics report different {} values ({}); series of one host must carry the \
             same host name to be compared, e.g. a label set by relabeling",
            params.host_label,
            listed.join("; ")
        ));
    }
    notes
}

/// Runs each proposed query once over the last few steps before `now` and records how many
/// hosts answer, or why it failed.
pub fn check_proposals(client: &PrometheusClient, discovery: &mut Discovery, now: i64) {
    for found in &mut discovery.found {
        let answer = try_query(client, &discovery.params, &found.query, now);
        found.check = Some(match answer {
            Ok(hosts) => QueryCheck { hosts, error: None },
            Err(error) => QueryCheck {
                hosts: 0,
                error: Some(error.to_string()),
            },
        });
    }
}

/// Runs one pull query once over the last few steps before `now`, as the puller will: the
/// hosts that answer, or why it failed (Prometheus answers a query it cannot parse with 400).
pub fn try_query(
    client: &PrometheusClient,
    params: &DiscoveryParams,
    query: &PullQuery,
    now: i64,
) -> Result<usize, PrometheusError> {
    let step = params.step_seconds.max(1);
    let answer = client.query_range(&RangeQuery {
        query: query.query.clone(),
        host_label: params.host_label.clone(),
        metric: query.metric.clone(),
        app: String::new(),
        counter: false,
        start: now - 4 * step,
        end: now,
        step_seconds: u32::try_from(step).unwrap_or(30),
    })?;
    Ok(answer.chunk.series.len())
}

/// Timeouts and limits of discovery's calls: short, since a person waits for the answer.
pub fn discovery_options() -> PrometheusOptions {
    PrometheusOptions {
        connect_timeout: std::time::Duration::from_secs(5),
        request_timeout: std::time::Duration::from_secs(20),
        max_response_bytes: 32 << 20,
        ..PrometheusOptions::default()
    }
}

/// The whole discovery against the server: inventory, matching, and a check of each
/// proposal.
pub fn run(params: &DiscoveryParams, now: i64) -> Result<Discovery, PrometheusError> {
    let client = PrometheusClient::new(&params.prometheus, discovery_options())?;
    let inventory = collect_inventory(&client, params, now)?;
    let mut discovery = discover(&inventory, params);
    check_proposals(&client, &mut discovery, now);
    Ok(discovery)
}

#[cfg(test)]
mod tests;
