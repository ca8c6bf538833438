//! Java and Python stack traces posted to `POST /api/v1/ingest/logs` of a started server, one
//! line an entry, two hosts interleaved, and one trace sent as a single entry of several
//! lines: each trace is one event, counted once, under one template that names its exception
//! class, at error level.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod support;

use serde_json::json;
use support::TestServer;

const NOW: i64 = 1_700_000_000;

const JAVA: [&str; 7] = [
    "2024-05-01 10:00:01,002 ERROR [http-7] com.shop.OrderService: order 42 failed",
    "java.lang.IllegalStateException: payment refused for order 42",
    "\tat com.shop.Payments.charge(Payments.java:88)",
    "\tat com.shop.OrderService.place(OrderService.java:42)",
    "Caused by: java.net.SocketTimeoutException: read timed out",
    "\tat java.base/java.net.SocketInputStream.read(SocketInputStream.java:168)",
    "\t... 2 more",
];

const PYTHON: [&str; 10] = [
    "2024-05-01 10:00:01,005 ERROR app.views: request 7 failed",
    "Traceback (most recent call last):",
    "  File \"/srv/app/views.py\", line 12, in handler",
    "    count = int(value)",
    "ValueError: invalid literal for int() with base 10: 'abc'",
    "",
    "During handling of the above exception, another exception occurred:",
    "",
    "Traceback (most recent call last):",
    "  File \"/srv/app/views.py\", line 15, in handler",
];

const PYTHON_END: [&str; 2] = ["    raise BadRequest(value)", "web.errors.BadRequest: abc"];

fn entry(host: &str, line: &str) -> serde_json::Value {
    json!({"host": host, "app": "shop", "time": NOW, "line": line})
}

#[test]
fn stack_traces_posted_to_the_log_route_are_one_exception_template_each() {
    let server = TestServer::start(NOW);
    // Host `a` logs the Java trace while host `b` logs the Python one, line by line,
    // interleaved; each host then logs a plain line.
    let mut entries = Vec::new();
    let python = PYTHON.iter().chain(&PYTHON_END).collect::<Vec<_>>();
    for (index, python_line) in python.iter().enumerate() {
        if let Some(line) = JAVA.get(index) {
            entries.push(entry("a", line));
        }
        entries.push(entry("b", python_line));
    }
    entries.push(entry(
        "a",
        "2024-05-01 10:00:02,001 INFO [main] com.shop.Server: order 43 placed",
    ));
    entries.push(entry(
        "b",
        "2024-05-01 10:00:02,001 INFO [main] com.shop.Server: order 44 placed",
    ));
    // Host `c` sends the same Java failure as one entry holding the whole trace.
    let mut whole = JAVA.join("\n").replace("42", "51");
    whole.push('\n');
    entries.push(entry("c", &whole));
    let (status, answer) = server.post(
        "/api/v1/ingest/logs",
        &server.ingest,
        &json!({"lines": entries}),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], entries.len());

    let templates = server.state.store.templates("shop").unwrap();
    let texts = templates
        .iter()
        .map(|template| format!("{} {}", template.level, template.text))
        .collect::<Vec<_>>();
    assert_eq!(templates.len(), 3, "{texts:#?}");
    let java = templates
        .iter()
        .find(|template| template.text.contains("java.lang.IllegalStateException"))
        .unwrap_or_else(|| panic!("no Java exception template: {texts:#?}"));
    assert_eq!(
        java.text,
        "order <*> failed => java.lang.IllegalStateException at com.shop.Payments.charge"
    );
    assert_eq!(java.level, "ERROR");
    assert!(java.is_exception());
    let python = templates
        .iter()
        .find(|template| template.text.contains("web.errors.BadRequest"))
        .unwrap_or_else(|| panic!("no Python exception template: {texts:#?}"));
    assert_eq!(
        python.text,
        "request <*> failed => web.errors.BadRequest at views.py:handler"
    );
    assert!(python.is_exception());
    assert!(
        templates.iter().all(
            |template| !template.text.contains("at com.shop.OrderService.place(")
                && !template.text.starts_with("File")
        ),
        "{texts:#?}"
    );

    let index = server.state.guard.index().read().unwrap();
    let count = |host: &str, template: &str| -> u64 {
        index
            .host(host)
            .and_then(|data| data.logs.get(template))
            .map_or(0, |counts| counts.values().sum())
    };
    assert_eq!(count("a", &java.id), 1);
    assert_eq!(count("c", &java.id), 1);
    assert_eq!(count("b", &python.id), 1);
    let events = |host: &str| -> u64 {
        index.host(host).map_or(0, |data| {
            data.logs.values().flat_map(|counts| counts.values()).sum()
        })
    };
    assert_eq!((events("a"), events("b"), events("c")), (2, 2, 1));
}
