//! The probe: the real `vigil serve` on a fresh SQLite store, sent hundreds of kinds of bad
//! input on every route (bad JSON, wrong types, huge, negative and NaN numbers, control
//! characters, oversize bodies, gzip and snappy bombs, bad tokens and roles, path traversal
//! ids, bad methods and query strings, forms without a session), while another thread polls
//! `/healthz` and the server's resident memory. It prints its figures and holds them: no crash,
//! no 5xx, every refusal a 4xx whose message names what was wrong, memory never more than
//! 512 MiB over its idle size, `/healthz` always under 100 ms.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod support;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{create_token, free_port, now_seconds, serve, Dir, Server};

/// Most the server's memory may grow over its idle size.
const MAX_GROWTH_KB: u64 = 512 * 1024;
/// Resident memory at which the watch kills the server (the test has failed long before).
const KILL_ABOVE_KB: u64 = 4 * 1024 * 1024;
/// Slowest `/healthz` answer allowed, in milliseconds.
const MAX_HEALTH_MS: u64 = 100;

/// The server's resident memory, from `/proc/PID/status`.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}

/// Polls `/healthz` and the server's memory until stopped.
struct Watch {
    stop: Arc<AtomicBool>,
    worst_health_us: Arc<AtomicU64>,
    health_failures: Arc<AtomicU64>,
    polls: Arc<AtomicU64>,
    peak_rss_kb: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Watch {
    // The probe measures how long the server takes to answer, on the wall clock, as a
    // benchmark does.
    #[allow(clippy::disallowed_methods)]
    fn start(port: u16, pid: u32) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let worst_health_us = Arc::new(AtomicU64::new(0));
        let health_failures = Arc::new(AtomicU64::new(0));
        let polls = Arc::new(AtomicU64::new(0));
        let peak_rss_kb = Arc::new(AtomicU64::new(rss_kb(pid)));
        let shared = (
            Arc::clone(&stop),
            Arc::clone(&worst_health_us),
            Arc::clone(&health_failures),
            Arc::clone(&polls),
            Arc::clone(&peak_rss_kb),
        );
        let thread = std::thread::spawn(move || {
            let (stop, worst, failures, polls, peak) = shared;
            let client = agent(Duration::from_secs(5));
            let url = format!("http://127.0.0.1:{port}/healthz");
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let answered = client
                    .get(&url)
                    .call()
                    .is_ok_and(|response| response.status() == 200);
                let took = started.elapsed().as_micros() as u64;
                if !answered {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                worst.fetch_max(took, Ordering::Relaxed);
                let rss = rss_kb(pid);
                peak.fetch_max(rss, Ordering::Relaxed);
                // A server far past its bound is stopped before it takes the machine with it.
                if rss > KILL_ABOVE_KB {
                    let _ = std::process::Command::new("kill")
                        .args(["-9", &pid.to_string()])
                        .status();
                }
                polls.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Watch {
            stop,
            worst_health_us,
            health_failures,
            polls,
            peak_rss_kb,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> (u64, u64, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        (
            self.worst_health_us.load(Ordering::Relaxed),
            self.health_failures.load(Ordering::Relaxed),
            self.polls.load(Ordering::Relaxed),
            self.peak_rss_kb.load(Ordering::Relaxed),
        )
    }
}

/// Who sends a request.
#[derive(Debug, Clone, Copy)]
enum Who {
    Nobody,
    Bogus,
    Admin,
    Operator,
    Viewer,
    Ingest,
}

struct Tokens {
    admin: String,
    operator: String,
    viewer: String,
    ingest: String,
}

impl Tokens {
    fn header(&self, who: Who) -> Option<String> {
        let secret = match who {
            Who::Nobody => return None,
            Who::Bogus => "vgl_not_a_token_at_all",
            Who::Admin => &self.admin,
            Who::Operator => &self.operator,
            Who::Viewer => &self.viewer,
            Who::Ingest => &self.ingest,
        };
        Some(format!("Bearer {secret}"))
    }
}

/// One bad request and the word its refusal must hold (the field, or what was wrong).
struct Case {
    label: String,
    method: &'static str,
    path: String,
    who: Who,
    content_type: &'static str,
    body: Vec<u8>,
    names: String,
}

fn case(label: impl Into<String>, method: &'static str, path: impl Into<String>, who: Who) -> Case {
    Case {
        label: label.into(),
        method,
        path: path.into(),
        who,
        content_type: "application/json",
        body: Vec::new(),
        names: String::new(),
    }
}

impl Case {
    fn json(mut self, body: &Value) -> Case {
        self.body = body.to_string().into_bytes();
        self
    }

    fn raw(mut self, content_type: &'static str, body: Vec<u8>) -> Case {
        self.content_type = content_type;
        self.body = body;
        self
    }

    fn naming(mut self, word: &str) -> Case {
        self.names = word.to_owned();
        self
    }
}

/// What came of one case.
struct Outcome {
    status: u16,
    text: String,
}

fn send(client: &ureq::Agent, port: u16, tokens: &Tokens, case: &Case) -> Option<Outcome> {
    let url = format!("http://127.0.0.1:{port}{}", case.path);
    let mut request = ureq::http::Request::builder()
        .method(case.method)
        .uri(&url)
        .header("Content-Type", case.content_type);
    if let Some(authorization) = tokens.header(case.who) {
        request = request.header("Authorization", authorization);
    }
    // A request without a body is sent as one (ureq refuses a body on GET).
    let sent = if case.body.is_empty() {
        client.run(request.body(()).ok()?)
    } else {
        client.run(request.body(case.body.clone()).ok()?)
    };
    let mut response = sent.ok()?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .unwrap_or_default();
    Some(Outcome { status, text })
}

const RELEASE: &str = "probe-1";

/// A body larger than the server takes. The server answers once it has read past its limit and
/// closes the connection while the rest is still being written, so the request is written by
/// hand, its write errors ignored, and the answer read on another thread meanwhile.
fn oversize_request(port: u16, token: &str) -> Outcome {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut reading = stream.try_clone().unwrap();
    let reader = std::thread::spawn(move || {
        let mut answer = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(read) = reading.read(&mut chunk) {
            if read == 0 {
                break;
            }
            answer.extend_from_slice(&chunk[..read]);
        }
        answer
    });
    let length = 17 << 20;
    let head = format!(
        "POST /api/v1/ingest/samples HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \
         {token}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    );
    let _ = stream.write_all(head.as_bytes());
    let spaces = vec![b' '; 1 << 16];
    for _ in 0..length / spaces.len() {
        if stream.write_all(&spaces).is_err() {
            break;
        }
    }
    let answer = reader.join().unwrap();
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    Outcome { status, text }
}

fn release_body() -> Value {
    json!({
        "id": "probe-2", "app": "shop", "version": "2",
        "hosts": ["r1", "r2"], "reference": {"type": "hosts", "hosts": ["k1"]},
        "step_seconds": 2, "observe_seconds": 60,
        "settings": {"baseline_seconds": 60},
    })
}

/// Values no field takes, each with what it is.
fn hostile_values() -> Vec<(&'static str, Value)> {
    vec![
        ("null", Value::Null),
        ("object", json!({"x": 1})),
        ("array of numbers", json!([1, 2])),
        ("true", json!(true)),
        ("huge float", json!(1e308)),
        ("nan string", json!("NaN")),
        ("nul string", json!("a\u{0}b")),
        ("escape string", json!("\u{1b}[2J")),
        ("100 kB string", json!("x".repeat(100_000))),
    ]
}

/// Release creation: every field given each hostile value (those it could take are skipped),
/// and numbers out of range.
fn release_cases(cases: &mut Vec<Case>) {
    let fields = [
        "id",
        "app",
        "version",
        "hosts",
        "reference",
        "batches",
        "step_seconds",
        "observe_seconds",
        "metrics",
        "settings",
    ];
    for field in fields {
        for (what, value) in hostile_values() {
            let optional_null = value.is_null()
                && matches!(
                    field,
                    "id" | "reference" | "batches" | "metrics" | "settings"
                );
            // "NaN" is a fine name or version.
            let fine_text = what == "nan string" && matches!(field, "id" | "app" | "version");
            if optional_null || fine_text {
                continue;
            }
            let mut body = release_body();
            body[field] = value;
            cases.push(
                case(
                    format!("create {field} = {what}"),
                    "POST",
                    "/api/v1/releases",
                    Who::Operator,
                )
                .json(&body)
                .naming(field),
            );
        }
    }
    let numbers = [
        ("step_seconds", json!(-1)),
        ("step_seconds", json!(0)),
        ("step_seconds", json!(i64::MAX)),
        ("observe_seconds", json!(-5)),
        ("observe_seconds", json!(i64::MAX)),
        ("step_seconds", json!(1.5)),
    ];
    for (field, value) in numbers {
        let mut body = release_body();
        body[field] = value.clone();
        cases.push(
            case(
                format!("create {field} = {value}"),
                "POST",
                "/api/v1/releases",
                Who::Operator,
            )
            .json(&body)
            .naming(field),
        );
    }
    let settings = [
        ("baseline_seconds", json!(i64::MAX)),
        ("baseline_seconds", json!(-60)),
        ("warmup_seconds", json!(i64::MIN)),
        ("history_days", json!(u64::MAX)),
        ("min_host_share", json!(7.0)),
        ("shift_z", json!(-1.0)),
        ("persistence_steps", json!(0)),
        ("history_quantile", json!("high")),
        ("no_such_setting", json!(1)),
    ];
    for (setting, value) in settings {
        let mut body = release_body();
        body["settings"][setting] = value.clone();
        cases.push(
            case(
                format!("create settings.{setting} = {value}"),
                "POST",
                "/api/v1/releases",
                Who::Operator,
            )
            .json(&body)
            .naming(setting),
        );
    }
    let shapes = [
        ("id ..", "id", json!({"id": ".."})),
        ("id with a slash", "id", json!({"id": "a/b"})),
        ("duplicate host", "hosts", json!({"hosts": ["r1", "r1"]})),
        ("no host", "hosts", json!({"hosts": []})),
        (
            "duplicate reference",
            "reference",
            json!({"reference": {"type": "hosts", "hosts": ["k1", "k1"]}}),
        ),
        (
            "reference also release",
            "reference",
            json!({"reference": {"type": "hosts", "hosts": ["r1"]}}),
        ),
        (
            "unknown reference type",
            "reference",
            json!({"reference": {"type": "nobody"}}),
        ),
        (
            "batch with a stranger",
            "batches",
            json!({"batches": [{"hosts": ["zz"]}]}),
        ),
        (
            "empty batch",
            "batches",
            json!({"batches": [{"hosts": []}]}),
        ),
        (
            "metric kind",
            "kind",
            json!({"metrics": [{"name": "m", "kind": "weird"}]}),
        ),
        ("unknown field", "surprise", json!({"surprise": 1})),
    ];
    for (label, word, overrides) in shapes {
        let mut body = release_body();
        for (key, value) in overrides.as_object().unwrap() {
            body[key] = value.clone();
        }
        cases.push(
            case(
                format!("create {label}"),
                "POST",
                "/api/v1/releases",
                Who::Operator,
            )
            .json(&body)
            .naming(word),
        );
    }
}

/// One entry of `list` sent to `path` with each of `fields` given each hostile value, but those
/// the field takes (`takes(field, what, value)`); the refusal must name `list[0].field`.
fn entry_cases(
    cases: &mut Vec<Case>,
    path: &'static str,
    list: &str,
    entry: &Value,
    fields: &[&str],
    takes: impl Fn(&str, &str, &Value) -> bool,
) {
    for field in fields {
        for (what, value) in hostile_values() {
            if takes(field, what, &value) {
                continue;
            }
            let mut changed = entry.clone();
            changed[*field] = value;
            cases.push(
                case(
                    format!("{list} {field} = {what}"),
                    "POST",
                    path,
                    Who::Ingest,
                )
                .json(&json!({ list: [changed] }))
                .naming(&format!("{list}[0].{field}")),
            );
        }
    }
}

/// JSON samples and log lines: each field of an entry given hostile values.
fn ingestion_cases(cases: &mut Vec<Case>) {
    let sample =
        json!({"host": "h1", "app": "shop", "metric": "cpu", "time": now_seconds(), "value": 1.0});
    let sample_fields = ["host", "app", "metric", "time", "value", "counter"];
    entry_cases(
        cases,
        "/api/v1/ingest/samples",
        "samples",
        &sample,
        &sample_fields,
        |field, what, value| {
            (value.is_null() && field == "app")
                || (what == "huge float" && field == "value")
                || (what == "true" && field == "counter")
                || (what == "nan string" && matches!(field, "host" | "app" | "metric"))
        },
    );
    for (what, time) in [
        ("negative", json!(-1)),
        ("year 9999+", json!(253_402_300_800u64)),
        ("i64 max", json!(i64::MAX)),
    ] {
        let mut entry = sample.clone();
        entry["time"] = time;
        cases.push(
            case(
                format!("samples time {what}"),
                "POST",
                "/api/v1/ingest/samples",
                Who::Ingest,
            )
            .json(&json!({"samples": [entry]}))
            .naming("samples[0].time"),
        );
    }
    let line = json!({"host": "h1", "app": "shop", "time": now_seconds(), "line": "ok"});
    // A line may hold any text; "NaN" is a fine name.
    entry_cases(
        cases,
        "/api/v1/ingest/logs",
        "lines",
        &line,
        &["host", "app", "time", "line"],
        |field, what, value| {
            (value.is_null() && field == "app")
                || (field == "line" && value.is_string())
                || (what == "nan string" && matches!(field, "host" | "app"))
        },
    );
    let bodies: [(&str, &[u8], &str); 8] = [
        ("empty body", b"", "body"),
        ("not json", b"hello", "body"),
        ("truncated json", b"{\"samples\": [", "samples"),
        ("an array", b"[1, 2, 3]", "body"),
        ("a number", b"42", "body"),
        ("trailing text", b"{\"samples\": []} x", "body"),
        ("samples a string", b"{\"samples\": \"x\"}", "samples"),
        ("key empty", b"{\"samples\": [], \"key\": \"\"}", "key"),
    ];
    for (label, body, word) in bodies {
        cases.push(
            case(
                format!("samples {label}"),
                "POST",
                "/api/v1/ingest/samples",
                Who::Ingest,
            )
            .raw("application/json", body.to_vec())
            .naming(word),
        );
    }
    let deep = format!(
        "{{\"samples\": {}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    cases.push(
        case(
            "samples nested 100000 deep",
            "POST",
            "/api/v1/ingest/samples",
            Who::Ingest,
        )
        .raw("application/json", deep.into_bytes())
        .naming("samples"),
    );
}

fn snappy(plain: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(plain).unwrap()
}

/// A gzip body of `members` concatenated members, each `member_bytes` of zeros.
fn gzip_bomb(member_bytes: usize, members: usize) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&vec![0u8; member_bytes]).unwrap();
    let member = encoder.finish().unwrap();
    member.repeat(members)
}

fn remote_write_cases(cases: &mut Vec<Case>) {
    let path = "/api/v1/ingest/prometheus";
    let bodies: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "snappy"),
        (
            "not snappy",
            b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff".to_vec(),
            "snappy",
        ),
        (
            "snappy of garbage protobuf",
            snappy(&[0x0a, 0xff, 0xff, 0xff, 0x0f]),
            "protobuf",
        ),
        (
            "snappy of a bad wire type",
            snappy(&[0x0f, 0x01]),
            "protobuf",
        ),
        (
            "header claims 1 GiB",
            vec![0x80, 0x80, 0x80, 0x80, 0x04, 0x00],
            "limit",
        ),
        (
            "header claims 60 MiB from 6 bytes",
            vec![0x80, 0x80, 0x80, 0x1e, 0x00, 0x00],
            "limit",
        ),
        (
            "header claims 20 MiB from 6 bytes",
            vec![0x80, 0x80, 0x80, 0x0a, 0x00, 0x00],
            "snappy",
        ),
        (
            "truncated snappy",
            snappy(&[7u8; 4096])[..20].to_vec(),
            "snappy",
        ),
        (
            "json sent as remote write",
            b"{\"samples\": []}".to_vec(),
            "snappy",
        ),
    ];
    for (label, body, word) in bodies {
        cases.push(
            case(format!("remote write {label}"), "POST", path, Who::Ingest)
                .raw("application/x-protobuf", body)
                .naming(word),
        );
    }
    cases.push(
        case(
            "remote write with a query token that is wrong",
            "POST",
            format!("{path}?token=vgl_nope"),
            Who::Nobody,
        )
        .raw("application/x-protobuf", snappy(b""))
        .naming("token"),
    );
}

fn import_cases(cases: &mut Vec<Case>) {
    let path = "/api/v1/releases/import";
    let bodies: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "request body"),
        ("not json", b"nope".to_vec(), "request body"),
        (
            "truncated gzip",
            gzip_bomb(1 << 10, 1)[..12].to_vec(),
            "request body",
        ),
        ("gzip of garbage", gzip_bomb(100, 1), "request body"),
        (
            "a bundle without its fields",
            br#"{"format": "release-bundle/9"}"#.to_vec(),
            "missing field",
        ),
        ("gzip bomb of 2 GiB", gzip_bomb(16 << 20, 128), "limit"),
    ];
    for (label, body, word) in bodies {
        cases.push(
            case(format!("import {label}"), "POST", path, Who::Operator)
                .raw("application/octet-stream", body)
                .naming(word),
        );
    }
}

