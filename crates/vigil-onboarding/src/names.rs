//! Which signal a metric fills, read from public naming conventions: the families of common
//! exporters and client libraries (node exporter, client libraries' process metrics, cAdvisor,
//! Micrometer, OpenTelemetry, gRPC, nginx, HAProxy, Envoy), then the words of the metric's name
//! (`cpu`, `latency`, `requests`, ...) and, when the name says nothing, of its help text.
//!
//! This only helps a person connect an app: the analysis never reads metric names, it reads the
//! kind, direction and unit the release declares.

use crate::signals::{MetricType, Signal};

/// Label names that carry a response status in the conventions above.
pub const STATUS_LABELS: [&str; 9] = [
    "code",
    "status",
    "status_code",
    "http_status",
    "http_status_code",
    "http_response_status_code",
    "response_code",
    "grpc_code",
    "envoy_response_code_class",
];

/// Which series of a histogram or summary a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// A counter, a gauge, or a summary's quantiles.
    Whole,
    /// `_bucket`: a histogram's cumulative buckets (label `le`).
    Bucket,
    /// `_count`: how many observations.
    Count,
    /// `_sum`: the sum of the observations.
    Sum,
    /// `_max`: the largest recent observation (Micrometer).
    Max,
}

impl Part {
    /// The part a name ends with, and the name without that suffix.
    pub fn split(name: &str) -> (Part, &str) {
        let suffixes = [
            ("_bucket", Part::Bucket),
            ("_count", Part::Count),
            ("_sum", Part::Sum),
            ("_max", Part::Max),
        ];
        for (suffix, part) in suffixes {
            if let Some(base) = name.strip_suffix(suffix) {
                return (part, base);
            }
        }
        (Part::Whole, name)
    }
}

/// How a known family is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// One name: a counter or a gauge filling these signals.
    Single(Signal),
    /// A histogram or summary of durations: buckets, sum and max are latency, the count is the
    /// request rate.
    Timed,
}

#[derive(Debug)]
struct KnownFamily {
    name: &'static str,
    convention: &'static str,
    layout: Layout,
}

const NODE_EXPORTER: &str = "node exporter";
const PROCESS_METRICS: &str = "client library process metrics";
const OPEN_TELEMETRY_OLD: &str = "OpenTelemetry (semantic conventions before 1.23)";
const GRPC: &str = "go-grpc-prometheus";
const HAPROXY: &str = "HAProxy";
const ENVOY: &str = "Envoy";

const fn known(name: &'static str, convention: &'static str, layout: Layout) -> KnownFamily {
    KnownFamily {
        name,
        convention,
        layout,
    }
}

