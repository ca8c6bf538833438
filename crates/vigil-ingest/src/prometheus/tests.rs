//! The client against canned answers from a loopback listener.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::{self, JoinHandle};

use super::*;

/// Reads one HTTP request (headers and a `Content-Length` body) and returns it as text.
fn read_request(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let count = stream.read(&mut buffer).expect("reads");
        if count == 0 {
            break;
        }
        received.extend_from_slice(&buffer[..count]);
        let text = String::from_utf8_lossy(&received).to_string();
        let Some(header_end) = text.find("\r\n\r\n") else {
            continue;
        };
        let length = text[..header_end]
            .lines()
            .find_map(|line| {
                let lower = line.to_ascii_lowercase();
                lower
                    .strip_prefix("content-length:")
                    .map(|value| value.trim().parse::<usize>().expect("length"))
            })
            .unwrap_or(0);
        if received.len() >= header_end + 4 + length {
            return text;
        }
    }
    String::from_utf8_lossy(&received).to_string()
}

/// Answers one request with `status` and `body`; the thread returns the request.
fn serve_once(status: &str, body: &str) -> (String, JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
    let address = listener.local_addr().expect("address");
    let answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let handle = thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accepts");
        let request = read_request(&mut stream);
        stream.write_all(answer.as_bytes()).expect("writes");
        request
    });
    (format!("http://{address}/"), handle)
}

fn range(query: &str) -> RangeQuery {
    RangeQuery {
        query: query.into(),
        host_label: "host".into(),
        metric: "latency".into(),
        app: "shop".into(),
        counter: false,
        start: 1_700_000_000,
        end: 1_700_000_060,
        step_seconds: 30,
    }
}

fn ask(status: &str, body: &str) -> (Result<RangeResult, PrometheusError>, String) {
    let (url, server) = serve_once(status, body);
    let client = PrometheusClient::new(&url, PrometheusOptions::default()).expect("client");
    let result = client.query_range(&range("sum by (host) (rate(x[5m]))"));
    (result, server.join().expect("server"))
}

#[test]
fn a_matrix_becomes_one_series_per_host() {
    let body = r#"{"status":"success","warnings":["slow"],"data":{"resultType":"matrix","result":[
        {"metric":{"host":"h1"},"values":[[1700000000,"1.5"],[1700000030.5,"NaN"]]},
        {"metric":{"host":"h2","zone":"a"},"values":[[1700000000,"+Inf"],[1700000030,"-Inf"]]},
        {"metric":{"__name__":"x","job":"j"},"values":[[1700000000,"1"]]},
        {"metric":{},"values":[]}
    ]}}"#;
    let (result, request) = ask("200 OK", body);
    let result = result.expect("answer");
    assert!(
        request.starts_with("POST /api/v1/query_range HTTP/1.1"),
        "{request}"
    );
    assert!(
        request.contains("query=sum+by+(host)+(rate(x%5B5m%5D))"),
        "{request}"
    );
    assert!(request.contains("start=1700000000&end=1700000060&step=30&timeout=60s"));
    let hosts: Vec<&str> = result
        .chunk
        .series
        .iter()
        .map(|key| key.host.as_str())
        .collect();
    assert_eq!(hosts, vec!["h1", "h2"]);
    assert!(result
        .chunk
        .series
        .iter()
        .all(|key| key.metric == "latency" && key.app == "shop" && !key.counter));
    let points = &result.chunk.points;
    assert_eq!(
        (points[0].series, points[0].ms, points[0].value),
        (0, 1_700_000_000_000, 1.5)
    );
    assert_eq!(points[1].ms, 1_700_000_030_500);
    assert!(points[1].value.is_nan());
    assert_eq!(points[2].value, f64::INFINITY);
    assert_eq!(points[3].value, f64::NEG_INFINITY);
    assert_eq!(
        result.without_host,
        vec![r#"x{job="j"}"#.to_owned(), "{}".to_owned()]
    );
    assert_eq!(result.warnings, vec!["slow".to_owned()]);
}

#[test]
fn prometheus_errors_are_passed_on() {
    let (result, _) = ask(
        "400 Bad Request",
        r#"{"status":"error","errorType":"bad_data","error":"parse error at char 5"}"#,
    );
    assert_eq!(
        result.expect_err("refused").to_string(),
        "prometheus refused the query (http 400, bad_data): parse error at char 5"
    );
    let (result, _) = ask("502 Bad Gateway", "<html>upstream gone</html>");
    assert_eq!(
        result.expect_err("not json"),
        PrometheusError::Http {
            status: 502,
            body: "<html>upstream gone</html>".into()
        }
    );
    let (result, _) = ask(
        "200 OK",
        r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
    );
    assert_eq!(
        result.expect_err("vector").to_string(),
        r#"prometheus answer is not valid: result type "vector" where a matrix was expected"#
    );
    let (result, _) = ask(
        "200 OK",
        r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"host":"h1"},"values":[[1,"x"]]}]}}"#,
    );
    assert_eq!(
        result.expect_err("bad value").to_string(),
        r#"prometheus answer is not valid: sample value "x" is not a number"#
    );
}

