//! Discovery over recorded series lists, as `/api/v1/series` returns them.

use std::collections::BTreeMap;

use vigil_guard::apps::selector::normalize_selector;
use vigil_ingest::prometheus::FamilyMetadata;

use super::params::duration_text;
use super::*;
use crate::names::{self, Facts};
use crate::signals::{MetricType, Signal};

const SHOP: &str = "job=\"shop\"";

fn params() -> DiscoveryParams {
    DiscoveryParams::new("http://prom:9090/", SHOP, "instance", 30).unwrap()
}

/// One series: `__name__` first, then label pairs.
fn series(name: &str, labels: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut one: BTreeMap<String, String> = labels
        .iter()
        .map(|(label, value)| (label.to_string(), value.to_string()))
        .collect();
    one.insert("__name__".into(), name.into());
    one.insert("job".into(), "shop".into());
    one
}

fn declared(metric_type: &str, help: &str, unit: &str) -> FamilyMetadata {
    FamilyMetadata {
        metric_type: metric_type.into(),
        help: help.into(),
        unit: unit.into(),
    }
}

fn discover_series(
    recorded: &[BTreeMap<String, String>],
    metadata: &[(&str, FamilyMetadata)],
) -> Discovery {
    let metadata: BTreeMap<String, FamilyMetadata> = metadata
        .iter()
        .map(|(family, found)| (family.to_string(), found.clone()))
        .collect();
    discover(
        &Inventory::from_series(recorded, "instance", metadata),
        &params(),
    )
}

fn query_of(discovery: &Discovery, signal: Signal) -> String {
    discovery
        .found_signal(signal)
        .unwrap_or_else(|| panic!("{signal:?} not found: {:?}", discovery.missing))
        .query
        .query
        .clone()
}

/// Node exporter, a client library histogram with a status label, and noise, on three hosts.
fn node_and_histogram_fleet() -> Vec<BTreeMap<String, String>> {
    let mut recorded = Vec::new();
    for host in ["h1", "h2", "h3"] {
        let on = |extra: &[(&'static str, &'static str)]| {
            let mut labels = vec![("instance", host)];
            labels.extend_from_slice(extra);
            labels
        };
        for mode in ["idle", "user", "system"] {
            recorded.push(series(
                "node_cpu_seconds_total",
                &on(&[("cpu", "0"), ("mode", mode)]),
            ));
        }
        for name in [
            "node_memory_MemAvailable_bytes",
            "node_memory_MemTotal_bytes",
            "node_memory_Cached_bytes",
            "node_load1",
            "node_load5",
            "http_requests_in_flight",
            "up",
        ] {
            recorded.push(series(name, &on(&[])));
        }
        recorded.push(series(
            "node_network_receive_errs_total",
            &on(&[("device", "eth0")]),
        ));
        recorded.push(series(
            "go_gc_duration_seconds",
            &on(&[("quantile", "0.5")]),
        ));
        for code in ["200", "500"] {
            for bound in ["0.1", "+Inf"] {
                recorded.push(series(
                    "http_request_duration_seconds_bucket",
                    &on(&[("code", code), ("le", bound)]),
                ));
            }
            recorded.push(series(
                "http_request_duration_seconds_count",
                &on(&[("code", code)]),
            ));
            recorded.push(series(
                "http_request_duration_seconds_sum",
                &on(&[("code", code)]),
            ));
        }
    }
    recorded
}

