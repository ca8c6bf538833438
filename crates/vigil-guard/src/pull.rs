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
    /// End of the last successful pull, per app and metric.
    pulled_until: Mutex<HashMap<(String, String), i64>>,
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
            states: vec![ReleaseState::Observing],
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
            .copied();
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
                    .insert(key, end);
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