#[test]
fn two_series_of_one_host_are_refused() {
    let (result, _) = ask(
        "200 OK",
        r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"host":"h1","code":"200"},"values":[]},
            {"metric":{"host":"h1","code":"500"},"values":[]}]}}"#,
    );
    assert_eq!(
        result.expect_err("duplicate"),
        PrometheusError::DuplicateHost {
            host: "h1".into(),
            label: "host".into()
        }
    );
}

#[test]
fn limits_and_bad_ranges_are_refused_before_or_after_the_call() {
    let client =
        PrometheusClient::new("http://127.0.0.1:9", PrometheusOptions::default()).expect("client");
    let mut no_step = range("up");
    no_step.step_seconds = 0;
    assert!(matches!(
        client.query_range(&no_step),
        Err(PrometheusError::InvalidQuery(_))
    ));
    let mut long = range("up");
    long.end = long.start + 11_000 * 30;
    assert_eq!(
        client.query_range(&long).expect_err("long").to_string(),
        "invalid range query: 11001 points per series, more than Prometheus' 11000: \
         use a longer step or a shorter range"
    );
    let mut backwards = range("up");
    backwards.end = backwards.start - 1;
    assert!(client.query_range(&backwards).is_err());
    assert!(matches!(
        PrometheusClient::new("127.0.0.1:9090", PrometheusOptions::default()),
        Err(PrometheusError::InvalidUrl { .. })
    ));

    let body = r#"{"status":"success","data":{"resultType":"matrix","result":[
        {"metric":{"host":"h1"},"values":[[1,"1"],[2,"2"]]}]}}"#;
    let (url, server) = serve_once("200 OK", body);
    let small = PrometheusOptions {
        max_points: 1,
        ..PrometheusOptions::default()
    };
    let limited = PrometheusClient::new(&url, small).expect("client");
    assert_eq!(
        limited.query_range(&range("up")).expect_err("points"),
        PrometheusError::TooLarge {
            what: "points",
            limit: 1
        }
    );
    server.join().expect("server");

    let (url, server) = serve_once("200 OK", body);
    let tiny = PrometheusOptions {
        max_response_bytes: 10,
        ..PrometheusOptions::default()
    };
    let error = PrometheusClient::new(&url, tiny)
        .expect("client")
        .query_range(&range("up"))
        .expect_err("too large");
    assert!(
        matches!(error, PrometheusError::Transport { .. }),
        "{error}"
    );
    server.join().expect("server");
}

#[test]
fn a_silent_server_times_out_and_a_closed_port_is_a_transport_error() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let holder = thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accepts");
        thread::sleep(Duration::from_millis(1500));
        drop(stream);
    });
    let quick = PrometheusOptions {
        request_timeout: Duration::from_millis(300),
        ..PrometheusOptions::default()
    };
    let error = PrometheusClient::new(&url, quick.clone())
        .expect("client")
        .query_range(&range("up"))
        .expect_err("times out");
    assert!(error.to_string().contains("timeout"), "{error}");
    holder.join().expect("holder");

    let closed = TcpListener::bind("127.0.0.1:0").expect("binds");
    let closed_url = format!("http://{}", closed.local_addr().expect("address"));
    drop(closed);
    let error = PrometheusClient::new(&closed_url, quick)
        .expect("client")
        .query_range(&range("up"))
        .expect_err("refused");
    assert!(
        matches!(error, PrometheusError::Transport { .. }),
        "{error}"
    );
}

/// A client for a server answering one request with `status` and `body`.
fn client_once(status: &str, body: &str) -> (PrometheusClient, JoinHandle<String>) {
    let (url, server) = serve_once(status, body);
    let client = PrometheusClient::new(&url, PrometheusOptions::default()).expect("client");
    (client, server)
}