/// Every API route with no token, a bogus one, and a role too low.
fn auth_cases(cases: &mut Vec<Case>) {
    let release = format!("/api/v1/releases/{RELEASE}");
    let routes: Vec<(&'static str, String, Option<Who>)> = vec![
        ("GET", "/api/v1/releases".into(), None),
        ("POST", "/api/v1/releases".into(), Some(Who::Viewer)),
        ("POST", "/api/v1/releases/import".into(), Some(Who::Viewer)),
        ("GET", release.clone(), Some(Who::Ingest)),
        ("GET", format!("{release}/verdict"), Some(Who::Ingest)),
        ("GET", format!("{release}/findings"), Some(Who::Ingest)),
        ("GET", format!("{release}/transitions"), Some(Who::Ingest)),
        (
            "GET",
            format!("{release}/series?metric=cpu"),
            Some(Who::Ingest),
        ),
        ("GET", format!("{release}/export"), Some(Who::Ingest)),
        (
            "POST",
            format!("{release}/batches/0/deployed"),
            Some(Who::Viewer),
        ),
        ("POST", format!("{release}/pause"), Some(Who::Viewer)),
        ("POST", format!("{release}/resume"), Some(Who::Viewer)),
        ("POST", format!("{release}/rollback"), Some(Who::Viewer)),
        ("POST", format!("{release}/rolled-back"), Some(Who::Viewer)),
        ("POST", format!("{release}/cancel"), Some(Who::Viewer)),
        ("POST", format!("{release}/feedback"), Some(Who::Viewer)),
        ("GET", format!("{release}/feedback"), Some(Who::Ingest)),
        ("GET", format!("{release}/notifications"), Some(Who::Ingest)),
        ("GET", "/api/v1/apps".into(), Some(Who::Ingest)),
        ("PUT", "/api/v1/apps/shop".into(), Some(Who::Operator)),
        (
            "GET",
            "/api/v1/apps/shop/onboarding".into(),
            Some(Who::Ingest),
        ),
        (
            "POST",
            "/api/v1/apps/shop/onboarding/apply".into(),
            Some(Who::Operator),
        ),
        ("POST", "/api/v1/ingest/samples".into(), Some(Who::Viewer)),
        (
            "POST",
            "/api/v1/ingest/prometheus".into(),
            Some(Who::Operator),
        ),
        ("POST", "/api/v1/ingest/logs".into(), Some(Who::Admin)),
    ];
    for (method, path, too_low) in routes {
        cases.push(
            case(
                format!("{method} {path} without a token"),
                method,
                path.clone(),
                Who::Nobody,
            )
            .naming("token"),
        );
        cases.push(
            case(
                format!("{method} {path} with a bogus token"),
                method,
                path.clone(),
                Who::Bogus,
            )
            .naming("token"),
        );
        // Admins may ingest; `Admin` here stands for "no role is too low".
        if let Some(who) = too_low.filter(|who| !matches!(who, Who::Admin)) {
            cases.push(
                case(format!("{method} {path} as {who:?}"), method, path, who).naming("role"),
            );
        }
    }
}

