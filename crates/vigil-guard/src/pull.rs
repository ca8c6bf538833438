//! The puller: per app, the pull source's PromQL queries ([`crate::apps`]) fetched from a
//! Prometheus server every step and fed through the same intake as pushed data. The query rules
//! of the app and of its observing releases are pulled the same way, each into the series
//! `rule:NAME` of every host (results without the host label are left out, as for any pull
//! query); a query rule that fails, or whose app pulls from no Prometheus server, is recorded
//! among the failures, where the guard finds it ([`crate::rules`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use vigil_core::release::ReleaseState;
use vigil_core::rules::{query_series, Rule, RuleSource};
use vigil_core::samples::MetricChunk;
use vigil_core::Clock;
use vigil_store::{ReleaseFilter, Store};

use crate::apps::all_stored_settings;
// The pull source's types, named where the puller's callers have always found them.
pub use crate::apps::{PullQuery, PullSource};
use crate::intake::Intake;

/// Fetches one query's results over `[start, end]` (Unix seconds) at `step` seconds, as samples
/// of `query.metric` on each host of `app`.
pub type Fetch =
    dyn Fn(&str, &PullSource, &PullQuery, i64, i64) -> Result<MetricChunk, String> + Send + Sync;

/// The last failure of one pull query: it is shown on the app's page, since a query that fails
/// at every step would otherwise only be a line in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PullFailure {
    pub metric: String,
    /// Unix seconds of the failed pull.
    pub at: i64,
    pub error: String,
}

/// The failing pull queries, by app and metric; a query leaves once it pulls again.
#[derive(Debug, Default)]
pub struct PullFailures {
    by_query: Mutex<HashMap<(String, String), PullFailure>>,
}

impl PullFailures {
    fn record(&self, app: &str, failure: PullFailure) {
        self.lock()
            .insert((app.to_owned(), failure.metric.clone()), failure);
    }

    fn clear(&self, key: &(String, String)) {
        self.lock().remove(key);
    }

    /// The failing queries of `app`, by metric name.
    pub fn of_app(&self, app: &str) -> Vec<PullFailure> {
        let mut failing: Vec<PullFailure> = self
            .lock()
            .iter()
            .filter(|((failing_app, _), _)| failing_app == app)
            .map(|(_, failure)| failure.clone())
            .collect();
        failing.sort_by(|left, right| left.metric.cmp(&right.metric));
        failing
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), PullFailure>> {
        self.by_query
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What a pull round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullReport {
    pub queries: usize,
    pub samples: usize,
    pub failures: Vec<String>,
}

/// Pulls every app's queries when their step is due.
pub struct Puller {
    store: Arc<dyn Store>,
    intake: Arc<Intake>,
    clock: Arc<dyn Clock>,
    fetch: Arc<Fetch>,
    /// How far back the first pull of an app reaches, in seconds.
    backfill_seconds: i64,
    /// The query last pulled and the end of its last successful pull, per app and metric: a
    /// metric whose query changed (an edited query rule) is pulled again from the backfill.
    pulled_until: Mutex<HashMap<(String, String), (String, i64)>>,
    failures: Arc<PullFailures>,
}

impl std::fmt::Debug for Puller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Puller")
            .field("backfill_seconds", &self.backfill_seconds)
            .finish_non_exhaustive()
    }
}

impl Puller {
    pub fn new(
        store: Arc<dyn Store>,
        intake: Arc<Intake>,
        clock: Arc<dyn Clock>,
        fetch: Arc<Fetch>,
        backfill_seconds: i64,
    ) -> Puller {
        Puller {
            store,
            intake,
            clock,
            fetch,
            backfill_seconds,
            pulled_until: Mutex::new(HashMap::new()),
            failures: Arc::new(PullFailures::default()),
        }
    }

    /// The failing queries, as they are now and after every later pull.
    pub fn failures(&self) -> Arc<PullFailures> {
        Arc::clone(&self.failures)
    }

    /// Pulls every query whose step has come since its last pull: the pull source's queries
    /// and the query rules of the app and of its observing releases (into `rule:NAME`).
    pub fn pull_due(&self) -> PullReport {
        let mut report = PullReport::default();
        let apps = match all_stored_settings(self.store.as_ref()) {
            Ok(apps) => apps,
            Err(error) => {
                report.failures.push(format!("cannot read apps: {error}"));
                return report;
            }
        };
        let now = self.clock.now();
        let mut release_rules = match self.observing_rule_queries() {
            Ok(rules) => rules,
            Err(error) => {
                report
                    .failures
                    .push(format!("cannot read observing releases: {error}"));
                HashMap::new()
            }
        };
        for (app, settings) in apps {
            let Ok(config) = settings else {
                report
                    .failures
                    .push(format!("app {app}: stored settings are not valid"));
                continue;
            };
            let mut rule_queries = rule_queries(&config.rules);
            for query in release_rules.remove(&app).unwrap_or_default() {
                rule_queries.retain(|known| known.metric != query.metric);
                rule_queries.push(query);
            }
            let Some(source) = config.prometheus else {
                self.record_without_source(&app, &rule_queries, now);
                continue;
            };
            let step = source.step_seconds.max(1);
            let end = now.div_euclid(step) * step;
            for query in source.queries.iter().chain(&rule_queries) {
                self.pull_query(&app, &source, query, end, now, &mut report);
            }
        }
        for (app, queries) in release_rules {
            self.record_without_source(&app, &queries, now);
        }
        report
    }