#[test]
fn label_values_send_the_selectors_and_come_back_sorted() {
    let (client, server) = client_once(
        "200 OK",
        r#"{"status":"success","data":["node_load1","http_requests_total"]}"#,
    );
    let names = client
        .label_values("__name__", &[r#"{job="shop"}"#.to_owned()], 100, 200)
        .expect("names");
    assert_eq!(names, vec!["http_requests_total", "node_load1"]);
    let request = server.join().expect("server");
    let first_line = request.lines().next().expect("request line");
    assert!(
        first_line.starts_with("GET /api/v1/label/__name__/values?match%5B%5D=%7Bjob%3D%22shop%22%7D&start=100&end=200 "),
        "{first_line}"
    );
    let (client, _) = client_once("200 OK", "{}");
    assert_eq!(
        client
            .label_values("bad label", &[], 0, 1)
            .expect_err("refused")
            .to_string(),
        r#"invalid range query: "bad label" is not a label name"#
    );
}

#[test]
fn label_names_and_metadata_are_read_and_errors_passed_on() {
    let (client, server) = client_once(
        "200 OK",
        r#"{"status":"success","data":["le","__name__","instance","job"]}"#,
    );
    let labels = client
        .label_names(&["http_x_bucket".to_owned()], 1, 2)
        .expect("labels");
    assert_eq!(labels, vec!["__name__", "instance", "job", "le"]);
    assert!(server
        .join()
        .expect("server")
        .starts_with("GET /api/v1/labels?match%5B%5D=http_x_bucket&start=1&end=2 "));

    let (client, server) = client_once(
        "200 OK",
        r#"{"status":"success","data":{"http_x":[{"type":"histogram","help":"Request time.","unit":""}]}}"#,
    );
    let declared = client.metadata(Some("http_x")).expect("metadata");
    assert_eq!(
        declared["http_x"],
        vec![FamilyMetadata {
            metric_type: "histogram".into(),
            help: "Request time.".into(),
            unit: String::new(),
        }]
    );
    assert!(server
        .join()
        .expect("server")
        .starts_with("GET /api/v1/metadata?metric=http_x "));
    let (client, _) = client_once("200 OK", r#"{"status":"success","data":{}}"#);
    assert!(client.metadata(None).expect("empty").is_empty());

    let (client, _) = client_once(
        "400 Bad Request",
        r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"match[]\""}"#,
    );
    assert_eq!(
        client
            .label_names(&["{".to_owned()], 1, 2)
            .expect_err("refused")
            .to_string(),
        r#"prometheus refused the query (http 400, bad_data): invalid parameter "match[]""#
    );
}

#[test]
fn plain_selectors_name_their_family_and_computed_queries_do_not() {
    assert_eq!(
        selector_name("node_netstat_Tcp_InSegs"),
        Some("node_netstat_Tcp_InSegs")
    );
    assert_eq!(
        selector_name(" http_x_bucket{job=\"shop\",le=\"0.5\"} "),
        Some("http_x_bucket")
    );
    assert_eq!(selector_name("rate(http_x_total[1m])"), None);
    assert_eq!(selector_name("sum by (host) (x)"), None);
    assert_eq!(selector_name("x{a=\"1\"} / y{b=\"2\"}"), None);
    assert_eq!(selector_name("9x"), None);
}

#[test]
fn a_pulled_series_is_a_counter_when_its_family_is_declared_one() {
    // Node exporter declares its netstat counters `untyped`, its CPU seconds `counter`.
    let (client, server) = client_once(
        "200 OK",
        r#"{"status":"success","data":{"node_softnet_processed":[{"type":"counter","help":"","unit":""}],"node_netstat_Tcp_InSegs":[{"type":"untyped","help":"","unit":""}],"http_x":[{"type":"histogram","help":"","unit":""}]}}"#,
    );
    assert!(client
        .reads_counter("node_softnet_processed{cpu=\"0\"}")
        .expect("metadata"));
    assert!(server
        .join()
        .expect("server")
        .starts_with("GET /api/v1/metadata "));
    for (query, counter) in [
        ("node_netstat_Tcp_InSegs", false),
        ("http_x_count", true),
        ("http_x", false),
    ] {
        let (client, _) = client_once(
            "200 OK",
            r#"{"status":"success","data":{"node_netstat_Tcp_InSegs":[{"type":"untyped","help":"","unit":""}],"http_x":[{"type":"histogram","help":"","unit":""}]}}"#,
        );
        assert_eq!(
            client.reads_counter(query).expect("metadata"),
            counter,
            "{query}"
        );
    }
    // Named as a counter, or computed: no question asked (nothing listens here).
    let client = PrometheusClient::new("http://127.0.0.1:9", PrometheusOptions::default()).unwrap();
    assert!(client.reads_counter("requests_total").unwrap());
    assert!(!client.reads_counter("rate(requests_total[1m])").unwrap());
}