/// Ids, numbers, methods and query strings in the URL.
fn url_cases(cases: &mut Vec<Case>) {
    let ids = [
        "..%2F..%2Fetc%2Fpasswd",
        "%2e%2e",
        "%00",
        "a%0Ab",
        "%1B%5B2J",
        "%FF%FE",
        "nope",
    ];
    for id in ids {
        // An id that is not UTF-8 is refused before any lookup, naming the `id` segment.
        let names = if id == "%FF%FE" { "id" } else { "release" };
        for suffix in ["", "/verdict", "/findings", "/export", "/transitions"] {
            cases.push(
                case(
                    format!("release id {id}{suffix}"),
                    "GET",
                    format!("/api/v1/releases/{id}{suffix}"),
                    Who::Viewer,
                )
                .naming(names),
            );
        }
    }
    let long_id = "x".repeat(10_000);
    cases.push(
        case(
            "release id of 10 kB",
            "GET",
            format!("/api/v1/releases/{long_id}"),
            Who::Viewer,
        )
        .naming("release"),
    );
    let release = format!("/api/v1/releases/{RELEASE}");
    for batch in ["abc", "-1", "4294967296", "99999999999999999999", "1.5"] {
        cases.push(
            case(
                format!("batch {batch}"),
                "POST",
                format!("{release}/batches/{batch}/deployed"),
                Who::Operator,
            )
            .naming("n"),
        );
    }
    cases.push(
        case(
            "batch 7 of a release of one",
            "POST",
            format!("{release}/batches/7/deployed"),
            Who::Operator,
        )
        .naming("batch"),
    );
    for (label, query, word) in [
        ("limit negative", "limit=-1", "limit"),
        ("limit text", "limit=abc", "limit"),
        ("limit huge", "limit=99999999999999999999999", "limit"),
        ("unknown state", "state=sleeping", "state"),
        ("state with nul", "state=%00", "state"),
    ] {
        cases.push(
            case(
                format!("list {label}"),
                "GET",
                format!("/api/v1/releases?{query}"),
                Who::Viewer,
            )
            .naming(word),
        );
    }
    for (label, query, word) in [
        ("step text", "step_seconds=abc", "step_seconds"),
        ("discover maybe", "discover=maybe", "discover"),
        ("unknown parameter", "surprise=1", "surprise"),
        (
            "viewer names a url",
            "prometheus=http%3A%2F%2F127.0.0.1%3A22",
            "prometheus",
        ),
        (
            "viewer names a file url",
            "prometheus=file%3A%2F%2F%2Fetc%2Fpasswd",
            "prometheus",
        ),
    ] {
        cases.push(
            case(
                format!("onboarding {label}"),
                "GET",
                format!("/api/v1/apps/shop/onboarding?{query}"),
                Who::Viewer,
            )
            .naming(word),
        );
    }
    cases.push(
        case(
            "series without metric",
            "GET",
            format!("{release}/series"),
            Who::Viewer,
        )
        .naming("metric"),
    );
    cases.push(
        case(
            "series of an unknown metric",
            "GET",
            format!("{release}/series?metric=%00"),
            Who::Viewer,
        )
        .naming("metric"),
    );
    for (method, path) in [
        ("DELETE", "/api/v1/releases".to_owned()),
        ("PUT", "/api/v1/releases".to_owned()),
        ("GET", "/api/v1/ingest/samples".to_owned()),
        ("GET", "/api/v1/ingest/prometheus".to_owned()),
        ("DELETE", release.clone()),
        ("PATCH", format!("{release}/pause")),
        ("GET", format!("{release}/pause")),
        ("POST", "/healthz".to_owned()),
        ("POST", "/api/v1/openapi.json".to_owned()),
        ("GET", "/api/v1/releases/import".to_owned()),
    ] {
        cases.push(case(format!("{method} {path}"), method, path, Who::Admin).naming("method"));
    }
    cases.push(case("unknown path", "GET", "/api/v2/everything", Who::Admin).naming("path"));
}