    /// The query rules of observing releases, as pull queries into `rule:NAME`, by app.
    fn observing_rule_queries(
        &self,
    ) -> Result<HashMap<String, Vec<PullQuery>>, vigil_store::StoreError> {
        let observing = self.store.releases(&ReleaseFilter {
            states: vec![ReleaseState::Observing, ReleaseState::Deploying],
            ..ReleaseFilter::default()
        })?;
        let mut by_app: HashMap<String, Vec<PullQuery>> = HashMap::new();
        for release in observing {
            let queries = by_app.entry(release.spec.app.clone()).or_default();
            for query in rule_queries(&release.spec.rules) {
                queries.retain(|known| known.metric != query.metric);
                queries.push(query);
            }
        }
        by_app.retain(|_, queries| !queries.is_empty());
        Ok(by_app)
    }

    /// Query rules of an app that pulls from no Prometheus server cannot be run: each is
    /// recorded as failing, so that the rule is shown failing rather than without data.
    fn record_without_source(&self, app: &str, queries: &[PullQuery], now: i64) {
        for query in queries {
            self.failures.record(
                app,
                PullFailure {
                    metric: query.metric.clone(),
                    at: now,
                    error: "the app pulls from no prometheus server".to_owned(),
                },
            );
        }
    }

    /// Pulls one query up to `end` if its step has come.
    fn pull_query(
        &self,
        app: &str,
        source: &PullSource,
        query: &PullQuery,
        end: i64,
        now: i64,
        report: &mut PullReport,
    ) {
        let step = source.step_seconds.max(1);
        let key = (app.to_owned(), query.metric.clone());
        let since = self
            .pulled_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&key)
            .filter(|(pulled, _)| *pulled == query.query)
            .map(|(_, until)| *until);
        let start = match since {
            Some(last) if last >= end => return,
            Some(last) => last + step,
            None => end - self.backfill_seconds,
        };
        report.queries += 1;
        let chunk = match (self.fetch)(app, source, query, start, end) {
            Ok(chunk) => chunk,
            Err(error) => {
                tracing::warn!(app = %app, metric = %query.metric, %error, "prometheus pull failed");
                report
                    .failures
                    .push(format!("app {app}, metric {}: {error}", query.metric));
                self.failures.record(
                    app,
                    PullFailure {
                        metric: query.metric.clone(),
                        at: now,
                        error,
                    },
                );
                return;
            }
        };
        self.failures.clear(&key);
        match self.intake.metrics(&chunk, None, now) {
            Ok(accepted) => {
                report.samples += accepted.items;
                self.pulled_until
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .insert(key, (query.query.clone(), end));
            }
            Err(error) => report
                .failures
                .push(format!("app {app}, metric {}: {error}", query.metric)),
        }
    }
}

