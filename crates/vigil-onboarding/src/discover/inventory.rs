//! The inventory: what an app's Prometheus holds under its selector (metric names, hosts,
//! metadata, the labels of the names worth a look). This is the only part of discovery that
//! calls Prometheus: it collects the inventory and runs the proposed queries once.

use std::collections::{BTreeMap, BTreeSet};

use vigil_guard::apps::PullQuery;
use vigil_ingest::prometheus::{
    FamilyMetadata, PrometheusClient, PrometheusError, PrometheusOptions, RangeQuery,
};

use super::discovery::{Discovery, QueryCheck};
use super::params::DiscoveryParams;
use crate::names::{self, Facts, Part, STATUS_LABELS};
use crate::signals::MetricType;

/// How far back series count as present, in seconds.
pub const LOOKBACK_SECONDS: i64 = 3600;

/// Most metric names whose labels are asked for.
pub const MAX_INSPECTED_NAMES: usize = 64;

/// Labels whose values matter to the proposals (besides the host label).
const VALUE_LABELS: [&str; 3] = ["mode", "quantile", "area"];

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

pub(super) fn declared_type(declared: Option<&FamilyMetadata>) -> MetricType {
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