/// Actions, feedback and app settings with bad bodies.
fn action_cases(cases: &mut Vec<Case>) {
    let release = format!("/api/v1/releases/{RELEASE}");
    let reasons: [(&str, Value, &str); 5] = [
        (
            "reason of 1 MB",
            json!({"reason": "x".repeat(1 << 20)}),
            "reason",
        ),
        ("reason with nul", json!({"reason": "a\u{0}"}), "reason"),
        ("reason a number", json!({"reason": 5}), "reason"),
        ("unknown field", json!({"why": "x"}), "why"),
        ("an array", json!([]), "json"),
    ];
    for action in ["pause", "cancel", "rollback"] {
        for (label, body, word) in &reasons {
            cases.push(
                case(
                    format!("{action} {label}"),
                    "POST",
                    format!("{release}/{action}"),
                    Who::Operator,
                )
                .json(body)
                .naming(word),
            );
        }
    }
    cases.push(
        case(
            "resume a pending release",
            "POST",
            format!("{release}/resume"),
            Who::Operator,
        )
        .naming("resume"),
    );
    for (label, body, word) in [
        ("kind unknown", json!({"kind": "meh"}), "kind"),
        ("no kind", json!({"note": "x"}), "kind"),
        (
            "note of 1 MB",
            json!({"kind": "false_alarm", "note": "x".repeat(1 << 20)}),
            "note",
        ),
        (
            "note with escape",
            json!({"kind": "false_alarm", "note": "\u{1b}[2J"}),
            "note",
        ),
    ] {
        cases.push(
            case(
                format!("feedback {label}"),
                "POST",
                format!("{release}/feedback"),
                Who::Operator,
            )
            .json(&body)
            .naming(word),
        );
    }
    for (label, body, word) in [
        ("deployed at text", json!({"at": "now"}), "at"),
        ("deployed hosts strangers", json!({"hosts": ["zz"]}), "zz"),
        ("deployed at before 1970", json!({"at": -5}), "at"),
    ] {
        cases.push(
            case(
                format!("batch {label}"),
                "POST",
                format!("{release}/batches/0/deployed"),
                Who::Operator,
            )
            .json(&body)
            .naming(word),
        );
    }
    for (label, body, word) in [
        ("an array", json!([]), "body"),
        ("a string", json!("x"), "body"),
        ("unknown field", json!({"surprise": 1}), "surprise"),
        (
            "prometheus a number",
            json!({"prometheus": 5}),
            "prometheus",
        ),
        (
            "log pattern not a regex",
            json!({"log_pattern": "("}),
            "log_pattern",
        ),
        (
            "query stored as a name with nul",
            json!({"prometheus": {"url": "http://127.0.0.1:9", "queries": [{"metric": "a\u{0}", "query": "up"}]}}),
            "prometheus.queries[0].metric",
        ),
    ] {
        cases.push(
            case(
                format!("app settings {label}"),
                "PUT",
                "/api/v1/apps/shop",
                Who::Admin,
            )
            .json(&body)
            .naming(word),
        );
    }
    cases.push(
        case("app name with nul", "PUT", "/api/v1/apps/a%00b", Who::Admin)
            .json(&json!({}))
            .naming("app"),
    );
    for (label, body, word) in [
        (
            "signals unknown",
            json!({"signals": ["telepathy"]}),
            "signals",
        ),
        ("no prometheus", json!({"signals": []}), "prometheus"),
        ("queries wrong", json!({"queries": "x"}), "queries"),
        (
            "own query named with escape",
            json!({"signals": [], "queries": [{"metric": "\u{1b}[2J", "query": "up"}]}),
            "queries[0].metric",
        ),
    ] {
        cases.push(
            case(
                format!("apply {label}"),
                "POST",
                "/api/v1/apps/shop/onboarding/apply",
                Who::Admin,
            )
            .json(&body)
            .naming(word),
        );
    }
}