/// Known families, the preferred first for each signal.
#[rustfmt::skip]
const KNOWN_FAMILIES: &[KnownFamily] = &[
    known("node_cpu_seconds_total", NODE_EXPORTER, Layout::Single(Signal::Cpu)),
    known("node_memory_MemAvailable_bytes", NODE_EXPORTER, Layout::Single(Signal::Memory)),
    known("node_memory_MemTotal_bytes", NODE_EXPORTER, Layout::Single(Signal::Memory)),
    known("node_load1", NODE_EXPORTER, Layout::Single(Signal::Load)),
    known("node_load5", NODE_EXPORTER, Layout::Single(Signal::Load)),
    known("node_load15", NODE_EXPORTER, Layout::Single(Signal::Load)),
    known("container_cpu_usage_seconds_total", "cAdvisor", Layout::Single(Signal::Cpu)),
    known("container_memory_working_set_bytes", "cAdvisor", Layout::Single(Signal::Memory)),
    known("process_cpu_seconds_total", PROCESS_METRICS, Layout::Single(Signal::Cpu)),
    known("process_resident_memory_bytes", PROCESS_METRICS, Layout::Single(Signal::Memory)),
    known("jvm_memory_used_bytes", "Micrometer (JVM)", Layout::Single(Signal::Memory)),
    known("http_server_requests_seconds", "Micrometer (Spring)", Layout::Timed),
    known("http_server_request_duration_seconds", "OpenTelemetry", Layout::Timed),
    known("http_server_duration_milliseconds", OPEN_TELEMETRY_OLD, Layout::Timed),
    known("http_server_duration", OPEN_TELEMETRY_OLD, Layout::Timed),
    known("http_request_duration_seconds", "client library histogram", Layout::Timed),
    known("http_requests_total", "client library counter", Layout::Single(Signal::RequestRate)),
    known("grpc_server_handling_seconds", GRPC, Layout::Timed),
    known("grpc_server_handled_total", GRPC, Layout::Single(Signal::RequestRate)),
    known("nginx_vts_server_requests_total", "nginx VTS exporter", Layout::Single(Signal::RequestRate)),
    known("nginx_http_requests_total", "nginx exporter", Layout::Single(Signal::RequestRate)),
    known("haproxy_frontend_http_responses_total", HAPROXY, Layout::Single(Signal::RequestRate)),
    known("haproxy_backend_http_responses_total", HAPROXY, Layout::Single(Signal::RequestRate)),
    known("haproxy_frontend_http_requests_total", HAPROXY, Layout::Single(Signal::RequestRate)),
    known("haproxy_backend_response_time_average_seconds", HAPROXY, Layout::Single(Signal::Latency)),
    known("envoy_http_downstream_rq_time", ENVOY, Layout::Timed),
    known("envoy_http_downstream_rq_xx", ENVOY, Layout::Single(Signal::RequestRate)),
    known("envoy_http_downstream_rq_total", ENVOY, Layout::Single(Signal::RequestRate)),
    known("envoy_cluster_upstream_rq_time", ENVOY, Layout::Timed),
    known("envoy_cluster_upstream_rq_xx", ENVOY, Layout::Single(Signal::RequestRate)),
    known("envoy_cluster_upstream_rq_total", ENVOY, Layout::Single(Signal::RequestRate)),
];

/// The rank of names read from their words, after every known family.
pub const WORDS_RANK: usize = 1000;

/// First words of runtime and infrastructure families: they can fill system signals, never
/// middleware ones (`go_gc_duration_seconds` is not the app's latency).
const INFRASTRUCTURE_PREFIXES: [&str; 14] = [
    "node",
    "go",
    "process",
    "container",
    "kube",
    "jvm",
    "python",
    "nodejs",
    "dotnet",
    "prometheus",
    "promhttp",
    "scrape",
    "windows",
    "machine",
];

const CPU_WORDS: [&str; 1] = ["cpu"];
const MEMORY_WORDS: [&str; 4] = ["memory", "mem", "rss", "heap"];
const LATENCY_WORDS: [&str; 5] = ["latency", "duration", "rt", "elapsed", "responsetime"];
/// A word followed by one of these is latency: `response_time`, `rq_time`, `handling_seconds`.
const LATENCY_PAIRS: [(&str, &str); 5] = [
    ("response", "time"),
    ("request", "time"),
    ("rq", "time"),
    ("handling", "seconds"),
    ("handling", "time"),
];
const ERROR_WORDS: [&str; 12] = [
    "error",
    "errors",
    "failed",
    "failure",
    "failures",
    "fail",
    "fails",
    "exception",
    "exceptions",
    "5xx",
    "fault",
    "faults",
];
const REQUEST_WORDS: [&str; 9] = [
    "request",
    "requests",
    "req",
    "reqs",
    "rq",
    "hits",
    "calls",
    "handled",
    "responses",
];
/// Words that make a request-named gauge a rate already.
const RATE_WORDS: [&str; 4] = ["qps", "rps", "tps", "throughput"];
/// Words of request metrics that are not a rate: in-flight gauges, sizes.
const NOT_A_RATE_WORDS: [&str; 9] = [
    "flight",
    "inflight",
    "active",
    "pending",
    "concurrent",
    "queued",
    "queue",
    "size",
    "bytes",
];
/// Words that say a value is a duration.
const TIME_WORDS: [&str; 11] = [
    "seconds",
    "second",
    "milliseconds",
    "ms",
    "microseconds",
    "duration",
    "latency",
    "time",
    "elapsed",
    "rt",
    "responsetime",
];

