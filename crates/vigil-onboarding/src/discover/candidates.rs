//! Candidates: the inventory's inspected metric names that fill a signal, each with its labels,
//! type and metadata, which the proposals and the prompts read.

use std::collections::BTreeMap;

use vigil_ingest::prometheus::FamilyMetadata;

use super::inventory::{declared_type, Inventory};
use crate::names::{self, Classified, Facts, Part};
use crate::signals::MetricType;

/// A metric name that fills a signal, with what is known of it.
#[derive(Debug)]
pub(super) struct Candidate<'a> {
    pub(super) name: &'a str,
    pub(super) labels: &'a BTreeMap<String, Vec<String>>,
    pub(super) classified: Classified,
    pub(super) metric_type: MetricType,
    pub(super) metadata: Option<&'a FamilyMetadata>,
}

impl Candidate<'_> {
    pub(super) fn hosts(&self, host_label: &str) -> usize {
        self.labels.get(host_label).map_or(0, Vec::len)
    }

    pub(super) fn values(&self, label: &str) -> &[String] {
        self.labels.get(label).map_or(&[], Vec::as_slice)
    }

    pub(super) fn is_counter(&self) -> bool {
        self.metric_type == MetricType::Counter
    }

    pub(super) fn unit(&self) -> String {
        names::unit_of(
            self.name,
            self.metadata.map_or("", |declared| declared.unit.as_str()),
        )
    }
}

/// The inspected names of the inventory that fill a signal, with what is known of them.
pub(super) fn candidates(inventory: &Inventory) -> Vec<Candidate<'_>> {
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