/// Pages: forms without a session or from elsewhere, and bad page URLs. Pages answer in HTML:
/// their refusals must be 4xx (or a redirect to sign in), never 5xx.
fn page_cases(cases: &mut Vec<Case>) {
    let form = "application/x-www-form-urlencoded";
    for (path, body) in [
        (
            format!("/releases/{RELEASE}/actions"),
            "action=pause&form_key=x",
        ),
        (
            format!("/releases/{RELEASE}/feedback"),
            "kind=false_alarm&form_key=x",
        ),
        ("/apps/shop/apply".to_owned(), "form_key=x"),
        (
            "/apps/shop/queries".to_owned(),
            "metric=m&query=up&form_key=x",
        ),
        ("/signout".to_owned(), "form_key=x"),
        ("/signin".to_owned(), "token=vgl_nope"),
        ("/signin".to_owned(), "token=%00"),
        ("/signin".to_owned(), "nothing=1"),
    ] {
        cases.push(
            case(
                format!("form {path} without a session: {body}"),
                "POST",
                path,
                Who::Nobody,
            )
            .raw(form, body.as_bytes().to_vec()),
        );
    }
    for path in [
        "/releases/%00",
        "/releases/..%2F..",
        "/releases?state=bogus",
        "/releases?limit=-1",
        "/apps/%1B",
        "/fragment/releases?app=%00",
    ] {
        cases.push(case(format!("page {path}"), "GET", path, Who::Nobody));
    }
}