/// What is known of a metric when it is classified.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The metric name (`__name__`), without labels.
    pub name: &'a str,
    /// The label names of its series; `None` when not known yet.
    pub labels: Option<&'a [String]>,
    pub metric_type: MetricType,
    /// The help text from metadata, or empty.
    pub help: &'a str,
}

impl Facts<'_> {
    fn has_label(&self, wanted: &str) -> bool {
        self.labels
            .is_some_and(|labels| labels.iter().any(|label| label == wanted))
    }

    /// The status label of its series, if any.
    pub fn status_label(&self) -> Option<&'static str> {
        STATUS_LABELS
            .into_iter()
            .find(|status| self.has_label(status))
    }

    fn counts_events(&self, part: Part) -> bool {
        part == Part::Count
            || self.metric_type == MetricType::Counter
            || self.name.ends_with("_total")
    }
}

/// The signals a metric fills, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// Empty when it fills none of the expected signals.
    pub signals: Vec<Signal>,
    /// The convention it follows, when a known one.
    pub convention: Option<&'static str>,
    /// Preference between metrics filling the same signal: lower is preferred.
    pub rank: usize,
    pub part: Part,
    /// One short sentence per reason.
    pub evidence: Vec<String>,
}

impl Classified {
    fn none(part: Part) -> Classified {
        Classified {
            signals: Vec::new(),
            convention: None,
            rank: WORDS_RANK,
            part,
            evidence: Vec::new(),
        }
    }
}

/// Classifies one metric by the conventions above.
pub fn classify(facts: &Facts<'_>) -> Classified {
    let mut classified = classify_by_name(facts);
    let Some(status) = facts.status_label() else {
        return classified;
    };
    let counter = facts.counts_events(classified.part) || classified.convention.is_some();
    if classified.signals.contains(&Signal::RequestRate) && counter {
        classified.signals.push(Signal::Errors);
        classified
            .evidence
            .push(format!("label {status} splits it by response status"));
    }
    classified
}

fn classify_by_name(facts: &Facts<'_>) -> Classified {
    let (part, base) = Part::split(facts.name);
    if let Some((rank, family)) = KNOWN_FAMILIES
        .iter()
        .enumerate()
        .find(|(_, family)| family.name == facts.name)
    {
        if let Layout::Single(signal) = family.layout {
            return known_classified(signal, rank, family, Part::Whole);
        }
    }
    if let Some((rank, family)) = KNOWN_FAMILIES
        .iter()
        .enumerate()
        .find(|(_, family)| family.layout == Layout::Timed && family.name == base)
    {
        if let Some(signal) = timed_part_signal(facts, part) {
            return known_classified(signal, rank, family, part);
        }
    }
    let name_words = words(facts.name);
    if let Some(mut found) = classify_words(&name_words, facts, part) {
        found
            .evidence
            .insert(0, format!("its name says {}", found.signals[0].describe()));
        return found;
    }
    if INFRASTRUCTURE_PREFIXES.contains(&name_words.first().map_or("", String::as_str)) {
        return Classified::none(part);
    }
    let help_words = words(facts.help);
    match classify_words(&help_words, facts, part) {
        Some(mut found) => {
            found
                .evidence
                .insert(0, format!("its help text says {:?}", facts.help.trim()));
            found
        }
        None => Classified::none(part),
    }
}

fn known_classified(signal: Signal, rank: usize, family: &KnownFamily, part: Part) -> Classified {
    Classified {
        signals: vec![signal],
        convention: Some(family.convention),
        rank,
        part,
        evidence: vec![format!("{} ({})", family.name, family.convention)],
    }
}

/// The signal of a part of a duration histogram or summary: buckets need the label `le`, a
/// summary's quantiles the label `quantile` (when the labels are known).
fn timed_part_signal(facts: &Facts<'_>, part: Part) -> Option<Signal> {
    let labels_known = facts.labels.is_some();
    match part {
        Part::Bucket if !labels_known || facts.has_label("le") => Some(Signal::Latency),
        Part::Bucket => None,
        Part::Count => Some(Signal::RequestRate),
        Part::Sum | Part::Max => Some(Signal::Latency),
        Part::Whole
            if !labels_known
                || facts.has_label("quantile")
                || facts.metric_type == MetricType::Gauge =>
        {
            Some(Signal::Latency)
        }
        Part::Whole => None,
    }
}

