//! Proposals: pure rules over an [`Inventory`] that pick, per signal, the metric to read and
//! the pull query that yields one series per host; what they cannot fill becomes a prompt.

use vigil_core::model::MetricMeta;
use vigil_guard::apps::PullQuery;

use super::candidates::{candidates, Candidate};
use super::discovery::{Discovery, FoundSignal, MissingSignal};
use super::inventory::Inventory;
use super::params::DiscoveryParams;
use super::prompts::{missing_prompt, overall_notes};
use crate::names::{Part, STATUS_LABELS};
use crate::signals::{MetricType, Signal, SignalFamily, METRIC_SIGNALS};

/// gRPC codes that are the server's fault.
const GRPC_SERVER_ERRORS: &str =
    "Unknown|DeadlineExceeded|Unimplemented|Internal|Unavailable|DataLoss";

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

impl Candidate<'_> {
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