fn all_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    release_cases(&mut cases);
    ingestion_cases(&mut cases);
    remote_write_cases(&mut cases);
    import_cases(&mut cases);
    auth_cases(&mut cases);
    url_cases(&mut cases);
    action_cases(&mut cases);
    page_cases(&mut cases);
    cases
}

struct Started {
    _alone: std::sync::MutexGuard<'static, ()>,
    _dir: Dir,
    server: Server,
    port: u16,
    tokens: Tokens,
}

/// The two tests run one after the other: each measures a server's memory and answers, which
/// the other's load would blur.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn start(label: &str) -> Started {
    let alone = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = Dir::new(label);
    let database = dir.0.join("vigil.db");
    let tokens = Tokens {
        admin: create_token(&database, "admin"),
        operator: create_token(&database, "operator"),
        viewer: create_token(&database, "viewer"),
        ingest: create_token(&database, "ingest"),
    };
    let port = free_port();
    let server = serve(&database, port);
    Started {
        _alone: alone,
        _dir: dir,
        server,
        port,
        tokens,
    }
}

/// The server's memory once settled, and its slowest `/healthz` over two idle seconds: what the
/// machine gives when nothing is asked of the server (a loaded machine answers slower).
/// Prints both and returns the memory.
fn idle_figures(port: u16, pid: u32) -> u64 {
    std::thread::sleep(Duration::from_millis(500));
    let idle = Watch::start(port, pid);
    std::thread::sleep(Duration::from_secs(2));
    let (worst_health_us, _, _, _) = idle.finish();
    let idle_kb = rss_kb(pid);
    println!(
        "idle: memory {} MiB, /healthz worst {:.1} ms",
        idle_kb / 1024,
        worst_health_us as f64 / 1000.0
    );
    idle_kb
}

#[test]
fn hundreds_of_kinds_of_bad_input_get_a_4xx_naming_what_was_wrong() {
    let started = start("probe");
    let (port, pid) = (started.port, started.server.0.id());
    let client = agent(Duration::from_secs(60));
    let created = json!({"id": RELEASE, "app": "shop", "version": "1", "hosts": ["r1"],
        "reference": {"type": "hosts", "hosts": ["k1"]}});
    let setup = case("setup", "POST", "/api/v1/releases", Who::Operator).json(&created);
    let answer = send(&client, port, &started.tokens, &setup).unwrap();
    assert_eq!(answer.status, 201, "{}", answer.text);

    let idle_kb = idle_figures(port, pid);
    let watch = Watch::start(port, pid);
    let cases = all_cases();
    let mut failures = Vec::new();
    let mut server_errors = 0;
    for probe in &cases {
        let Some(outcome) = send(&client, port, &started.tokens, probe) else {
            failures.push(format!("{}: no answer", probe.label));
            continue;
        };
        if outcome.status >= 500 {
            server_errors += 1;
        }
        let refused = (400..500).contains(&outcome.status);
        let redirected = (300..400).contains(&outcome.status) && probe.names.is_empty();
        if !(refused || redirected) {
            failures.push(format!(
                "{}: {} {}",
                probe.label, outcome.status, outcome.text
            ));
            continue;
        }
        let message = outcome.text.to_lowercase();
        if !probe.names.is_empty() && !message.contains(&probe.names.to_lowercase()) {
            failures.push(format!(
                "{}: {} does not name {:?}: {}",
                probe.label,
                outcome.status,
                probe.names,
                outcome.text.chars().take(300).collect::<String>()
            ));
        }
    }
    let oversize = oversize_request(port, &started.tokens.ingest);
    if oversize.status != 413 || !oversize.text.to_lowercase().contains("limit") {
        failures.push(format!("body over 16 MiB: {}", oversize.text));
    }
    let (worst_health_us, health_failures, polls, peak_kb) = watch.finish();
    let crashed = started.server.0.has_died();
    println!(
        "probe: {} kinds of bad input, {} refusals not as expected, 5xx {server_errors}, \
         crashes {}, /healthz worst {:.1} ms over {polls} polls ({health_failures} failed), \
         memory idle {} MiB, peak {} MiB (+{} MiB)",
        cases.len() + 1,
        failures.len(),
        u32::from(crashed),
        worst_health_us as f64 / 1000.0,
        idle_kb / 1024,
        peak_kb / 1024,
        peak_kb.saturating_sub(idle_kb) / 1024
    );
    for failure in &failures {
        println!("  {failure}");
    }
    assert!(cases.len() >= 200, "only {} cases", cases.len());
    assert!(!crashed, "the server died");
    assert_eq!(server_errors, 0);
    assert!(failures.is_empty(), "{} cases failed", failures.len());
    hold_bounds(worst_health_us, health_failures, idle_kb, peak_kb);
}