/// The signal words say, for the name or the help text; `None` when they say none.
fn classify_words(all_words: &[String], facts: &Facts<'_>, part: Part) -> Option<Classified> {
    let has = |set: &[&str]| all_words.iter().any(|word| set.contains(&word.as_str()));
    let infrastructure =
        INFRASTRUCTURE_PREFIXES.contains(&all_words.first().map_or("", String::as_str));
    let system = if has(&CPU_WORDS) {
        Some(Signal::Cpu)
    } else if has(&MEMORY_WORDS) {
        Some(Signal::Memory)
    } else if says_load(all_words) {
        Some(Signal::Load)
    } else {
        None
    };
    let signal = match system {
        Some(found) => found,
        None if infrastructure => return None,
        None => middleware_signal(all_words, facts, part)?,
    };
    let mut classified = Classified::none(part);
    classified.signals.push(signal);
    if part != Part::Whole && signal == Signal::Latency {
        classified
            .evidence
            .push("the parts of a histogram or summary of durations".to_owned());
    }
    Some(classified)
}

fn middleware_signal(all_words: &[String], facts: &Facts<'_>, part: Part) -> Option<Signal> {
    let has = |set: &[&str]| all_words.iter().any(|word| set.contains(&word.as_str()));
    let per_second = all_words
        .windows(2)
        .any(|pair| pair[0] == "per" && matches!(pair[1].as_str(), "second" | "sec" | "s"));
    if per_second && has(&REQUEST_WORDS) {
        return Some(Signal::RequestRate);
    }
    let timed = has(&TIME_WORDS);
    if part != Part::Whole && timed {
        return timed_part_signal(facts, part);
    }
    let latency_pair = all_words.windows(2).any(|pair| {
        LATENCY_PAIRS
            .iter()
            .any(|(first, second)| pair[0] == *first && pair[1] == *second)
    });
    if has(&LATENCY_WORDS) || latency_pair || (timed && has(&REQUEST_WORDS)) {
        return Some(Signal::Latency);
    }
    if has(&ERROR_WORDS) {
        return Some(Signal::Errors);
    }
    if has(&RATE_WORDS) {
        return Some(Signal::RequestRate);
    }
    if has(&REQUEST_WORDS) && !has(&NOT_A_RATE_WORDS) && part != Part::Bucket {
        return Some(Signal::RequestRate);
    }
    None
}

/// `load1`, `load5`, `load15`, `loadavg`, or `load` alone or followed by `1`, `avg`, `average`.
fn says_load(all_words: &[String]) -> bool {
    const AFTER_LOAD: [&str; 8] = ["1", "5", "15", "1m", "5m", "15m", "avg", "average"];
    all_words
        .iter()
        .enumerate()
        .any(|(position, word)| match word.strip_prefix("load") {
            Some("1" | "5" | "15" | "avg") => true,
            Some("") => match all_words.get(position + 1) {
                Some(next) => AFTER_LOAD.contains(&next.as_str()),
                None => true,
            },
            _ => false,
        })
}

/// The words of a name or a sentence, lowercase: split at anything not a letter or digit and
/// where a lowercase letter is followed by an uppercase one (`MemAvailable`).
pub fn words(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut current = String::new();
    let mut previous_lowercase = false;
    for character in text.chars() {
        if !character.is_alphanumeric() {
            if !current.is_empty() {
                found.push(std::mem::take(&mut current));
            }
            previous_lowercase = false;
            continue;
        }
        if character.is_uppercase() && previous_lowercase && !current.is_empty() {
            found.push(std::mem::take(&mut current));
        }
        previous_lowercase = character.is_lowercase() || character.is_ascii_digit();
        current.extend(character.to_lowercase());
    }
    if !current.is_empty() {
        found.push(current);
    }
    found
}

