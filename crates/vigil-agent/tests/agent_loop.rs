//! The agent's loop against a small HTTP server that speaks the agent routes of the contract
//! as a server would: the agent registers (again when the server forgets it), runs the tasks
//! it is given in order and once each, even when they are given again and across a restart of
//! the agent, reports them until they are acknowledged, and resends metric and log batches the
//! server failed to take with the same keys.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use vigil_agent::{AgentConfig, Deployer, HostParts, LogSource, MetricSample, Probe};
use vigil_core::agent::{AgentHello, AgentPoll, HostTask, TaskKind, TaskState};

#[derive(Default)]
struct Fake {
    registrations: Vec<AgentHello>,
    polls: Vec<AgentPoll>,
    /// Keys of the batches taken, and of those answered 503.
    taken_keys: Vec<String>,
    failed_keys: Vec<String>,
    log_lines: Vec<String>,
    samples: usize,
    /// Ingest requests to answer 503 before taking any.
    fail_ingest: u32,
    /// Tasks handed out while not ended.
    tasks: Vec<HostTask>,
    /// Hand out ended tasks too (a server that lost what it was told).
    forgetful: bool,
    /// Answer the next poll with registered=false.
    forget_host: bool,
}

fn task(id: i64, kind: TaskKind, version: &str) -> HostTask {
    HostTask {
        id,
        release: "r1".into(),
        host: "web-1".into(),
        batch: 0,
        kind,
        version: version.into(),
        artifact: None,
        state: TaskState::Pending,
        created_at: 0,
        started_at: None,
        ended_at: None,
        message: String::new(),
    }
}

fn answer(stream: &mut TcpStream, status: u16, body: &Value) {
    let text = body.to_string();
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
}

fn handle(mut stream: TcpStream, fake: &Mutex<Fake>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_owned();
    let mut state = fake.lock().unwrap();
    match path.as_str() {
        "/api/v1/agents" => {
            let hello: AgentHello = serde_json::from_slice(&body).unwrap();
            state.registrations.push(hello);
            answer(&mut stream, 200, &json!({}));
        }
        "/api/v1/agents/web-1/poll" => {
            let poll: AgentPoll = serde_json::from_slice(&body).unwrap();
            let acknowledged: Vec<i64> = poll.reports.iter().map(|report| report.task).collect();
            let ended: Vec<i64> = poll
                .reports
                .iter()
                .filter(|report| report.state.is_ended())
                .map(|report| report.task)
                .collect();
            if !state.forgetful {
                state.tasks.retain(|task| !ended.contains(&task.id));
            }
            state.polls.push(poll);
            if std::mem::take(&mut state.forget_host) {
                answer(
                    &mut stream,
                    200,
                    &json!({"acknowledged": [], "tasks": [], "fetch": [],
                    "poll_seconds": 1, "registered": false}),
                );
                return;
            }
            let orders = json!({"acknowledged": acknowledged, "tasks": state.tasks, "fetch": [],
                "poll_seconds": 1, "registered": true});
            answer(&mut stream, 200, &orders);
        }
        "/api/v1/ingest/samples" | "/api/v1/ingest/logs" => {
            let parsed: Value = serde_json::from_slice(&body).unwrap();
            let key = parsed["key"].as_str().unwrap().to_owned();
            if state.fail_ingest > 0 {
                state.fail_ingest -= 1;
                state.failed_keys.push(key);
                answer(&mut stream, 503, &json!({"error": "restarting"}));
                return;
            }
            if !state.taken_keys.contains(&key) {
                state.taken_keys.push(key);
                if let Some(samples) = parsed["samples"].as_array() {
                    state.samples += samples.len();
                }
                if let Some(lines) = parsed["lines"].as_array() {
                    for line in lines {
                        state
                            .log_lines
                            .push(line["line"].as_str().unwrap().to_owned());
                    }
                }
            }
            answer(&mut stream, 200, &json!({"accepted": 1}));
        }
        _ => answer(&mut stream, 404, &json!({"error": "no route"})),
    }
}

fn start_fake(fake: Arc<Mutex<Fake>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let serving = Arc::clone(&fake);
            std::thread::spawn(move || handle(stream, &serving));
        }
    });
    port
}

struct Steady;

impl Probe for Steady {
    fn sample(&mut self, _now_ms: i64) -> Vec<MetricSample> {
        vec![MetricSample {
            metric: "load1".into(),
            value: 0.5,
        }]
    }
}

/// Gives its lines at the first read, then nothing.
struct Once(Vec<String>);

impl LogSource for Once {
    fn read_lines(&mut self, _now_ms: i64) -> Vec<String> {
        std::mem::take(&mut self.0)
    }
}

type Calls = Arc<Mutex<Vec<(TaskKind, String)>>>;

struct Recording(Calls);