#[test]
fn node_exporter_and_a_client_histogram_fill_every_metric_signal() {
    let discovery = discover_series(&node_and_histogram_fleet(), &[]);
    assert!(discovery.missing.is_empty(), "{:?}", discovery.missing);
    assert!(discovery.notes.is_empty(), "{:?}", discovery.notes);
    assert_eq!(discovery.hosts, ["h1", "h2", "h3"]);
    assert_eq!(discovery.params.prometheus, "http://prom:9090");
    assert_eq!(
        query_of(&discovery, Signal::Cpu),
        "1 - avg by (instance) (rate(node_cpu_seconds_total{job=\"shop\",mode=\"idle\"}[2m]))"
    );
    assert_eq!(
        query_of(&discovery, Signal::Memory),
        "1 - sum by (instance) (node_memory_MemAvailable_bytes{job=\"shop\"}) / \
         sum by (instance) (node_memory_MemTotal_bytes{job=\"shop\"})"
    );
    assert_eq!(
        query_of(&discovery, Signal::Load),
        "max by (instance) (node_load1{job=\"shop\"})"
    );
    let requests =
        "sum by (instance) (rate(http_request_duration_seconds_count{job=\"shop\"}[2m]))";
    assert_eq!(query_of(&discovery, Signal::RequestRate), requests);
    assert_eq!(
        query_of(&discovery, Signal::Errors),
        format!(
            "(sum by (instance) (rate(http_request_duration_seconds_count{{job=\"shop\",code=~\"5..\"}}[2m])) \
             or {requests} * 0) / {requests}"
        )
    );
    assert_eq!(
        query_of(&discovery, Signal::Latency),
        "histogram_quantile(0.99, sum by (instance, le) \
         (rate(http_request_duration_seconds_bucket{job=\"shop\"}[2m])))"
    );
    let latency = discovery.found_signal(Signal::Latency).unwrap();
    assert_eq!(latency.query.metric, "latency_p99_seconds");
    assert_eq!(latency.meta.unit, "seconds");
    assert!(latency.meta.critical);
    assert_eq!(latency.hosts, 3);
    assert_eq!(latency.convention, "client library histogram");
    assert!(latency
        .alternatives
        .contains(&"http_request_duration_seconds_sum".to_string()));
    let metrics: Vec<&str> = discovery
        .found
        .iter()
        .map(|found| found.query.metric.as_str())
        .collect();
    assert_eq!(
        metrics,
        [
            "cpu_busy_ratio",
            "memory_used_ratio",
            "load1",
            "requests_per_second",
            "latency_p99_seconds",
            "error_ratio"
        ]
    );
}

#[test]
fn micrometer_and_process_metrics_without_node_exporter_leave_load_missing() {
    let mut recorded = Vec::new();
    for host in ["app1:8080", "app2:8080"] {
        for status in ["200", "503"] {
            for part in ["count", "sum", "max"] {
                recorded.push(series(
                    &format!("http_server_requests_seconds_{part}"),
                    &[("instance", host), ("status", status), ("uri", "/cart")],
                ));
            }
        }
        recorded.push(series("process_cpu_seconds_total", &[("instance", host)]));
        recorded.push(series(
            "process_resident_memory_bytes",
            &[("instance", host)],
        ));
        for (area, id) in [("heap", "G1 Eden Space"), ("nonheap", "Metaspace")] {
            recorded.push(series(
                "jvm_memory_used_bytes",
                &[("instance", host), ("area", area), ("id", id)],
            ));
        }
    }
    let discovery = discover_series(
        &recorded,
        &[(
            "http_server_requests_seconds_max",
            declared("gauge", "", ""),
        )],
    );
    assert_eq!(
        query_of(&discovery, Signal::Cpu),
        "sum by (instance) (rate(process_cpu_seconds_total{job=\"shop\"}[2m]))"
    );
    assert_eq!(
        query_of(&discovery, Signal::Memory),
        "sum by (instance) (process_resident_memory_bytes{job=\"shop\"})"
    );
    assert_eq!(
        query_of(&discovery, Signal::Latency),
        "sum by (instance) (rate(http_server_requests_seconds_sum{job=\"shop\"}[2m])) / \
         sum by (instance) (rate(http_server_requests_seconds_count{job=\"shop\"}[2m]))"
    );
    assert_eq!(
        discovery
            .found_signal(Signal::Latency)
            .unwrap()
            .query
            .metric,
        "latency_mean_seconds"
    );
    assert!(query_of(&discovery, Signal::Errors).contains("status=~\"5..\""));
    assert_eq!(
        discovery.found_signal(Signal::Cpu).unwrap().meta.unit,
        "cores"
    );
    let load = discovery
        .missing_signal(Signal::Load)
        .expect("load is missing");
    assert!(load.prompt.starts_with("no load metric found for job=\"shop\"; give a PromQL query returning one series per host (label instance)"), "{}", load.prompt);
    assert!(load.prompt.contains("node_load1"), "{}", load.prompt);
    assert!(load.prompt.contains("job of its own"), "{}", load.prompt);
    assert_eq!(discovery.missing.len(), 1);
}

