//! An alert received from Alertmanager or another alerting system, as Vigil stores it: one
//! occurrence of an alert (its label set from the time it started firing), updated when it
//! resolves.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One occurrence of an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// The identity of the alert's label set: the sender's fingerprint (Alertmanager's), or
    /// [`label_fingerprint`] of its name and labels. With `starts_at` it keys the occurrence.
    pub fingerprint: String,
    /// Unix seconds at which it started firing.
    pub starts_at: i64,
    /// Unix seconds at which it resolved; `None` while it fires.
    pub ends_at: Option<i64>,
    /// The alert's name (Alertmanager's `alertname` label).
    pub name: String,
    /// The app it belongs to, by [`app_of`] (empty when its labels name none).
    pub app: String,
    /// Its `severity` as sent (`critical`, `warning`...), empty when none.
    pub severity: String,
    /// Every label as sent.
    pub labels: BTreeMap<String, String>,
    /// A line for people (the `summary` or `description` annotation), possibly empty.
    pub summary: String,
    /// Who sent it: `alertmanager` or `api`.
    pub source: String,
    /// Unix seconds at which Vigil last received it.
    pub received_at: i64,
}

impl Alert {
    /// Whether it was firing at `at` (Unix seconds): started at or before, not resolved before.
    pub fn firing_at(&self, at: i64) -> bool {
        self.starts_at <= at && self.ends_at.is_none_or(|end| end >= at)
    }
}

/// The labels that name an alert's app, in order: the first present and not empty wins.
pub const APP_LABELS: [&str; 2] = ["app", "job"];

/// The app an alert's labels name: its `app` label, else its `job` label (Prometheus's scrape
/// job, which an app's default selector `job="<app>"` names after the app), else empty.
pub fn app_of(labels: &BTreeMap<String, String>) -> String {
    APP_LABELS
        .iter()
        .filter_map(|label| labels.get(*label))
        .find(|value| !value.is_empty())
        .cloned()
        .unwrap_or_default()
}

/// A stable fingerprint of an alert's name and labels (FNV-1a, 64 bits, in hex), for senders
/// that give none: the same name and labels always give the same fingerprint.
pub fn label_fingerprint(name: &str, labels: &BTreeMap<String, String>) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    let mut hash = OFFSET;
    let mut add = |bytes: &[u8]| {
        for byte in bytes.iter().chain(&[0xff]) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    add(name.as_bytes());
    for (label, value) in labels {
        add(label.as_bytes());
        add(value.as_bytes());
    }
    crate::text::hex(&hash.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(label, value)| ((*label).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn the_app_is_the_app_label_else_the_job_label() {
        assert_eq!(app_of(&labels(&[("app", "shop"), ("job", "node")])), "shop");
        assert_eq!(app_of(&labels(&[("app", ""), ("job", "node")])), "node");
        assert_eq!(app_of(&labels(&[("instance", "r1:9100")])), "");
    }

    #[test]
    fn fingerprints_depend_on_name_and_labels_only() {
        let first = label_fingerprint("Down", &labels(&[("host", "r1"), ("app", "shop")]));
        let same = label_fingerprint("Down", &labels(&[("app", "shop"), ("host", "r1")]));
        assert_eq!(first, same);
        assert_eq!(first.len(), 16);
        assert_ne!(
            first,
            label_fingerprint("Down", &labels(&[("host", "r2"), ("app", "shop")]))
        );
        assert_ne!(
            first,
            label_fingerprint("Up", &labels(&[("host", "r1"), ("app", "shop")]))
        );
        // A label boundary cannot be moved without changing the fingerprint.
        assert_ne!(
            label_fingerprint("a", &labels(&[("bc", "d")])),
            label_fingerprint("a", &labels(&[("b", "cd")]))
        );
    }

    #[test]
    fn an_alert_fires_from_its_start_until_it_resolves() {
        let mut alert = Alert {
            fingerprint: "f".to_owned(),
            starts_at: 100,
            ends_at: None,
            name: "Down".to_owned(),
            app: "shop".to_owned(),
            severity: "critical".to_owned(),
            labels: BTreeMap::new(),
            summary: String::new(),
            source: "api".to_owned(),
            received_at: 100,
        };
        assert!(!alert.firing_at(99));
        assert!(alert.firing_at(100));
        assert!(alert.firing_at(10_000));
        alert.ends_at = Some(200);
        assert!(alert.firing_at(200));
        assert!(!alert.firing_at(201));
    }
}
