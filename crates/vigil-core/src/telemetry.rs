//! Vigil's own metrics, served by `vigil serve` at `/metrics` in Prometheus' text format
//! (version 0.0.4), and the internal events that move them.
//!
//! Every metric is a static [`Family`] of this module, listed in [`FAMILIES`]: counters, gauges
//! and histograms with fixed buckets, kept in memory for the life of the process. Each
//! internal event worth watching is a type of [`event`] whose `emit` writes its one log line
//! (the logging convention of ARCHITECTURE.md) and moves its metrics, so a log line and its
//! metric never drift apart.
//!
//! Label values come from bounded sets only (a route's template, an HTTP method, a status, a
//! configured channel, a store method's name...); a family still keeps at most
//! [`MAX_SERIES`] label sets, and a new one past that is left out (and counted in
//! `vigil_telemetry_series_dropped_total`), so the output stays bounded whatever happens.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// At most this many label sets per family.
pub const MAX_SERIES: usize = 256;

/// Buckets of the durations of store calls, in seconds.
pub const STORE_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Buckets of the durations of guard passes, in seconds.
pub const PASS_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// What a family's values mean to Prometheus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// The value of one label set.
#[derive(Debug, Clone, PartialEq)]
struct Series {
    /// A counter's or a gauge's value; a histogram's sum.
    value: f64,
    /// A histogram's observations per bucket (not cumulative), the last one past every bound.
    buckets: Vec<u64>,
    /// A histogram's number of observations.
    count: u64,
}

/// One metric and its series, one per label set.
#[derive(Debug)]
pub struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    /// A histogram's upper bounds, increasing.
    bounds: &'static [f64],
    series: Mutex<BTreeMap<Vec<String>, Series>>,
}