/// The unit a name declares by the suffix conventions (`_seconds`, `_bytes`, ...), or the unit
/// of the metadata; empty when neither says.
pub fn unit_of(name: &str, declared_unit: &str) -> String {
    let (part, base) = Part::split(name);
    if part == Part::Count {
        return String::new();
    }
    let without_total = base.strip_suffix("_total").unwrap_or(base);
    let last = without_total
        .rsplit(['_', '.'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let unit = match last.as_str() {
        "seconds" => "seconds",
        "milliseconds" | "ms" => "ms",
        "microseconds" | "us" => "us",
        "bytes" => "bytes",
        "ratio" => "ratio",
        "percent" | "pct" => "percent",
        _ => declared_unit.trim(),
    };
    unit.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    fn signals_of(
        name: &str,
        label_names: &[&str],
        metric_type: MetricType,
        help: &str,
    ) -> Vec<Signal> {
        let owned = labels(label_names);
        classify(&Facts {
            name,
            labels: Some(&owned),
            metric_type,
            help,
        })
        .signals
    }

    #[test]
    fn exporter_families_fill_their_signals() {
        use Signal::*;
        let unknown = MetricType::Unknown;
        assert_eq!(
            signals_of("node_cpu_seconds_total", &["cpu", "mode"], unknown, ""),
            [Cpu]
        );
        assert_eq!(
            signals_of("node_memory_MemAvailable_bytes", &[], unknown, ""),
            [Memory]
        );
        assert_eq!(signals_of("node_load1", &[], unknown, ""), [Load]);
        assert_eq!(
            signals_of("process_cpu_seconds_total", &[], unknown, ""),
            [Cpu]
        );
        assert_eq!(
            signals_of("http_requests_total", &["code", "method"], unknown, ""),
            [RequestRate, Errors]
        );
        assert_eq!(
            signals_of("http_requests_total", &["method"], unknown, ""),
            [RequestRate]
        );
        assert_eq!(
            signals_of(
                "http_server_requests_seconds_count",
                &["status", "uri"],
                unknown,
                ""
            ),
            [RequestRate, Errors]
        );
        assert_eq!(
            signals_of("http_server_requests_seconds_sum", &["status"], unknown, ""),
            [Latency]
        );
        assert_eq!(
            signals_of("http_server_requests_seconds_max", &["status"], unknown, ""),
            [Latency]
        );
        assert_eq!(
            signals_of(
                "http_request_duration_seconds_bucket",
                &["le", "code"],
                unknown,
                ""
            ),
            [Latency]
        );
        assert_eq!(
            signals_of(
                "http_server_duration_milliseconds_bucket",
                &["le", "http_status_code"],
                unknown,
                ""
            ),
            [Latency]
        );
        assert_eq!(
            signals_of(
                "http_server_request_duration_seconds_count",
                &["http_response_status_code"],
                unknown,
                ""
            ),
            [RequestRate, Errors]
        );
        assert_eq!(
            signals_of("grpc_server_handled_total", &["grpc_code"], unknown, ""),
            [RequestRate, Errors]
        );
        assert_eq!(
            signals_of("grpc_server_handling_seconds_bucket", &["le"], unknown, ""),
            [Latency]
        );
        assert_eq!(
            signals_of(
                "envoy_cluster_upstream_rq_xx",
                &["envoy_response_code_class"],
                unknown,
                ""
            ),
            [RequestRate, Errors]
        );
        assert_eq!(
            signals_of(
                "haproxy_backend_http_responses_total",
                &["code"],
                unknown,
                ""
            ),
            [RequestRate, Errors]
        );
    }

    #[test]
    fn names_are_read_by_their_words_and_infrastructure_stays_system() {
        use Signal::*;
        let gauge = MetricType::Gauge;
        let counter = MetricType::Counter;
        assert_eq!(signals_of("latency_ms", &[], gauge, ""), [Latency]);
        assert_eq!(signals_of("cpu.user", &[], gauge, ""), [Cpu]);
        assert_eq!(signals_of("heapUsed", &[], gauge, ""), [Memory]);
        assert_eq!(signals_of("system_load_average_1m", &[], gauge, ""), [Load]);
        assert_eq!(signals_of("http.errors", &[], gauge, ""), [Errors]);
        assert_eq!(signals_of("checkout_qps", &[], gauge, ""), [RequestRate]);
        assert_eq!(
            signals_of(
                "orders_db_query_duration_seconds_bucket",
                &["le"],
                MetricType::Histogram,
                ""
            ),
            [Latency]
        );
        assert_eq!(
            signals_of("orders_db_query_duration_seconds_count", &[], counter, ""),
            [RequestRate]
        );
        assert_eq!(signals_of("app_response_time", &[], gauge, ""), [Latency]);
        // In-flight gauges and sizes are not a rate; a download is not a load average.
        assert!(signals_of("http_requests_in_flight", &[], gauge, "").is_empty());
        assert!(signals_of(
            "http_request_size_bytes_bucket",
            &["le"],
            MetricType::Histogram,
            ""
        )
        .is_empty());
        assert!(signals_of("download_bytes_total", &[], counter, "").is_empty());
        assert!(signals_of("payload_size", &[], gauge, "").is_empty());
        // Runtime families fill system signals only.
        assert!(signals_of(
            "go_gc_duration_seconds",
            &["quantile"],
            MetricType::Summary,
            ""
        )
        .is_empty());
        assert!(signals_of("node_network_receive_errs_total", &["device"], counter, "").is_empty());
        assert_eq!(
            signals_of("go_memstats_heap_inuse_bytes", &[], gauge, ""),
            [Memory]
        );
        assert!(signals_of("up", &[], gauge, "").is_empty());
    }

    #[test]
    fn help_text_speaks_when_the_name_does_not() {
        let classified = classify(&Facts {
            name: "shop_hits_ok_total",
            labels: Some(&labels(&["code"])),
            metric_type: MetricType::Counter,
            help: "",
        });
        assert_eq!(classified.signals, [Signal::RequestRate, Signal::Errors]);
        let from_help = classify(&Facts {
            name: "shop_served_total",
            labels: Some(&[]),
            metric_type: MetricType::Counter,
            help: "Total number of HTTP requests served.",
        });
        assert_eq!(from_help.signals, [Signal::RequestRate]);
        assert!(
            from_help.evidence[0].contains("help text"),
            "{:?}",
            from_help.evidence
        );
        let unknown = classify(&Facts {
            name: "shop_basket_items",
            labels: Some(&[]),
            metric_type: MetricType::Gauge,
            help: "Items in open baskets.",
        });
        assert!(unknown.signals.is_empty());
    }

    #[test]
    fn buckets_without_le_are_not_latency_once_labels_are_known() {
        let without_le = classify(&Facts {
            name: "http_request_duration_seconds_bucket",
            labels: Some(&labels(&["path"])),
            metric_type: MetricType::Unknown,
            help: "",
        });
        assert!(without_le.signals.is_empty());
        let not_known_yet = classify(&Facts {
            name: "http_request_duration_seconds_bucket",
            labels: None,
            metric_type: MetricType::Unknown,
            help: "",
        });
        assert_eq!(not_known_yet.signals, [Signal::Latency]);
    }

    #[test]
    fn words_and_units_follow_the_suffix_conventions() {
        assert_eq!(
            words("node_memory_MemAvailable_bytes"),
            ["node", "memory", "mem", "available", "bytes"]
        );
        assert_eq!(words("http.5xx-rate"), ["http", "5xx", "rate"]);
        assert_eq!(
            unit_of("http_request_duration_seconds_bucket", ""),
            "seconds"
        );
        assert_eq!(unit_of("http_request_duration_seconds_count", ""), "");
        assert_eq!(unit_of("node_cpu_seconds_total", ""), "seconds");
        assert_eq!(unit_of("latency_ms", ""), "ms");
        assert_eq!(unit_of("http_server_duration_bucket", "ms"), "ms");
        assert_eq!(unit_of("node_load1", ""), "");
    }
}