#[test]
fn grpc_codes_and_nginx_totals_get_their_own_error_matchers() {
    let mut grpc = Vec::new();
    let mut nginx = Vec::new();
    for host in ["g1", "g2"] {
        for code in ["OK", "NotFound", "Internal"] {
            grpc.push(series(
                "grpc_server_handled_total",
                &[
                    ("instance", host),
                    ("grpc_code", code),
                    ("grpc_method", "Get"),
                ],
            ));
        }
        grpc.push(series(
            "grpc_server_handling_seconds_bucket",
            &[("instance", host), ("le", "+Inf")],
        ));
        for code in ["2xx", "5xx", "total"] {
            nginx.push(series(
                "nginx_vts_server_requests_total",
                &[("instance", host), ("code", code), ("host", "shop.example")],
            ));
        }
    }
    let discovered = discover_series(&grpc, &[]);
    assert!(query_of(&discovered, Signal::Errors).starts_with(
        "(sum by (instance) (rate(grpc_server_handled_total{job=\"shop\",grpc_code=~\"Unknown|DeadlineExceeded|Unimplemented|Internal|Unavailable|DataLoss\"}[2m]))"
    ));
    assert_eq!(
        discovered.found_signal(Signal::Latency).unwrap().convention,
        "go-grpc-prometheus"
    );

    let vts = discover_series(&nginx, &[]);
    let all = "sum by (instance) (rate(nginx_vts_server_requests_total{job=\"shop\",code!=\"total\"}[2m]))";
    assert_eq!(query_of(&vts, Signal::RequestRate), all);
    assert_eq!(
        query_of(&vts, Signal::Errors),
        format!(
            "(sum by (instance) (rate(nginx_vts_server_requests_total{{job=\"shop\",code=~\"5..\"}}[2m])) \
             or {all} * 0) / {all}"
        )
    );
    let latency = vts.missing_signal(Signal::Latency).unwrap();
    assert!(
        latency.prompt.contains("latency_p99_seconds"),
        "{}",
        latency.prompt
    );
}

#[test]
fn series_without_the_host_label_are_reported_not_proposed() {
    let recorded: Vec<BTreeMap<String, String>> = ["n1", "n2"]
        .iter()
        .map(|host| series("node_load1", &[("host", host)]))
        .collect();
    let discovery = discover_series(&recorded, &[]);
    assert!(discovery.found.is_empty());
    let load = discovery.missing_signal(Signal::Load).unwrap();
    assert!(
        load.prompt
            .ends_with("node_load1 has no label instance (its labels: host, job): give host_label"),
        "{}",
        load.prompt
    );
    assert!(
        discovery.notes[0].contains("carry the label instance"),
        "{:?}",
        discovery.notes
    );
    let nothing = discover_series(&[], &[]);
    assert_eq!(nothing.missing.len(), 6);
    assert_eq!(
        nothing.notes,
        ["no series match {job=\"shop\"} in the last hour: check the selector"]
    );
}