/// The reported attacks of the issue: a 2 MB gzip body expanding to 2 GiB on import, and eight
/// concurrent snappy bodies (claiming 256 MiB each, then as large as the limit lets through).
#[test]
fn bombs_leave_memory_bounded_and_health_answering() {
    let started = start("bombs");
    let (port, pid) = (started.port, started.server.0.id());
    let gzip = gzip_bomb(16 << 20, 128);
    let over_limit = snappy(&vec![0u8; 256 << 20]);
    let at_limit = snappy(&vec![0u8; 32 << 20]);
    println!(
        "bombs: gzip {} kB expanding to 2 GiB, snappy {} kB to 256 MiB and {} kB to 32 MiB",
        gzip.len() / 1024,
        over_limit.len() / 1024,
        at_limit.len() / 1024
    );
    let idle_kb = idle_figures(port, pid);
    let watch = Watch::start(port, pid);
    let tokens = Arc::new(started.tokens);
    let mut senders = Vec::new();
    let mut bodies: Vec<(&'static str, &'static str, Vec<u8>, Who)> = vec![(
        "/api/v1/releases/import",
        "application/gzip",
        gzip,
        Who::Operator,
    )];
    for _ in 0..8 {
        bodies.push((
            "/api/v1/ingest/prometheus",
            "application/x-protobuf",
            over_limit.clone(),
            Who::Ingest,
        ));
        bodies.push((
            "/api/v1/ingest/prometheus",
            "application/x-protobuf",
            at_limit.clone(),
            Who::Ingest,
        ));
    }
    for (path, content_type, body, who) in bodies {
        let tokens = Arc::clone(&tokens);
        senders.push(std::thread::spawn(move || {
            let client = agent(Duration::from_secs(120));
            let bomb = case(path, "POST", path, who).raw(content_type, body);
            send(&client, port, &tokens, &bomb).map(|outcome| (outcome.status, outcome.text))
        }));
    }
    let answers: Vec<Option<(u16, String)>> = senders
        .into_iter()
        .map(|sender| sender.join().unwrap())
        .collect();
    let (worst_health_us, health_failures, polls, peak_kb) = watch.finish();
    println!(
        "bombs: answers {:?}; /healthz worst {:.1} ms over {polls} polls ({health_failures} \
         failed); memory idle {} MiB, peak {} MiB (+{} MiB)",
        answers
            .iter()
            .map(|answer| answer.as_ref().map_or(0, |(status, _)| *status))
            .collect::<Vec<_>>(),
        worst_health_us as f64 / 1000.0,
        idle_kb / 1024,
        peak_kb / 1024,
        peak_kb.saturating_sub(idle_kb) / 1024
    );
    for answer in &answers {
        let (status, text) = answer.as_ref().expect("every bomb is answered");
        assert!(
            (400..500).contains(status) || *status == 503,
            "{status} {text}"
        );
    }
    assert!(!started.server.0.has_died(), "the server died");
    hold_bounds(worst_health_us, health_failures, idle_kb, peak_kb);
}

/// Prints what a load was answered and the watch's figures over it: the slowest `/healthz`,
/// its failures and polls, and the memory.
fn print_load(answers: &str, figures: (u64, u64, u64, u64), idle_kb: u64) {
    let (worst_health_us, health_failures, polls, peak_kb) = figures;
    println!(
        "{answers}; /healthz worst {:.1} ms over {polls} polls ({health_failures} failed); \
         memory idle {} MiB, peak {} MiB (+{} MiB)",
        worst_health_us as f64 / 1000.0,
        idle_kb / 1024,
        peak_kb / 1024,
        peak_kb.saturating_sub(idle_kb) / 1024
    );
}

/// `/healthz` always answered and in time, memory within its bound over the idle size.
fn hold_bounds(worst_health_us: u64, health_failures: u64, idle_kb: u64, peak_kb: u64) {
    assert_eq!(health_failures, 0);
    assert!(
        worst_health_us < MAX_HEALTH_MS * 1000,
        "/healthz took {worst_health_us} us"
    );
    assert!(
        peak_kb.saturating_sub(idle_kb) < MAX_GROWTH_KB,
        "memory grew from {idle_kb} to {peak_kb} kB"
    );
}

/// Whether a child process has exited, without reaping it.
trait Died {
    fn has_died(&self) -> bool;
}

impl Died for std::process::Child {
    fn has_died(&self) -> bool {
        let status =
            std::fs::read_to_string(format!("/proc/{}/stat", self.id())).unwrap_or_default();
        // A zombie ('Z') or a missing process has died.
        status.is_empty()
            || status
                .split(") ")
                .nth(1)
                .is_some_and(|rest| rest.starts_with('Z'))
    }
}

/// A recorded release of 300 000 values: 100 metrics on two release and two reference hosts,
/// 750 steps of 30 s, the batch a third of the way in; after it the release hosts' values are
/// `release_factor` times their own.
fn large_bundle(id: &str, release_factor: f64) -> Vec<u8> {
    const STEPS: usize = 750;
    const START: i64 = 1_700_000_000;
    let hosts = ["r1", "r2", "k1", "k2"];
    let mut series = serde_json::Map::new();
    let mut metrics = Vec::new();
    for metric in 0..100 {
        let name = format!("metric_{metric}");
        let mut by_host = serde_json::Map::new();
        for (host_index, host) in hosts.iter().enumerate() {
            let is_release = host.starts_with('r');
            let values: Vec<f64> = (0..STEPS)
                .map(|step| {
                    let value = 100.0 + ((step * 7 + host_index * 13 + metric) % 11) as f64;
                    if is_release && step >= 250 {
                        value * release_factor
                    } else {
                        value
                    }
                })
                .collect();
            by_host.insert((*host).to_owned(), json!(values));
        }
        series.insert(name.clone(), Value::Object(by_host));
        metrics.push(json!({"name": name, "kind": "middleware", "unit": "",
            "direction": "increase", "critical": false}));
    }
    let bundle = json!({
        "format": "release-bundle/1", "id": id, "app": "big", "step_seconds": 30,
        "start": START, "points": STEPS,
        "hosts": [{"name": "r1", "group": "release"}, {"name": "r2", "group": "release"},
                  {"name": "k1", "group": "reference"}, {"name": "k2", "group": "reference"}],
        "batches": [{"index": 0, "at": START + 250 * 30, "hosts": ["r1", "r2"]}],
        "metrics": metrics, "series": series,
    });
    bundle.to_string().into_bytes()
}