impl Family {
    pub const fn counter(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Family {
        Family::new(name, help, Kind::Counter, labels, &[])
    }

    pub const fn gauge(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Family {
        Family::new(name, help, Kind::Gauge, labels, &[])
    }

    pub const fn histogram(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        bounds: &'static [f64],
    ) -> Family {
        Family::new(name, help, Kind::Histogram, labels, bounds)
    }

    const fn new(
        name: &'static str,
        help: &'static str,
        kind: Kind,
        labels: &'static [&'static str],
        bounds: &'static [f64],
    ) -> Family {
        Family {
            name,
            help,
            kind,
            labels,
            bounds,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Adds `amount` to a counter's series (0 makes the series appear at 0).
    pub fn add(&self, values: &[&str], amount: u64) {
        self.update(values, |series| series.value += amount as f64);
    }

    /// Sets a gauge's series.
    pub fn set(&self, values: &[&str], value: f64) {
        self.update(values, |series| series.value = value);
    }

    /// Records one observation in a histogram's series.
    pub fn observe(&self, values: &[&str], value: f64) {
        let bucket = self
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(self.bounds.len());
        self.update(values, |series| {
            series.value += value;
            series.count += 1;
            if let Some(count) = series.buckets.get_mut(bucket) {
                *count += 1;
            }
        });
    }

    /// A counter's or a gauge's value for a label set (tests, and the readers of a gauge).
    pub fn value(&self, values: &[&str]) -> Option<f64> {
        let key: Vec<String> = values.iter().map(|value| (*value).to_owned()).collect();
        self.lock().get(&key).map(|series| series.value)
    }

    /// A histogram's number of observations for a label set.
    pub fn count(&self, values: &[&str]) -> Option<u64> {
        let key: Vec<String> = values.iter().map(|value| (*value).to_owned()).collect();
        self.lock().get(&key).map(|series| series.count)
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<Vec<String>, Series>> {
        // A panic while holding the lock leaves at worst one value half-updated.
        self.series.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, values: &[&str], change: impl FnOnce(&mut Series)) {
        if values.len() != self.labels.len() {
            debug_assert!(false, "{} takes labels {:?}", self.name, self.labels);
            return;
        }
        let key: Vec<String> = values.iter().map(|value| (*value).to_owned()).collect();
        let mut series = self.lock();
        if let Some(existing) = series.get_mut(&key) {
            change(existing);
            return;
        }
        if series.len() >= MAX_SERIES {
            drop(series);
            SERIES_DROPPED.add(&[self.name], 1);
            return;
        }
        let mut fresh = Series {
            value: 0.0,
            buckets: vec![0; self.bounds.len() + 1],
            count: 0,
        };
        change(&mut fresh);
        series.insert(key, fresh);
    }

    /// Writes the family in the text format: its help, its type and every series, by label
    /// values; a family without labels shows 0 before its first change.
    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind.as_str());
        let mut series = self.lock().clone();
        if self.labels.is_empty() && series.is_empty() {
            series.insert(
                Vec::new(),
                Series {
                    value: 0.0,
                    buckets: vec![0; self.bounds.len() + 1],
                    count: 0,
                },
            );
        }
        for (values, one) in &series {
            let labels = label_text(self.labels, values);
            if self.kind != Kind::Histogram {
                let _ = writeln!(
                    out,
                    "{}{} {}",
                    self.name,
                    braced(&labels),
                    number(one.value)
                );
                continue;
            }
            let mut cumulative = 0;
            for (bound, count) in self.bounds.iter().zip(&one.buckets) {
                cumulative += count;
                let le = format!("le=\"{}\"", number(*bound));
                let _ = writeln!(
                    out,
                    "{}_bucket{} {cumulative}",
                    self.name,
                    braced(&joined(&labels, &le))
                );
            }
            let _ = writeln!(
                out,
                "{}_bucket{} {}",
                self.name,
                braced(&joined(&labels, "le=\"+Inf\"")),
                one.count
            );
            let _ = writeln!(
                out,
                "{}_sum{} {}",
                self.name,
                braced(&labels),
                number(one.value)
            );
            let _ = writeln!(out, "{}_count{} {}", self.name, braced(&labels), one.count);
        }
    }
}

/// `name="value",...` with each value escaped as the text format asks.
fn label_text(names: &[&str], values: &[String]) -> String {
    names
        .iter()
        .zip(values)
        .map(|(name, value)| {
            let escaped = value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{name}=\"{escaped}\"")
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn joined(labels: &str, more: &str) -> String {
    if labels.is_empty() {
        more.to_owned()
    } else {
        format!("{labels},{more}")
    }
}

fn braced(labels: &str) -> String {
    if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    }
}

/// A value as the text format writes it (`+Inf`, `-Inf`, `NaN` included).
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value == f64::INFINITY {
        "+Inf".to_owned()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        format!("{value}")
    }
}

// ---- the metrics

pub static REPLICA_INFO: Family = Family::gauge(
    "vigil_replica_info",
    "This vigil serve replica, by its id; always 1.",
    &["replica"],
);
pub static INGESTED_SAMPLES: Family = Family::counter(
    "vigil_ingested_samples_total",
    "Samples (kind metrics) and log template counts (kind logs) accepted and stored, resent duplicates left out.",
    &["kind"],
);
pub static HTTP_REQUESTS: Family = Family::counter(
    "vigil_http_requests_total",
    "HTTP requests answered, by route template (unmatched for none), method and status.",
    &["route", "method", "status"],
);
pub static GUARD_PASS_SECONDS: Family = Family::histogram(
    "vigil_guard_pass_seconds",
    "Time of one guard pass over the releases this replica guards.",
    &[],
    PASS_BUCKETS,
);
pub static GUARD_JUDGEMENTS: Family = Family::counter(
    "vigil_guard_judgements_total",
    "Release steps judged by the guard.",
    &[],
);
pub static RELEASES_GUARDED: Family = Family::gauge(
    "vigil_releases_guarded",
    "Observing releases this replica guards.",
    &[],
);
pub static LEASES_HELD: Family = Family::gauge(
    "vigil_leases_held",
    "Release leases this replica holds.",
    &[],
);
pub static NOTIFICATIONS_SENT: Family = Family::counter(
    "vigil_notifications_sent_total",
    "Notifications sent, by channel.",
    &["channel"],
);
pub static NOTIFICATIONS_FAILED: Family = Family::counter(
    "vigil_notifications_failed_total",
    "Notification attempts that failed (retried later or given up), by channel.",
    &["channel"],
);
pub static STORE_SECONDS: Family = Family::histogram(
    "vigil_store_seconds",
    "Time of store calls, by store method.",
    &["operation"],
    STORE_BUCKETS,
);
pub static SERIES_DROPPED: Family = Family::counter(
    "vigil_telemetry_series_dropped_total",
    "Changes to a new label set left out because its metric already had the most label sets it keeps.",
    &["metric"],
);

/// Every family, in the order `/metrics` shows them.
pub static FAMILIES: &[&Family] = &[
    &REPLICA_INFO,
    &INGESTED_SAMPLES,
    &HTTP_REQUESTS,
    &GUARD_PASS_SECONDS,
    &GUARD_JUDGEMENTS,
    &RELEASES_GUARDED,
    &LEASES_HELD,
    &NOTIFICATIONS_SENT,
    &NOTIFICATIONS_FAILED,
    &STORE_SECONDS,
    &SERIES_DROPPED,
];

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every family in Prometheus' text format, version 0.0.4.
pub fn render() -> String {
    let mut out = String::new();
    for family in FAMILIES {
        family.render(&mut out);
    }
    out
}

/// Sets what this replica guards, after each guard pass: the observing releases it judges and
/// the release leases it holds.
pub fn guarded_share(releases_guarded: usize, leases_held: usize) {
    RELEASES_GUARDED.set(&[], releases_guarded as f64);
    LEASES_HELD.set(&[], leases_held as f64);
}

/// The internal events that are both a log line and a metric: each `emit` makes its one
/// `tracing` call and moves its metrics.
pub mod event {
    use super::*;

    /// `vigil serve` started as a replica with this id.
    #[derive(Debug, Clone, Copy)]
    pub struct ReplicaStarted<'a> {
        pub replica: &'a str,
        pub lease_seconds: i64,
    }

    impl ReplicaStarted<'_> {
        pub fn emit(self) {
            tracing::info!(
                replica = self.replica,
                lease_seconds = self.lease_seconds,
                "replica started"
            );
            REPLICA_INFO.set(&[self.replica], 1.0);
            // Both kinds show from the start, at 0.
            INGESTED_SAMPLES.add(&["metrics"], 0);
            INGESTED_SAMPLES.add(&["logs"], 0);
        }
    }