/// The query rules among `rules`, as pull queries whose results are stored as `rule:NAME`.
pub fn rule_queries(rules: &[Rule]) -> Vec<PullQuery> {
    rules
        .iter()
        .filter_map(|rule| match rule.source() {
            RuleSource::Query(query) => Some(PullQuery {
                metric: query_series(&rule.name),
                query: query.to_owned(),
            }),
            RuleSource::Metric(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::RwLock;

    use vigil_core::release::{PlannedBatch, ReferenceHosts, Release, ReleaseSpec};
    use vigil_core::samples::{Point, SeriesKey};
    use vigil_core::ManualClock;

    use super::*;
    use crate::index::DataIndex;

    const NOW: i64 = 1_700_000_000;

    /// What the fake fetch was asked: app, metric, query and start.
    type Asked = Arc<Mutex<Vec<(String, String, String, i64)>>>;

    fn rules(json: &str) -> Vec<Rule> {
        serde_json::from_str(json).expect("rules")
    }

    fn observing_release(app: &str, own_rules: Vec<Rule>) -> Release {
        Release {
            id: format!("{app}-1"),
            spec: ReleaseSpec {
                app: app.to_owned(),
                version: "2".to_owned(),
                hosts: vec!["r1".to_owned()].into(),
                reference: ReferenceHosts::None,
                batches: vec![PlannedBatch {
                    hosts: vec!["r1".to_owned()],
                }],
                step_seconds: 30,
                observe_seconds: 600,
                metrics: Vec::new(),
                settings: serde_json::Map::new(),
                rules: own_rules,
            },
            state: ReleaseState::Observing,
            created_by: String::new(),
            created_at: NOW - 600,
            updated_at: NOW - 600,
            deployed: Vec::new(),
            verdict: None,
            reason: String::new(),
        }
    }

    #[test]
    fn query_rules_are_pulled_into_their_series_and_failing_ones_recorded() {
        let dir = vigil_store::testing::TempDir::new("pull-rules").unwrap();
        let store: Arc<dyn Store> =
            vigil_store::open(&dir.path().join("vigil.db").display().to_string()).unwrap();
        let settings = serde_json::json!({
        "prometheus": {"url": "http://127.0.0.1:9", "step_seconds": 30,
            "queries": [{"metric": "latency_ms", "query": "latency_ms"}]},
        "rules": [
            {"name": "errors", "query": "app_errors", "above": 1, "severity": "fault"},
            {"name": "success", "metric": "success_rate", "below": 0.99, "severity": "fault"}
        ]});
        store.put_app("shop", &settings).unwrap();
        store.put_app("books", &settings).unwrap();
        // A release of shop gives its own query for `errors`; one of cart, which pulls from no
        // Prometheus, a query rule that cannot run.
        let own = rules(
            r#"[{"name": "errors", "query": "release_errors", "above": 2, "severity": "fault"}]"#,
        );
        store
            .create_release(&observing_release("shop", own))
            .unwrap();
        let cart = rules(
            r#"[{"name": "slow", "query": "cart_latency", "above": 2, "severity": "anomaly"}]"#,
        );
        store
            .create_release(&observing_release("cart", cart))
            .unwrap();
        let index = Arc::new(RwLock::new(DataIndex::new()));
        let intake = Arc::new(Intake::new(
            Arc::clone(&store),
            Arc::clone(&index),
            Arc::new(|| {}),
            vigil_ingest::remote_write::RemoteWriteOptions::default(),
        ));
        let clock = Arc::new(ManualClock::new(NOW));
        let asked: Asked = Arc::default();
        let asked_by_fetch = Arc::clone(&asked);
        let fetch = move |app: &str, _: &PullSource, query: &PullQuery, start: i64, end: i64| {
            asked_by_fetch.lock().unwrap().push((
                app.to_owned(),
                query.metric.clone(),
                query.query.clone(),
                start,
            ));
            if query.query == "app_errors" {
                return Err("bad_data: parse error".to_owned());
            }
            let key = SeriesKey {
                app: app.to_owned(),
                host: "r1".to_owned(),
                metric: query.metric.clone(),
                counter: false,
            };
            Ok(MetricChunk {
                series: vec![Arc::new(key)],
                points: vec![Point {
                    series: 0,
                    ms: end * 1000,
                    value: 1.0,
                }],
                host_labels: Vec::new(),
            })
        };
        let puller = Puller::new(
            Arc::clone(&store),
            intake,
            clock.clone(),
            Arc::new(fetch),
            3600,
        );
        puller.pull_due();
        let pulled: Vec<String> = asked
            .lock()
            .unwrap()
            .iter()
            .map(|(app, metric, query, _)| format!("{app} {metric} {query}"))
            .collect();
        assert_eq!(
            pulled,
            [
                "books latency_ms latency_ms",
                "books rule:errors app_errors",
                "shop latency_ms latency_ms",
                "shop rule:errors release_errors"
            ]
        );
        let cart_failures = puller.failures().of_app("cart");
        assert_eq!(cart_failures.len(), 1);
        assert_eq!(cart_failures[0].metric, "rule:slow");
        assert_eq!(
            cart_failures[0].error,
            "the app pulls from no prometheus server"
        );

        // books pulls its own failing query rule: the failure is recorded for the guard.
        let books_failures = puller.failures().of_app("books");
        assert_eq!(books_failures.len(), 1);
        assert_eq!(books_failures[0].metric, "rule:errors");
        assert_eq!(books_failures[0].error, "bad_data: parse error");

        // The next step: a query that changed is pulled again from the backfill, the others go
        // on from where they stopped.
        let mut edited = settings.clone();
        edited["prometheus"]["queries"][0]["query"] = serde_json::json!("avg(latency_ms)");
        store.put_app("shop", &edited).unwrap();
        asked.lock().unwrap().clear();
        clock.set(NOW + 30);
        puller.pull_due();
        let repeated: Vec<String> = asked
            .lock()
            .unwrap()
            .iter()
            .map(|(app, metric, query, start)| format!("{app} {metric} {query} {start}"))
            .collect();
        let end = (NOW + 30) / 30 * 30;
        assert!(
            repeated.contains(&format!("shop latency_ms avg(latency_ms) {}", end - 3600)),
            "{repeated:?}"
        );
        assert!(
            repeated.contains(&format!("shop rule:errors release_errors {end}")),
            "{repeated:?}"
        );
        // The failing query is tried again at every step, from the backfill.
        assert!(
            repeated.contains(&format!("books rule:errors app_errors {}", end - 3600)),
            "{repeated:?}"
        );
        assert!(index.read().unwrap().hosts_by_app().contains_key("shop"));
    }
}