/// Two imports of 300 000 values each at once: one is replayed on a blocking thread, the other
/// waits its turn or is told to retry; the server answers `/healthz` throughout.
#[test]
fn two_large_imports_at_once_leave_health_answering() {
    let started = start("imports");
    let (port, pid) = (started.port, started.server.0.id());
    let bodies = [large_bundle("big-1", 1.0), large_bundle("big-2", 1.0)];
    println!(
        "imports: two bundles of 300000 values, {} kB of JSON each",
        bodies[0].len() / 1024
    );
    let idle_kb = idle_figures(port, pid);
    let watch = Watch::start(port, pid);
    let tokens = Arc::new(started.tokens);
    let senders: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let tokens = Arc::clone(&tokens);
            std::thread::spawn(move || {
                let client = agent(Duration::from_secs(300));
                let import = case("import", "POST", "/api/v1/releases/import", Who::Operator)
                    .raw("application/json", body);
                send(&client, port, &tokens, &import).map(|outcome| outcome.status)
            })
        })
        .collect();
    let answers: Vec<Option<u16>> = senders
        .into_iter()
        .map(|sender| sender.join().unwrap())
        .collect();
    // The imported releases stay on the server: a few guard passes go by with them.
    std::thread::sleep(Duration::from_secs(5));
    let (worst_health_us, health_failures, polls, peak_kb) = watch.finish();
    print_load(
        &format!("imports: answers {answers:?}"),
        (worst_health_us, health_failures, polls, peak_kb),
        idle_kb,
    );
    assert!(answers.contains(&Some(201)), "one import is replayed");
    for answer in &answers {
        assert!(
            matches!(answer, Some(201) | Some(503)),
            "an import is replayed or told to retry: {answer:?}"
        );
    }
    hold_bounds(worst_health_us, health_failures, idle_kb, peak_kb);
}

/// A session cookie (`name=value`) for `token`, from the sign-in form.
fn session_cookie(port: u16, token: &str) -> String {
    let answer = agent(Duration::from_secs(30))
        .post(&format!("http://127.0.0.1:{port}/signin"))
        .header("Origin", &format!("http://127.0.0.1:{port}"))
        .content_type("application/x-www-form-urlencoded")
        .send(format!("token={token}&next=/releases"))
        .unwrap();
    assert_eq!(answer.status(), 303, "signed in");
    let set_cookie = answer.headers()["set-cookie"].to_str().unwrap();
    set_cookie.split(';').next().unwrap().to_owned()
}

/// Viewers reading the page of a large paused release at once (a chart for each of its
/// findings' metrics over 750 steps: megabytes of page) and its export: the server answers
/// `/healthz` throughout.
#[test]
fn pages_of_a_large_release_leave_health_answering() {
    let started = start("pages");
    let (port, pid) = (started.port, started.server.0.id());
    let import = case("import", "POST", "/api/v1/releases/import", Who::Operator)
        .raw("application/json", large_bundle("big-fault", 3.0));
    let client = agent(Duration::from_secs(300));
    let imported = send(&client, port, &started.tokens, &import).unwrap();
    assert_eq!(imported.status, 201, "{}", imported.text);
    let cookie = session_cookie(port, &started.tokens.viewer);
    let page = client
        .get(&format!("http://127.0.0.1:{port}/releases/big-fault"))
        .header("Cookie", &cookie)
        .call()
        .unwrap()
        .into_body()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .unwrap();
    println!("pages: the release's page is {} kB", page.len() / 1024);
    assert!(page.contains("<svg"), "the page draws charts");
    let idle_kb = idle_figures(port, pid);
    let watch = Watch::start(port, pid);
    let tokens = Arc::new(started.tokens);
    let readers: Vec<_> = (0..8)
        .map(|reader| {
            let (cookie, tokens) = (cookie.clone(), Arc::clone(&tokens));
            std::thread::spawn(move || {
                let client = agent(Duration::from_secs(60));
                let mut statuses = Vec::new();
                for _ in 0..4 {
                    let status = if reader % 4 == 3 {
                        let export = case(
                            "export",
                            "GET",
                            "/api/v1/releases/big-fault/export",
                            Who::Viewer,
                        );
                        send(&client, port, &tokens, &export).map_or(0, |outcome| outcome.status)
                    } else {
                        client
                            .get(&format!("http://127.0.0.1:{port}/releases/big-fault"))
                            .header("Cookie", &cookie)
                            .call()
                            .map_or(0, |answer| answer.status().as_u16())
                    };
                    statuses.push(status);
                }
                statuses
            })
        })
        .collect();
    let statuses: Vec<u16> = readers
        .into_iter()
        .flat_map(|reader| reader.join().unwrap())
        .collect();
    let (worst_health_us, health_failures, polls, peak_kb) = watch.finish();
    print_load(
        &format!("pages: answers {statuses:?}"),
        (worst_health_us, health_failures, polls, peak_kb),
        idle_kb,
    );
    assert!(statuses.contains(&200), "pages are served");
    for status in &statuses {
        assert!(
            matches!(status, 200 | 503),
            "a page is served or the reader told to retry: {status}"
        );
    }
    hold_bounds(worst_health_us, health_failures, idle_kb, peak_kb);
}