impl Deployer for Recording {
    fn deploy(&mut self, task: &HostTask, _artifact: Option<&Path>) -> Result<String, String> {
        self.0
            .lock()
            .unwrap()
            .push((TaskKind::Deploy, task.version.clone()));
        Ok("deployed".into())
    }
    fn rollback(&mut self, task: &HostTask) -> Result<String, String> {
        self.0
            .lock()
            .unwrap()
            .push((TaskKind::Rollback, task.version.clone()));
        Ok("rolled back".into())
    }
}

/// Runs an agent on its own runtime until `until` holds for the fake (or 20 s pass).
fn run_agent(
    port: u16,
    state_dir: &Path,
    lines: Vec<String>,
    calls: &Calls,
    fake: &Arc<Mutex<Fake>>,
    until: impl Fn(&Fake) -> bool,
) -> bool {
    let mut config = AgentConfig::new(
        &format!("http://127.0.0.1:{port}"),
        "token",
        "web-1",
        "shop",
        state_dir.to_path_buf(),
    );
    config.metrics_interval_seconds = 1;
    config.request_timeout_seconds = 5;
    let parts = HostParts {
        probe: Box::new(Steady),
        logs: Box::new(Once(lines)),
        deployer: Box::new(Recording(Arc::clone(calls))),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let clock: Arc<dyn vigil_core::Clock> = Arc::new(vigil_core::SystemClock);
    let agent = runtime.spawn(vigil_agent::run(config, parts, clock, async move {
        let _ = stopped.await;
    }));
    let mut reached = false;
    for _ in 0..200 {
        if until(&fake.lock().unwrap()) {
            reached = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = stop.send(());
    runtime.block_on(agent).unwrap().unwrap();
    reached
}

fn scratch(label: &str) -> PathBuf {
    let path =
        std::env::temp_dir().join(format!("vigil-agent-loop-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    path
}

fn reported(fake: &Fake, task: i64, state: TaskState) -> bool {
    fake.polls.iter().any(|poll| {
        poll.reports
            .iter()
            .any(|report| report.task == task && report.state == state)
    })
}

#[test]
fn the_agent_registers_runs_its_tasks_once_and_resends_what_was_not_taken() {
    let state_dir = scratch("tasks");
    let fake = Arc::new(Mutex::new(Fake {
        fail_ingest: 3,
        tasks: vec![
            task(41, TaskKind::Rollback, "1"),
            task(42, TaskKind::Deploy, "2"),
        ],
        forget_host: true,
        ..Fake::default()
    }));
    let port = start_fake(Arc::clone(&fake));
    let calls: Calls = Arc::default();
    let trace = [
        "2026-12-07 10:00:00 ERROR order 7 failed",
        "java.lang.IllegalStateException: stock is gone",
        "\tat com.shop.OrderService.place(OrderService.java:42)",
        "2026-12-07 10:00:01 INFO order 8 placed",
    ]
    .map(str::to_owned)
    .to_vec();
    let done = |fake: &Fake| {
        fake.tasks.is_empty()
            && fake.log_lines.len() == 2
            && fake
                .failed_keys
                .iter()
                .all(|key| fake.taken_keys.contains(key))
            && fake.samples >= 3
    };
    assert!(run_agent(port, &state_dir, trace, &calls, &fake, done));
    {
        let seen = fake.lock().unwrap();
        assert_eq!(
            *calls.lock().unwrap(),
            [
                (TaskKind::Rollback, "1".to_owned()),
                (TaskKind::Deploy, "2".to_owned())
            ]
        );
        // Registered, forgotten by the server, registered again (and once more after each
        // task, with the version it runs).
        assert!(
            seen.registrations.len() >= 2,
            "{}",
            seen.registrations.len()
        );
        assert!(seen
            .registrations
            .iter()
            .any(|hello| hello.version.as_deref() == Some("2")));
        for id in [41, 42] {
            assert!(reported(&seen, id, TaskState::Started));
            assert!(reported(&seen, id, TaskState::Succeeded));
        }
        // The stack trace is one event; the batches refused with a 503 came again, same keys.
        assert_eq!(seen.log_lines.len(), 2, "{:?}", seen.log_lines);
        assert_eq!(seen.log_lines[0].lines().count(), 3);
        assert_eq!(seen.failed_keys.len(), 3);
        let mut unique = seen.taken_keys.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), seen.taken_keys.len());
    }
    assert_eq!(
        std::fs::read_to_string(state_dir.join("current")).unwrap(),
        "2\n"
    );

    // A server that hands the same tasks out again, to an agent started again on the same
    // state directory: nothing runs twice.
    {
        let mut serving = fake.lock().unwrap();
        serving.forgetful = true;
        serving.tasks = vec![
            task(41, TaskKind::Rollback, "1"),
            task(42, TaskKind::Deploy, "2"),
        ];
        serving.polls.clear();
    }
    let polled = run_agent(port, &state_dir, Vec::new(), &calls, &fake, |fake| {
        fake.polls.len() >= 3
    });
    assert!(polled);
    assert_eq!(calls.lock().unwrap().len(), 2);
    let _ = std::fs::remove_dir_all(&state_dir);
}
