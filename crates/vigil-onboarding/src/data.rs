//! The onboarding report from the data Vigil holds: the app's hosts, metric families and log
//! templates in the in-memory index.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use vigil_core::LogTemplate;
use vigil_guard::apps::AppConfig;
use vigil_guard::index::{DataIndex, HostData, Series};
use vigil_ingest::remote_write::split_notation;

use crate::names::{self, Facts};
use crate::report::{
    connection_state, next_steps, ExceptionTemplate, FamilyCoverage, HostSeen, HostsSeen, LogHost,
    LogSources, MetricSource, Onboarding, SignalCoverage,
};
use crate::signals::{MetricType, Signal, SignalFamily, EXPECTED_SIGNALS};

/// What the report is made from.
#[derive(Debug, Clone, Copy)]
pub struct ReportInput<'a> {
    pub app: &'a str,
    pub index: &'a DataIndex,
    /// The app's stored settings, if any.
    pub config: Option<&'a AppConfig>,
    /// The app's stored log templates (their levels tell exceptions).
    pub templates: &'a [LogTemplate],
    /// Unix seconds.
    pub now: i64,
}

/// Fewest samples of one series before values that never decrease make it a counter.
const COUNTER_GUESS_MIN_POINTS: usize = 10;

/// Most exception templates listed.
const TOP_EXCEPTIONS: usize = 10;

/// The report of an app from the index, without discovery.
pub fn report(input: &ReportInput<'_>) -> Onboarding {
    let host_names = input.index.hosts_of_app(input.app, i64::MIN);
    let hosts: Vec<(&str, &HostData)> = host_names
        .iter()
        .filter_map(|name| Some((name.as_str(), input.index.host(name)?)))
        .collect();
    let pulled: BTreeSet<&str> = input
        .config
        .and_then(|config| config.prometheus.as_ref())
        .map(|source| {
            source
                .queries
                .iter()
                .map(|query| query.metric.as_str())
                .collect()
        })
        .unwrap_or_default();
    let metrics = metric_sources(&hosts, &pulled);
    let logs = log_sources(&hosts, input.templates);
    let coverage = coverage(&metrics, &logs);
    let pull = input.config.and_then(|config| config.prometheus.clone());
    let next = next_steps(input.app, &coverage, pull.as_ref(), None);
    let seen = hosts_seen(&hosts);
    Onboarding {
        app: input.app.to_owned(),
        at: input.now,
        state: connection_state(&coverage, seen.count > 0),
        hosts: seen,
        metrics,
        logs,
        coverage,
        next_steps: next,
        pull,
        discovery: None,
        discovery_error: None,
    }
}

