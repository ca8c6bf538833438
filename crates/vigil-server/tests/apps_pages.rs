//! The Apps pages over HTTP: the list of apps with their onboarding state, an app's report with
//! its found and missing signals, who may change an app's pull source from the page and from
//! where, and, with a real Prometheus, the discovery shown on the page and applied through its
//! form. (`browser.rs` opens the same pages in a real browser.)
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use serde_json::{json, Value};
use support::prometheus::{
    free_port, node_exporter_text, prometheus_or_skip, scrape_config, serve_hosts, Prometheus,
};
use support::{input_value, wait_until, PageAnswer, PageClient, TestServer};
use vigil_core::Clock;

const NOW: i64 = 1_700_000_000;

/// Pushes ten minutes of samples of `metrics` for `app` on `hosts`, through the API.
fn push_samples(server: &TestServer, app: &str, hosts: &[&str], metrics: &[&str]) {
    let mut samples = Vec::new();
    for (host_number, host) in hosts.iter().enumerate() {
        for step in 0..10 {
            for metric in metrics {
                let value = 0.4 + (step % 3) as f64 * 0.01 + host_number as f64 * 0.02;
                samples.push(json!({"host": host, "app": app, "metric": metric,
                    "time": NOW - 600 + step * 60, "value": value}));
            }
        }
    }
    let (status, answer) = server.post(
        "/api/v1/ingest/samples",
        &server.ingest,
        &json!({ "samples": samples }),
    );
    assert_eq!(status, 200, "{answer}");
}

/// Pushes a few log lines of `app` from `host`, one of them an exception.
fn push_logs(server: &TestServer, app: &str, host: &str) {
    let mut lines = Vec::new();
    for second in 0..5 {
        lines.push(json!({"host": host, "app": app, "time": NOW - 60 + second,
            "line": format!("2023-11-14 22:12:{second:02} INFO served GET /cart in {} ms", 10 + second)}));
    }
    lines.push(json!({"host": host, "app": app, "time": NOW - 30,
        "line": "2023-11-14 22:12:50 ERROR payment gateway refused order 8812: timeout"}));
    let (status, answer) = server.post(
        "/api/v1/ingest/logs",
        &server.ingest,
        &json!({ "key": format!("logs-{app}"), "lines": lines }),
    );
    assert_eq!(status, 200, "{answer}");
}

/// The row of `app` in the apps table.
fn app_row<'a>(page: &'a PageAnswer, app: &str) -> &'a str {
    let link = format!("<a href=\"/apps/{app}\">");
    let start = page
        .body
        .find(&link)
        .unwrap_or_else(|| panic!("no row for {app} in {}", page.body));
    let end = page.body[start..].find("</tr>").unwrap() + start;
    &page.body[start..end]
}

/// The row of the coverage table whose header cell is `signal`.
fn coverage_row<'a>(page: &'a PageAnswer, signal: &str) -> &'a str {
    let header = format!("<th scope=\"row\">{signal}</th>");
    let start = page
        .body
        .find(&header)
        .unwrap_or_else(|| panic!("no coverage row for {signal}"));
    let end = page.body[start..].find("</tr>").unwrap() + start;
    &page.body[start..end]
}

