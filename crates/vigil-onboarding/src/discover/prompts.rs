//! Prompts: the words discovery answers with when a signal is missing (what to give, and where
//! such metrics usually come from) and its remarks on the whole inventory.

use std::collections::{BTreeMap, BTreeSet};

use super::candidates::Candidate;
use super::discovery::FoundSignal;
use super::inventory::Inventory;
use super::params::DiscoveryParams;
use crate::signals::{Signal, SignalFamily};

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

pub(super) fn missing_prompt(
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

pub(super) fn overall_notes(
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