fn seconds(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

fn hosts_seen(hosts: &[(&str, &HostData)]) -> HostsSeen {
    let listed: Vec<HostSeen> = hosts
        .iter()
        .map(|(name, data)| HostSeen {
            host: (*name).to_owned(),
            last_seen: seconds(data.last_ms),
            metric_series: data.series.len(),
            log_templates: data.logs.len(),
        })
        .collect();
    HostsSeen {
        count: listed.len(),
        last_seen: listed.iter().map(|host| host.last_seen).max(),
        hosts: listed,
    }
}

/// What one metric family's series say, over every host.
#[derive(Debug)]
struct FamilyData {
    hosts: BTreeSet<String>,
    series: BTreeSet<String>,
    last_ms: i64,
    declared_counter: bool,
    label_names: BTreeSet<String>,
    /// Every series' values never went down.
    never_decreases: bool,
    /// Some series went up, over enough samples to tell.
    rises: bool,
    min: f64,
    max: f64,
}

impl Default for FamilyData {
    /// Nothing seen yet: no value has fallen, the range is empty.
    fn default() -> FamilyData {
        FamilyData {
            hosts: BTreeSet::new(),
            series: BTreeSet::new(),
            last_ms: 0,
            declared_counter: false,
            label_names: BTreeSet::new(),
            never_decreases: true,
            rises: false,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl FamilyData {
    fn add(&mut self, host: &str, metric: &str, labels: Vec<(String, String)>, series: &Series) {
        self.hosts.insert(host.to_owned());
        self.series.insert(metric.to_owned());
        self.declared_counter |= series.counter;
        self.label_names
            .extend(labels.into_iter().map(|(label, _)| label));
        let values: Vec<f64> = series
            .points
            .iter()
            .map(|&(_, value)| value)
            .filter(|value| value.is_finite())
            .collect();
        if let Some(&(last_ms, _)) = series.points.last() {
            self.last_ms = self.last_ms.max(last_ms);
        }
        for &value in &values {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
        let steps = values.windows(2);
        if steps.clone().any(|pair| pair[1] < pair[0]) {
            self.never_decreases = false;
        }
        if values.len() >= COUNTER_GUESS_MIN_POINTS && steps.clone().any(|pair| pair[1] > pair[0]) {
            self.rises = true;
        }
    }

    /// The type, and why.
    fn metric_type(&self, name: &str) -> (MetricType, Option<String>) {
        if self.label_names.contains("le") && name.ends_with("_bucket") {
            return (
                MetricType::Histogram,
                Some("label le: histogram buckets".to_owned()),
            );
        }
        if self.label_names.contains("quantile") {
            return (
                MetricType::Summary,
                Some("label quantile: a summary's quantiles".to_owned()),
            );
        }
        if self.declared_counter {
            return (
                MetricType::Counter,
                Some(
                    "its sender declares a counter (metadata, `counter: true` or a _total name)"
                        .to_owned(),
                ),
            );
        }
        if self.never_decreases && self.rises {
            return (
                MetricType::Counter,
                Some("its values rise and never fall: a counter sent as a gauge?".to_owned()),
            );
        }
        (MetricType::Gauge, None)
    }
}

fn metric_sources(hosts: &[(&str, &HostData)], pulled: &BTreeSet<&str>) -> Vec<MetricSource> {
    let mut families: BTreeMap<String, FamilyData> = BTreeMap::new();
    for (host, data) in hosts {
        for (metric, series) in &data.series {
            let (name, labels) = split_notation(metric);
            families
                .entry(name.to_owned())
                .or_default()
                .add(host, metric, labels, series);
        }
    }
    let mut sources: Vec<MetricSource> = families
        .into_iter()
        .map(|(name, family)| metric_source(name, &family, hosts, pulled))
        .collect();
    sources.sort_by(|first, second| {
        let other = |source: &MetricSource| source.signals == [Signal::Other];
        (other(first), second.hosts_reporting, &first.name).cmp(&(
            other(second),
            first.hosts_reporting,
            &second.name,
        ))
    });
    sources
}

fn metric_source(
    name: String,
    family: &FamilyData,
    hosts: &[(&str, &HostData)],
    pulled: &BTreeSet<&str>,
) -> MetricSource {
    let (metric_type, type_reason) = family.metric_type(&name);
    let label_names: Vec<String> = family.label_names.iter().cloned().collect();
    let classified = names::classify(&Facts {
        name: &name,
        labels: Some(&label_names),
        metric_type,
        help: "",
    });
    let mut evidence: Vec<String> = type_reason.into_iter().collect();
    evidence.extend(classified.evidence.iter().cloned());
    let mut unit = names::unit_of(&name, "");
    let share_signal = classified
        .signals
        .iter()
        .any(|signal| matches!(signal, Signal::Cpu | Signal::Memory));
    if unit.is_empty()
        && share_signal
        && metric_type == MetricType::Gauge
        && family.min >= 0.0
        && family.max <= 1.0
    {
        unit = "ratio".to_owned();
        evidence.push("its values lie between 0 and 1: a share".to_owned());
    }
    let one_series_per_host = label_names.is_empty();
    let suggested = match classified.signals.first() {
        Some(signal) if one_series_per_host => signal.suggested_meta(&name, &unit),
        _ => None,
    };
    if !classified.signals.is_empty() && !one_series_per_host {
        evidence.push(format!(
            "{} label sets: a release judges each as its own metric; pull one aggregate per \
             host instead",
            family.series.len()
        ));
    }
    let signals = if classified.signals.is_empty() {
        vec![Signal::Other]
    } else {
        classified.signals
    };
    MetricSource {
        pulled: pulled.contains(name.as_str()),
        name,
        series: family.series.len(),
        hosts_reporting: family.hosts.len(),
        hosts_missing: hosts
            .iter()
            .filter(|(host, _)| !family.hosts.contains(*host))
            .map(|(host, _)| (*host).to_owned())
            .collect(),
        last_sample: seconds(family.last_ms),
        metric_type,
        unit,
        signals,
        evidence,
        suggested,
    }
}

/// Lines of one template over every host.
#[derive(Debug, Default)]
struct TemplateLines {
    lines: u64,
    hosts: usize,
}

fn log_sources(hosts: &[(&str, &HostData)], templates: &[LogTemplate]) -> LogSources {
    let known: HashMap<&str, &LogTemplate> = templates
        .iter()
        .map(|template| (template.id.as_str(), template))
        .collect();
    let is_exception = |id: &str| {
        known
            .get(id)
            .is_some_and(|template| template.is_exception())
    };
    let mut sources = LogSources::default();
    let mut by_template: BTreeMap<&str, TemplateLines> = BTreeMap::new();
    for (host, data) in hosts {
        if data.logs.is_empty() {
            continue;
        }
        let mut log_host = LogHost {
            host: (*host).to_owned(),
            lines: 0,
            exception_lines: 0,
            templates: data.logs.len(),
            last_line: i64::MIN,
        };
        for (template, counts) in &data.logs {
            let lines: u64 = counts.values().sum();
            log_host.lines += lines;
            if is_exception(template) {
                log_host.exception_lines += lines;
            }
            if let Some((&last_ms, _)) = counts.last_key_value() {
                log_host.last_line = log_host.last_line.max(seconds(last_ms));
            }
            let entry = by_template.entry(template.as_str()).or_default();
            entry.lines += lines;
            entry.hosts += 1;
        }
        sources.lines += log_host.lines;
        sources.exception_lines += log_host.exception_lines;
        sources.last_line = sources.last_line.max(Some(log_host.last_line));
        sources.hosts.push(log_host);
    }
    sources.templates = by_template.len();
    let mut exceptions: Vec<ExceptionTemplate> = by_template
        .iter()
        .filter_map(|(id, counted)| {
            let template = known.get(id).filter(|template| template.is_exception())?;
            Some(ExceptionTemplate {
                id: (*id).to_owned(),
                text: template.text.clone(),
                level: template.level.clone(),
                lines: counted.lines,
                hosts: counted.hosts,
            })
        })
        .collect();
    sources.exception_templates = exceptions.len();
    exceptions.sort_by(|first, second| (second.lines, &first.id).cmp(&(first.lines, &second.id)));
    exceptions.truncate(TOP_EXCEPTIONS);
    sources.top_exceptions = exceptions;
    sources
}

fn coverage(metrics: &[MetricSource], logs: &LogSources) -> Vec<FamilyCoverage> {
    let signal_coverage = |signal: Signal| {
        let sources: Vec<String> = if signal == Signal::Logs {
            logs.hosts.iter().map(|host| host.host.clone()).collect()
        } else {
            metrics
                .iter()
                .filter(|metric| metric.signals.contains(&signal))
                .map(|metric| metric.name.clone())
                .collect()
        };
        SignalCoverage {
            signal,
            found: !sources.is_empty(),
            sources,
        }
    };
    [
        SignalFamily::System,
        SignalFamily::Middleware,
        SignalFamily::Logs,
    ]
    .into_iter()
    .map(|family| {
        let signals: Vec<SignalCoverage> = EXPECTED_SIGNALS
            .into_iter()
            .filter(|signal| signal.family() == Some(family))
            .map(signal_coverage)
            .collect();
        FamilyCoverage {
            family,
            covered: signals.iter().any(|entry| entry.found),
            signals,
        }
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use vigil_core::samples::{LogChunk, MetricChunk};
    use vigil_core::samples::{LogCount, Point, SeriesKey};
    use vigil_guard::apps::{PullQuery, PullSource};

    use super::*;
    use crate::report::{ConnectionState, StepAction};

    const T0: i64 = 1_700_000_000_000;

    /// Twelve samples a minute apart of `value(step)` for each host.
    fn samples(
        index: &mut DataIndex,
        metric: &str,
        counter: bool,
        hosts: &[&str],
        value: impl Fn(i64) -> f64,
    ) {
        let series: Vec<Arc<SeriesKey>> = hosts
            .iter()
            .map(|host| {
                Arc::new(SeriesKey {
                    app: "shop".into(),
                    host: (*host).into(),
                    metric: metric.into(),
                    counter,
                })
            })
            .collect();
        let points = (0..hosts.len())
            .flat_map(|series| (0..12).map(move |step| (series, step)))
            .map(|(series, step)| Point {
                series: series as u32,
                ms: T0 + step * 60_000,
                value: value(step),
            })
            .collect();
        index.insert_metrics(&MetricChunk {
            series,
            points,
            host_labels: Vec::new(),
        });
    }

    fn log_lines(index: &mut DataIndex, host: &str, template: &str, count: u32) {
        index.insert_logs(&LogChunk {
            counts: vec![LogCount {
                app: "shop".into(),
                host: host.into(),
                template: template.into(),
                ms: T0 + 5000,
                count,
            }],
        });
    }

    fn template(id: &str, text: &str, level: &str) -> LogTemplate {
        LogTemplate {
            id: id.into(),
            text: text.into(),
            level: level.into(),
        }
    }

    fn make_report(
        index: &DataIndex,
        config: Option<&AppConfig>,
        templates: &[LogTemplate],
    ) -> Onboarding {
        report(&ReportInput {
            app: "shop",
            index,
            config,
            templates,
            now: T0 / 1000 + 900,
        })
    }

    #[test]
    fn pushed_samples_and_logs_are_classified_and_covered() {
        let mut index = DataIndex::new();
        let all = ["h1", "h2", "h3"];
        samples(&mut index, "cpu", false, &all, |step| {
            0.2 + 0.01 * (step % 3) as f64
        });
        samples(&mut index, "latency_ms", false, &all, |step| {
            100.0 + (step % 4) as f64
        });
        samples(
            &mut index,
            "http_requests_total{code=\"200\"}",
            true,
            &all,
            |step| 10.0 * step as f64,
        );
        samples(
            &mut index,
            "http_requests_total{code=\"500\"}",
            true,
            &all[..2],
            |step| step as f64,
        );
        samples(&mut index, "orders_placed", false, &all, |step| {
            (step * 3) as f64
        });
        samples(&mut index, "queue_depth", false, &["h1"], |step| {
            (step % 5) as f64
        });
        log_lines(&mut index, "h1", "1", 40);
        log_lines(&mut index, "h1", "2", 3);
        log_lines(&mut index, "h2", "2", 2);
        let templates = [
            template("1", "GET <*> 200", "INFO"),
            template("2", "payment failed: <*>", "ERROR"),
        ];
        let config = AppConfig {
            prometheus: Some(PullSource {
                url: "http://prom:9090".into(),
                host_label: "instance".into(),
                step_seconds: 30,
                queries: vec![PullQuery {
                    metric: "cpu".into(),
                    query: "x".into(),
                }],
                selector: None,
            }),
            log_pattern: None,
            metrics: Vec::new(),
            rules: Vec::new(),
        };
        let onboarding = make_report(&index, Some(&config), &templates);

        assert_eq!(onboarding.state, ConnectionState::Connected);
        assert_eq!(onboarding.hosts.count, 3);
        assert_eq!(onboarding.hosts.last_seen, Some(T0 / 1000 + 660));
        let by_name = |name: &str| {
            onboarding
                .metrics
                .iter()
                .find(|metric| metric.name == name)
                .unwrap_or_else(|| panic!("{name} is not listed"))
        };
        let cpu = by_name("cpu");
        assert_eq!(cpu.signals, [Signal::Cpu]);
        assert_eq!(cpu.unit, "ratio");
        assert!(cpu.pulled);
        assert_eq!(cpu.metric_type, MetricType::Gauge);
        assert_eq!(
            cpu.suggested.as_ref().unwrap().kind,
            vigil_core::model::MetricKind::System
        );
        let requests = by_name("http_requests_total");
        assert_eq!(requests.signals, [Signal::RequestRate, Signal::Errors]);
        assert_eq!(requests.series, 2);
        assert_eq!(requests.metric_type, MetricType::Counter);
        assert!(
            requests.suggested.is_none(),
            "two label sets are not one metric per host"
        );
        let latency = by_name("latency_ms");
        assert_eq!((latency.unit.as_str(), latency.hosts_reporting), ("ms", 3));
        assert!(latency.suggested.as_ref().unwrap().critical);
        let orders = by_name("orders_placed");
        assert_eq!(orders.signals, [Signal::Other]);
        assert_eq!(
            orders.metric_type,
            MetricType::Counter,
            "rising values make a counter"
        );
        let queue = by_name("queue_depth");
        assert_eq!(queue.signals, [Signal::Other]);
        assert_eq!(queue.hosts_missing, ["h2", "h3"]);
        assert_eq!(queue.last_sample, T0 / 1000 + 660);
        assert_eq!(onboarding.metrics.last().unwrap().signals, [Signal::Other]);

        assert_eq!(onboarding.logs.hosts.len(), 2);
        assert_eq!(onboarding.logs.lines, 45);
        assert_eq!(onboarding.logs.exception_lines, 5);
        assert_eq!(
            (
                onboarding.logs.templates,
                onboarding.logs.exception_templates
            ),
            (2, 1)
        );
        assert_eq!(
            onboarding.logs.top_exceptions[0].text,
            "payment failed: <*>"
        );
        assert_eq!(onboarding.logs.top_exceptions[0].hosts, 2);
        assert_eq!(onboarding.logs.last_line, Some(T0 / 1000 + 5));

        let missing: Vec<(Signal, StepAction)> = onboarding
            .next_steps
            .iter()
            .map(|step| (step.signal, step.action))
            .collect();
        assert_eq!(
            missing,
            [
                (Signal::Memory, StepAction::ConfigurePullQuery),
                (Signal::Load, StepAction::ConfigurePullQuery)
            ]
        );
        assert!(onboarding.coverage.iter().all(|family| family.covered));
    }

    #[test]
    fn logs_alone_are_partial_and_nothing_is_not_connected() {
        let mut index = DataIndex::new();
        log_lines(&mut index, "h1", "7", 1);
        let logs_only = make_report(&index, None, &[]);
        assert_eq!(logs_only.state, ConnectionState::Partial);
        assert_eq!(logs_only.logs.exception_lines, 0);
        assert_eq!(logs_only.next_steps.len(), 6);
        assert!(logs_only
            .next_steps
            .iter()
            .all(|step| step.action == StepAction::DiscoverPrometheus));

        let empty = make_report(&DataIndex::new(), None, &[]);
        assert_eq!(empty.state, ConnectionState::NotConnected);
        assert_eq!(empty.hosts.count, 0);
        assert_eq!(empty.next_steps.len(), 7);
        let logs_step = empty.next_steps.last().unwrap();
        assert_eq!(logs_step.action, StepAction::SendLogs);
        assert!(
            logs_step.text.contains("POST /api/v1/ingest/logs"),
            "{}",
            logs_step.text
        );
    }

    #[test]
    fn metrics_filling_no_signal_are_partial() {
        let mut index = DataIndex::new();
        samples(&mut index, "basket_items", false, &["h1"], |_| 2.0);
        let onboarding = make_report(&index, None, &[]);
        assert_eq!(onboarding.state, ConnectionState::Partial);
        assert!(onboarding.coverage.iter().all(|family| !family.covered));
        assert_eq!(onboarding.next_steps.len(), 7);
    }

    #[test]
    fn system_alone_is_partial_and_a_second_app_is_left_out() {
        let mut index = DataIndex::new();
        samples(&mut index, "node_load1", false, &["h1"], |_| 0.5);
        let other_app = MetricChunk {
            series: vec![Arc::new(SeriesKey {
                app: "cart".into(),
                host: "c1".into(),
                metric: "latency_ms".into(),
                counter: false,
            })],
            points: vec![Point {
                series: 0,
                ms: T0,
                value: 1.0,
            }],
            host_labels: Vec::new(),
        };
        index.insert_metrics(&other_app);
        let onboarding = make_report(&index, None, &[]);
        assert_eq!(onboarding.state, ConnectionState::Partial);
        assert_eq!(onboarding.hosts.count, 1);
        assert_eq!(onboarding.metrics.len(), 1);
        assert_eq!(onboarding.metrics[0].signals, [Signal::Load]);
    }
}