/// HTML attribute text back to plain text.
fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The pull queries stored for `app`, as `GET /api/v1/apps` lists them: metric names.
fn stored_metrics(server: &TestServer, app: &str) -> Vec<String> {
    let (status, apps) = server.get("/api/v1/apps", &server.viewer);
    assert_eq!(status, 200, "{apps}");
    apps[app]["prometheus"]["queries"]
        .as_array()
        .map(|queries| {
            queries
                .iter()
                .map(|query| query["metric"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// A server with `cart` (two hosts: system and middleware metrics, and logs), `solo` (one
/// business metric) and `shadow` (settings only, pulling from a closed port).
fn server_with_apps() -> (TestServer, String) {
    let server = TestServer::start(NOW);
    push_samples(
        &server,
        "cart",
        &["a1", "a2"],
        &["cpu", "mem_used_ratio", "latency_ms", "http.errors"],
    );
    push_logs(&server, "cart", "a2");
    push_samples(&server, "solo", &["s1"], &["basket_items"]);
    let closed = format!("http://127.0.0.1:{}", free_port());
    let (status, answer) = server.put(
        "/api/v1/apps/shadow",
        &server.admin,
        &json!({"prometheus": {"url": closed, "queries": [{"metric": "m", "query": "q"}]}}),
    );
    assert_eq!(status, 200, "{answer}");
    (server, closed)
}

#[test]
fn the_list_shows_every_app_with_its_state_hosts_and_coverage() {
    let (server, _) = server_with_apps();
    let mut client = PageClient::new(&server.base);
    let anonymous = client.get("/apps");
    assert_eq!(anonymous.status, 303, "no session: sent to sign in");
    assert_eq!(anonymous.location.as_deref(), Some("/signin?next=%2Fapps"));
    client.sign_in(&server.viewer);
    let list = client.get("/apps");
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(
        list.body
            .contains("<a href=\"/apps\" aria-current=\"page\">Apps</a>"),
        "in the header, marked as the current page"
    );
    assert!(list.body.contains("<caption>Apps by name"));

    let cart = app_row(&list, "cart");
    assert!(cart.contains("<span>connected</span>"), "{cart}");
    assert!(cart.contains("<td>2</td>"), "two hosts: {cart}");
    assert!(cart.contains("found: CPU, memory; missing: load"), "{cart}");
    assert!(
        cart.contains("found: request latency, errors; missing: request rate"),
        "{cart}"
    );
    assert_eq!(cart.matches("<span>covered</span>").count(), 3, "{cart}");

    let solo = app_row(&list, "solo");
    assert!(solo.contains("<span>partly connected</span>"), "{solo}");
    assert!(solo.contains("<td>1</td>"), "{solo}");
    assert_eq!(
        solo.matches("<span>not covered</span>").count(),
        3,
        "{solo}"
    );

    // An app known from its settings alone; the list asks no Prometheus.
    let shadow = app_row(&list, "shadow");
    assert!(shadow.contains("<span>not connected</span>"), "{shadow}");
    assert!(shadow.contains("none yet"), "{shadow}");
    assert!(!list.body.contains("cannot query prometheus"));
    let order: Vec<usize> = ["cart", "shadow", "solo"]
        .iter()
        .map(|app| list.body.find(&format!("/apps/{app}\"")).unwrap())
        .collect();
    assert!(order.windows(2).all(|pair| pair[0] < pair[1]), "by name");
}

#[test]
fn an_app_page_shows_found_and_missing_signals_its_sources_and_next_steps() {
    let (server, _) = server_with_apps();
    let mut client = PageClient::new(&server.base);
    client.sign_in(&server.viewer);
    let page = client.get("/apps/cart");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("<h1>cart</h1>"));
    assert!(page.body.contains("System and middleware metrics arrive."));
    assert!(coverage_row(&page, "CPU").contains("<span>found</span>"));
    assert!(coverage_row(&page, "CPU").contains("<code>cpu</code>"));
    assert!(coverage_row(&page, "load").contains("<span>missing</span>"));
    assert!(coverage_row(&page, "request rate").contains("nothing yet"));
    assert!(coverage_row(&page, "logs").contains("<span>found</span>"));
    // Hosts, metric sources with their signals, log sources and the top exception.
    assert!(page.body.contains("<th scope=\"row\">a1</th>"));
    assert!(page.body.contains("<th scope=\"row\">a2</th>"));
    assert!(page
        .body
        .contains("<th scope=\"row\"><code>latency_ms</code></th><td>request latency"));
    assert!(page
        .body
        .contains("middleware, harmful when it increases, critical"));
    assert!(page.body.contains("payment gateway refused order"));
    assert!(page.body.contains("<dt>Exception lines</dt><dd>1</dd>"));
    // One next step per missing signal, and no pull source yet.
    assert!(page
        .body
        .contains("<li><strong>load</strong> (system): no load metric arrives"));
    assert!(page
        .body
        .contains("<li><strong>request rate</strong> (middleware):"));
    assert!(page.body.contains("The app has no pull source"));
    // Looking in Prometheus: a GET form with labelled fields, the selector guessed.
    assert!(page
        .body
        .contains("<label for=\"discover-prometheus\">Prometheus URL</label>"));
    assert!(page.body.contains("value=\"job=&quot;cart&quot;\""));
    assert!(page.body.contains(
        "id=\"discover-host-label\" name=\"host_label\" type=\"text\" value=\"instance\""
    ));
    assert!(!page.body.contains("action=\"/apps/cart/apply\""));

    let unknown = client.get("/apps/nobody");
    assert_eq!(unknown.status, 404);
    assert!(unknown.body.contains("app nobody is unknown"));
    assert!(
        unknown.body.contains("id=\"discover-prometheus\""),
        "an unknown app can be looked for in prometheus"
    );
    let closed = format!("http://127.0.0.1:{}", free_port());
    let looking = format!(
        "/apps/nobody?prometheus={}&selector=job%3D%22nobody%22&host_label=instance",
        support::form_encode(&closed)
    );
    // Only admins name a server for Vigil to query.
    let refused = client.get(&looking);
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused
        .body
        .contains("only admins may name a prometheus server"));
    let mut admin = PageClient::new(&server.base);
    admin.sign_in(&server.admin);
    let unreachable = admin.get(&looking);
    assert_eq!(unreachable.status, 502);
    assert!(unreachable
        .body
        .contains(&format!("cannot query prometheus at {closed}")));
    assert!(
        unreachable.body.contains(&format!("value=\"{closed}\"")),
        "the form keeps what was typed"
    );
}

#[test]
fn only_an_admin_changes_the_pull_source_from_the_page() {
    let (server, _) = server_with_apps();
    let path = "/apps/shadow";
    let mut viewer = PageClient::new(&server.base);
    viewer.sign_in(&server.viewer);
    let seen = viewer.get(path);
    assert_eq!(seen.status, 200, "{}", seen.body);
    // A viewer is not told the socket's words (they would reveal which ports answer).
    assert!(
        seen.body
            .contains("could not reach the app&#39;s Prometheus"),
        "{}",
        seen.body
    );
    assert!(!seen.body.contains("cannot query prometheus at"));
    assert!(
        seen.body.contains("<td><code>q</code></td>"),
        "the pull query"
    );
    assert!(!seen.body.contains("action=\"/apps/shadow/queries\""));
    assert!(!seen.body.contains("action=\"/apps/shadow/apply\""));
    assert!(seen.body.contains("needs an admin token"));

    // A viewer forging the forms (with their own session value) is refused.
    let viewer_key = input_value(&seen.body, "form_key").unwrap();
    let own_query = [
        ("form_key", viewer_key.as_str()),
        ("metric", "load1"),
        ("query", "max by (instance) (node_load1)"),
    ];
    let forged = viewer.post_form("/apps/shadow/queries", &own_query);
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert!(forged.body.contains("needs admin"), "{}", forged.body);
    let forged_apply = viewer.post_form("/apps/shadow/apply", &[("form_key", &viewer_key)]);
    assert_eq!(forged_apply.status, 403);
    let mut operator = PageClient::new(&server.base);
    operator.sign_in(&server.operator);
    let operator_key = input_value(&operator.get(path).body, "form_key").unwrap();
    let by_operator = operator.post_form(
        "/apps/shadow/queries",
        &[
            ("form_key", &operator_key),
            ("metric", "load1"),
            ("query", "max by (instance) (node_load1)"),
        ],
    );
    assert_eq!(by_operator.status, 403, "operators do not configure apps");
    assert_eq!(stored_metrics(&server, "shadow"), ["m"]);

    let mut admin = PageClient::new(&server.base);
    admin.sign_in(&server.admin);
    let page = admin.get(path);
    assert!(page.body.contains("action=\"/apps/shadow/queries\""));
    assert!(page
        .body
        .contains("<label for=\"own-metric\">Metric name</label>"));
    let key = input_value(&page.body, "form_key").unwrap();
    let admin_query = [
        ("form_key", key.as_str()),
        ("metric", "load1"),
        ("query", "max by (instance) (node_load1)"),
    ];
    let cross_site =
        admin.post_form_from("https://evil.example", "/apps/shadow/queries", &admin_query);
    assert_eq!(cross_site.status, 403);
    let without_key = admin.post_form("/apps/shadow/queries", &admin_query[1..]);
    assert_eq!(without_key.status, 403);
    assert!(without_key.body.contains("session value"));
    let empty = admin.post_form(
        "/apps/shadow/queries",
        &[("form_key", &key), ("metric", "load1"), ("query", " ")],
    );
    assert_eq!(empty.status, 400);
    assert_eq!(
        stored_metrics(&server, "shadow"),
        ["m"],
        "nothing refused was stored"
    );

    // The app's Prometheus does not answer: the query cannot be checked, so it is not stored
    // (an admin adding one where Prometheus answers is in `tests/hardening.rs`).
    let unchecked = admin.post_form("/apps/shadow/queries", &admin_query);
    assert_eq!(unchecked.status, 502, "{}", unchecked.body);
    assert!(
        unchecked.body.contains("cannot check queries[0]"),
        "{}",
        unchecked.body
    );
    assert_eq!(stored_metrics(&server, "shadow"), ["m"]);
}

/// The metrics app `app` declares judged, as stored.
fn declared_metrics(server: &TestServer, app: &str) -> Value {
    let (status, apps) = server.get("/api/v1/apps", &server.viewer);
    assert_eq!(status, 200, "{apps}");
    apps[app]
        .get("metrics")
        .cloned()
        .unwrap_or_else(|| json!([]))
}

#[test]
fn an_admin_declares_and_removes_judged_metrics_on_the_page() {
    let (server, _) = server_with_apps();
    let path = "/apps/cart";
    let mut viewer = PageClient::new(&server.base);
    viewer.sign_in(&server.viewer);
    let seen = viewer.get(path);
    assert!(
        seen.body.contains("The app declares no metric."),
        "{}",
        seen.body
    );
    assert!(!seen.body.contains("action=\"/apps/cart/metrics\""));
    let viewer_key = input_value(&seen.body, "form_key").unwrap();
    let latency = [
        ("form_key", viewer_key.as_str()),
        ("metric", "latency_ms"),
        ("kind", "middleware"),
        ("direction", "increase"),
        ("unit", "ms"),
        ("critical", "on"),
    ];
    let forged = viewer.post_form("/apps/cart/metrics", &latency);
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert_eq!(declared_metrics(&server, "cart"), json!([]));

    let mut admin = PageClient::new(&server.base);
    admin.sign_in(&server.admin);
    let page = admin.get(path);
    assert!(
        page.body.contains("action=\"/apps/cart/metrics\""),
        "{}",
        page.body
    );
    let key = input_value(&page.body, "form_key").unwrap();
    let mut fields = latency;
    fields[0].1 = key.as_str();
    let declared = admin.post_form("/apps/cart/metrics", &fields);
    assert_eq!(declared.status, 303, "{}", declared.body);
    assert_eq!(
        declared.location.as_deref(),
        Some("/apps/cart?done=declared#judged")
    );
    assert_eq!(
        declared_metrics(&server, "cart"),
        json!([{"name": "latency_ms", "kind": "middleware", "unit": "ms",
                "direction": "increase", "critical": true}])
    );
    let shown = admin.get(path).body;
    assert!(
        shown.contains(
            "<th scope=\"row\"><code>latency_ms</code></th><td>middleware, harmful when it \
             increases, critical</td>"
        ),
        "{shown}"
    );
    // The form goes through the checks of the JSON route: the field that is wrong is named.
    fields[1].1 = "bad\u{1b}name";
    let refused = admin.post_form("/apps/cart/metrics", &fields);
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused
            .body
            .contains("metrics[1].name: holds a control character"),
        "{}",
        refused.body
    );
    fields[1].1 = "cpu";
    fields[3].1 = "sideways";
    let refused = admin.post_form("/apps/cart/metrics", &fields);
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body.contains("direction"), "{}", refused.body);
    assert_eq!(
        declared_metrics(&server, "cart").as_array().unwrap().len(),
        1
    );

    let removal = [("form_key", viewer_key.as_str()), ("metric", "latency_ms")];
    let forged = viewer.post_form("/apps/cart/metrics/remove", &removal);
    assert_eq!(forged.status, 403, "{}", forged.body);
    let removed = admin.post_form(
        "/apps/cart/metrics/remove",
        &[("form_key", key.as_str()), ("metric", "latency_ms")],
    );
    assert_eq!(removed.status, 303, "{}", removed.body);
    assert_eq!(declared_metrics(&server, "cart"), json!([]));
    let missing = admin.post_form(
        "/apps/cart/metrics/remove",
        &[("form_key", key.as_str()), ("metric", "latency_ms")],
    );
    assert_eq!(missing.status, 404, "{}", missing.body);
}

const FLEET: [&str; 3] = ["web1", "web2", "web3"];

#[test]
fn the_page_shows_the_discovery_and_an_admin_applies_it_through_the_form() {
    let Some(binary) = prometheus_or_skip("apps page discovery") else {
        return;
    };
    // The fleet exports node exporter families only: system signals are found, middleware
    // ones are missing.
    let fleet_port = serve_hosts(|_, scrape| node_exporter_text(scrape));
    let prometheus = Prometheus::start(&binary, &scrape_config("checkout", fleet_port, &FLEET));
    let server = TestServer::start(vigil_core::SystemClock.now());
    let path = format!(
        "/apps/checkout?prometheus={}&selector={}&host_label=instance",
        support::form_encode(&prometheus.url),
        support::form_encode("job=\"checkout\"")
    );
    let mut admin = PageClient::new(&server.base);
    admin.sign_in(&server.admin);
    // Once Prometheus has scraped every host often enough, each proposal answers on all three.
    let page = wait_until(
        &server,
        60,
        || admin.get(&path),
        |page| page.status == 200 && page.body.matches("<td>3 of 3</td>").count() == 3,
    );
    let body = &page.body;
    assert!(
        body.contains("<dt>Hosts under the selector</dt><dd>3</dd>"),
        "{body}"
    );
    for metric in ["cpu_busy_ratio", "memory_used_ratio", "load1"] {
        assert!(
            body.contains(&format!("<td><code>{metric}</code></td>")),
            "{metric}"
        );
    }
    assert!(
        body.contains("node_load1{job=&quot;checkout&quot;}"),
        "the proposed promql, escaped"
    );
    assert!(body.contains("<h3 id=\"missing-title\">Signals not found</h3>"));
    assert!(body.contains(
        "no request rate metric found for job=&quot;checkout&quot;; give a PromQL query \
         returning one series per host (label instance)"
    ));
    assert!(body.contains("<button type=\"submit\">Apply these queries</button>"));

    // A viewer may not have the server query a Prometheus of their choosing, nor apply what
    // an admin found, even with a forged form.
    let mut viewer = PageClient::new(&server.base);
    viewer.sign_in(&server.viewer);
    let seen = viewer.get(&path);
    assert_eq!(seen.status, 403, "{}", seen.body);
    assert!(!seen.body.contains("<td><code>load1</code></td>"));
    assert!(!seen.body.contains("Apply these queries</button>"));
    let viewer_key = input_value(&seen.body, "form_key").unwrap();
    let forged = viewer.post_form(
        "/apps/checkout/apply",
        &[("form_key", &viewer_key), ("prometheus", &prometheus.url)],
    );
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert!(stored_metrics(&server, "checkout").is_empty());

    // The admin applies through the form, which looks where the page looked.
    let field = |name: &str| unescape(&input_value(body, name).unwrap());
    let key = field("form_key");
    let hidden: Vec<(&str, String)> = ["prometheus", "selector", "host_label", "step_seconds"]
        .into_iter()
        .map(|name| (name, field(name)))
        .collect();
    assert_eq!(hidden[1].1, "job=\"checkout\"");
    let mut fields: Vec<(&str, &str)> = vec![("form_key", &key)];
    fields.extend(hidden.iter().map(|(name, value)| (*name, value.as_str())));
    let applied = admin.post_form("/apps/checkout/apply", &fields);
    assert_eq!(applied.status, 303, "{}", applied.body);
    assert_eq!(
        applied.location.as_deref(),
        Some("/apps/checkout?done=applied&added=3&skipped=0#summary")
    );
    assert_eq!(
        stored_metrics(&server, "checkout"),
        ["cpu_busy_ratio", "memory_used_ratio", "load1"]
    );
    let (_, apps) = server.get("/api/v1/apps", &server.viewer);
    let source: &Value = &apps["checkout"]["prometheus"];
    assert_eq!(source["url"], prometheus.url);
    assert_eq!(source["selector"], "job=\"checkout\"");
    assert_eq!(source["host_label"], "instance");

    // Back on the page, now from the app's own pull source.
    let after = admin.get("/apps/checkout?done=applied&added=3&skipped=0");
    assert_eq!(after.status, 200, "{}", after.body);
    assert!(after
        .body
        .contains("Applied: 3 queries added to the pull source."));
    assert!(after
        .body
        .contains("<th scope=\"row\"><code>cpu_busy_ratio</code></th>"));
    // A missing signal's query, added by hand, joins them.
    let own = admin.post_form(
        "/apps/checkout/queries",
        &[
            ("form_key", &key),
            ("metric", "requests_per_second"),
            (
                "query",
                "sum by (instance) (rate(scrape_samples_scraped{job=\"checkout\"}[1m]))",
            ),
        ],
    );
    assert_eq!(own.status, 303, "{}", own.body);
    assert_eq!(stored_metrics(&server, "checkout").len(), 4);
}