#[test]
fn metadata_types_help_and_units_are_read() {
    let mut recorded = Vec::new();
    for host in ["h1", "h2"] {
        recorded.push(series("shop_served_total", &[("instance", host)]));
        recorded.push(series("shop_failed_total", &[("instance", host)]));
        recorded.push(series(
            "http_server_duration_bucket",
            &[("instance", host), ("le", "100")],
        ));
        recorded.push(series("shop_basket_items", &[("instance", host)]));
    }
    let discovery = discover_series(
        &recorded,
        &[
            (
                "shop_served_total",
                declared("counter", "Total number of HTTP requests served.", ""),
            ),
            (
                "http_server_duration",
                declared(
                    "histogram",
                    "Measures the duration of inbound HTTP requests.",
                    "ms",
                ),
            ),
            (
                "shop_basket_items",
                declared("gauge", "Items in open baskets.", ""),
            ),
        ],
    );
    let requests = discovery.found_signal(Signal::RequestRate).unwrap();
    assert_eq!(requests.help, "Total number of HTTP requests served.");
    assert_eq!(requests.metric_type, MetricType::Counter);
    assert!(
        requests.evidence[0].contains("help text"),
        "{:?}",
        requests.evidence
    );
    let latency = discovery.found_signal(Signal::Latency).unwrap();
    assert_eq!(latency.query.metric, "latency_p99_ms");
    // An error counter without a status label is divided by the request rate.
    assert_eq!(
        query_of(&discovery, Signal::Errors),
        "(sum by (instance) (rate(shop_failed_total{job=\"shop\"}[2m])) or \
         (sum by (instance) (rate(shop_served_total{job=\"shop\"}[2m]))) * 0) / \
         (sum by (instance) (rate(shop_served_total{job=\"shop\"}[2m])))"
    );
    let everything: Vec<&str> = discovery
        .found
        .iter()
        .flat_map(|found| found.metrics.iter().chain(found.alternatives.iter()))
        .map(String::as_str)
        .collect();
    assert!(!everything.contains(&"shop_basket_items"));
}

#[test]
fn hosts_that_differ_between_metrics_are_noted() {
    let mut recorded = Vec::new();
    for host in ["10.0.0.1", "10.0.0.2"] {
        recorded.push(series(
            "node_load1",
            &[("instance", &format!("{host}:9100"))],
        ));
        recorded.push(series(
            "http_requests_total",
            &[("instance", &format!("{host}:8080")), ("code", "200")],
        ));
    }
    let discovery = discover_series(&recorded, &[]);
    assert_eq!(discovery.found.len(), 3);
    assert_eq!(discovery.notes.len(), 1);
    assert!(
        discovery.notes[0].starts_with("the metrics report different instance values (http_requests_total: 2 (e.g. 10.0.0.1:8080); node_load1: 2 (e.g. 10.0.0.1:9100))"),
        "{}",
        discovery.notes[0]
    );
}

#[test]
fn every_proposed_metric_name_reads_back_as_its_signal() {
    let mut proposals = discover_series(&node_and_histogram_fleet(), &[]).found;
    let mut summary = Vec::new();
    for host in ["h1", "h2"] {
        for quantile in ["0.5", "0.99"] {
            summary.push(series(
                "http_server_requests_seconds",
                &[("instance", host), ("quantile", quantile)],
            ));
        }
        summary.push(series("checkout_qps", &[("instance", host)]));
        summary.push(series("cpu_percent", &[("instance", host)]));
        summary.push(series("heap_used_bytes", &[("instance", host)]));
        summary.push(series("http_errors_total", &[("instance", host)]));
    }
    let other = discover_series(&summary, &[("checkout_qps", declared("gauge", "", ""))]);
    assert_eq!(
        query_of(&other, Signal::Latency),
        "max by (instance) (http_server_requests_seconds{job=\"shop\",quantile=\"0.99\"})"
    );
    proposals.extend(other.found);
    assert!(proposals.len() >= 10);
    for found in proposals {
        let classified = names::classify(&Facts {
            name: &found.query.metric,
            labels: Some(&[]),
            metric_type: MetricType::Gauge,
            help: "",
        });
        assert_eq!(
            classified.signals.first(),
            Some(&found.signal),
            "{}",
            found.query.metric
        );
    }
}