    /// Ingested data of `kind` (`metrics` or `logs`) was stored and indexed: `items` samples or
    /// log template counts.
    #[derive(Debug, Clone, Copy)]
    pub struct DataAccepted {
        pub kind: &'static str,
        pub items: usize,
    }

    impl DataAccepted {
        pub fn emit(self) {
            tracing::debug!(kind = self.kind, items = self.items, "data accepted");
            INGESTED_SAMPLES.add(&[self.kind], self.items as u64);
        }
    }

    /// An HTTP request was answered. `route` is the matched route's template (`unmatched`
    /// without one), `method` one of the usual methods (`other` for any other).
    #[derive(Debug, Clone, Copy)]
    pub struct RequestAnswered<'a> {
        pub route: &'a str,
        pub method: &'a str,
        pub status: u16,
        pub elapsed_ms: u128,
    }

    impl RequestAnswered<'_> {
        pub fn emit(self) {
            tracing::debug!(
                route = self.route,
                method = self.method,
                status = self.status,
                elapsed_ms = self.elapsed_ms as u64,
                "request answered"
            );
            let status = self.status.to_string();
            HTTP_REQUESTS.add(&[self.route, self.method, &status], 1);
        }
    }

    /// A guard pass ended, having judged `judged` release steps.
    #[derive(Debug, Clone, Copy)]
    pub struct GuardPassEnded {
        pub seconds: f64,
        pub judged: usize,
    }

    impl GuardPassEnded {
        pub fn emit(self) {
            tracing::debug!(
                elapsed_ms = (self.seconds * 1000.0) as u64,
                judged = self.judged,
                "guard pass ended"
            );
            GUARD_PASS_SECONDS.observe(&[], self.seconds);
            GUARD_JUDGEMENTS.add(&[], self.judged as u64);
        }
    }

    /// A notification was sent on `channel`.
    #[derive(Debug, Clone, Copy)]
    pub struct NotificationSent<'a> {
        pub release: &'a str,
        pub channel: &'a str,
        pub notification: i64,
        pub attempt: i64,
    }

    impl NotificationSent<'_> {
        pub fn emit(self) {
            tracing::info!(
                release = self.release,
                channel = self.channel,
                notification = self.notification,
                attempt = self.attempt,
                outcome = "sent",
                "notification sent"
            );
            NOTIFICATIONS_SENT.add(&[self.channel], 1);
        }
    }

    /// An attempt to send a notification on `channel` failed: `outcome` is `retry` (again at
    /// `retry_at`) or `dead`.
    #[derive(Debug, Clone, Copy)]
    pub struct NotificationFailed<'a> {
        pub release: &'a str,
        pub channel: &'a str,
        pub notification: i64,
        pub attempt: i64,
        pub outcome: &'a str,
        pub retry_at: Option<i64>,
        pub error: &'a str,
    }

    impl NotificationFailed<'_> {
        pub fn emit(self) {
            tracing::warn!(
                release = self.release,
                channel = self.channel,
                notification = self.notification,
                attempt = self.attempt,
                outcome = self.outcome,
                retry_at = self.retry_at,
                error = %self.error,
                "notification failed"
            );
            NOTIFICATIONS_FAILED.add(&[self.channel], 1);
        }
    }

    /// A store call (`operation`, the store method's name) took `seconds`.
    #[derive(Debug, Clone, Copy)]
    pub struct StoreCalled {
        pub operation: &'static str,
        pub seconds: f64,
    }

    impl StoreCalled {
        pub fn emit(self) {
            tracing::trace!(
                operation = self.operation,
                elapsed_ms = self.seconds * 1000.0,
                "store called"
            );
            STORE_SECONDS.observe(&[self.operation], self.seconds);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_written_in_the_text_format() {
        static REQUESTS: Family =
            Family::counter("test_requests_total", "Requests.", &["route", "status"]);
        static WAIT: Family = Family::histogram("test_wait_seconds", "Wait.", &[], &[0.1, 1.0]);
        static EMPTY: Family = Family::gauge("test_empty", "Nothing yet.", &[]);
        REQUESTS.add(&["/a/{id}", "200"], 2);
        REQUESTS.add(&["/a/{id}", "200"], 1);
        REQUESTS.add(&["say \"hi\"\n\\", "404"], 1);
        WAIT.observe(&[], 0.05);
        WAIT.observe(&[], 0.5);
        WAIT.observe(&[], 7.0);
        let mut out = String::new();
        for family in [&REQUESTS, &WAIT, &EMPTY] {
            family.render(&mut out);
        }
        assert_eq!(
            out,
            "# HELP test_requests_total Requests.\n\
             # TYPE test_requests_total counter\n\
             test_requests_total{route=\"/a/{id}\",status=\"200\"} 3\n\
             test_requests_total{route=\"say \\\"hi\\\"\\n\\\\\",status=\"404\"} 1\n\
             # HELP test_wait_seconds Wait.\n\
             # TYPE test_wait_seconds histogram\n\
             test_wait_seconds_bucket{le=\"0.1\"} 1\n\
             test_wait_seconds_bucket{le=\"1\"} 2\n\
             test_wait_seconds_bucket{le=\"+Inf\"} 3\n\
             test_wait_seconds_sum 7.55\n\
             test_wait_seconds_count 3\n\
             # HELP test_empty Nothing yet.\n\
             # TYPE test_empty gauge\n\
             test_empty 0\n"
        );
    }

    #[test]
    fn a_family_keeps_a_bounded_number_of_label_sets() {
        static MANY: Family = Family::counter("test_many_total", "Many.", &["key"]);
        for index in 0..MAX_SERIES + 10 {
            MANY.add(&[&index.to_string()], 1);
        }
        MANY.add(&["0"], 1);
        assert_eq!(MANY.value(&["0"]), Some(2.0));
        assert_eq!(MANY.value(&[&MAX_SERIES.to_string()]), None);
        assert_eq!(SERIES_DROPPED.value(&["test_many_total"]), Some(10.0));
        let mut out = String::new();
        MANY.render(&mut out);
        assert_eq!(out.lines().count(), MAX_SERIES + 2);
    }

    #[test]
    fn every_family_has_a_distinct_name_of_the_convention() {
        let mut names: Vec<&str> = FAMILIES.iter().map(|family| family.name()).collect();
        for family in FAMILIES {
            let name = family.name();
            assert!(name.starts_with("vigil_"), "{name}");
            assert_eq!(
                family.kind() == Kind::Counter,
                name.ends_with("_total"),
                "{name}"
            );
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FAMILIES.len());
    }
}