#[test]
fn selectors_and_parameters_are_checked() {
    assert_eq!(
        normalize_selector("{job=\"shop\"}").as_deref(),
        Some("job=\"shop\"")
    );
    assert_eq!(
        normalize_selector(" app = 'shop' , env=~\"prod|canary\", ").as_deref(),
        Some("app='shop',env=~\"prod|canary\"")
    );
    assert_eq!(
        normalize_selector("team!=`a,b`").as_deref(),
        Some("team!=`a,b`")
    );
    assert_eq!(
        normalize_selector("job=\"a\\\"b\"").as_deref(),
        Some("job=\"a\\\"b\"")
    );
    for bad in [
        "",
        "{}",
        "shop",
        "job=shop",
        "job=\"shop",
        "job=\"a\" env=\"b\"",
        "1a=\"x\"",
        "{job=\"a\"",
    ] {
        assert_eq!(normalize_selector(bad), None, "{bad}");
    }
    assert!(matches!(
        DiscoveryParams::new("prom:9090", SHOP, "instance", 30),
        Err(DiscoveryError::Url(_))
    ));
    assert!(matches!(
        DiscoveryParams::new("http://p", "shop", "instance", 30),
        Err(DiscoveryError::Selector(_))
    ));
    assert!(matches!(
        DiscoveryParams::new("http://p", SHOP, "in-stance", 30),
        Err(DiscoveryError::HostLabel(_))
    ));
    assert!(matches!(
        DiscoveryParams::new("http://p", SHOP, "instance", 0),
        Err(DiscoveryError::Step)
    ));
    assert_eq!(
        DiscoveryParams::new("http://p", SHOP, "host", 60)
            .unwrap()
            .rate_window_seconds,
        240
    );
    assert_eq!(duration_text(120), "2m");
    assert_eq!(duration_text(90), "90s");
}

#[test]
fn what_a_request_leaves_out_comes_from_the_same_server_or_the_defaults() {
    use vigil_guard::apps::PullSource;
    let resolve = |asked: AskedParams<'_>, configured: Option<&PullSource>| {
        DiscoveryParams::resolve("shop", asked, configured)
    };
    assert_eq!(resolve(AskedParams::default(), None), Ok(None));
    let only_selector = AskedParams {
        selector: Some(SHOP),
        ..AskedParams::default()
    };
    assert_eq!(resolve(only_selector, None), Err(DiscoveryError::NoServer));
    let asked_server = AskedParams {
        prometheus: Some("http://prom:9090/"),
        ..AskedParams::default()
    };
    let defaults = resolve(asked_server, None).unwrap().unwrap();
    assert_eq!(
        (defaults.selector.as_str(), defaults.host_label.as_str()),
        (SHOP, "instance")
    );
    assert_eq!(defaults.step_seconds, 30);
    let configured = PullSource {
        url: "http://prom:9090".into(),
        host_label: "host".into(),
        step_seconds: 60,
        queries: vec![],
        selector: Some("app=\"shop\"".into()),
    };
    let inherited = resolve(AskedParams::default(), Some(&configured))
        .unwrap()
        .unwrap();
    assert_eq!(
        (inherited.selector.as_str(), inherited.host_label.as_str()),
        ("app=\"shop\"", "host")
    );
    assert_eq!(inherited.step_seconds, 60);
    let elsewhere = AskedParams {
        prometheus: Some("http://other:9090"),
        ..AskedParams::default()
    };
    let other_server = resolve(elsewhere, Some(&configured)).unwrap().unwrap();
    assert_eq!(
        (
            other_server.prometheus.as_str(),
            other_server.host_label.as_str()
        ),
        ("http://other:9090", "instance")
    );
}
