//! `vigil agent` against a real `vigil serve`: the built binary pushes the host's `/proc`
//! metrics and the events of a followed log file (a multi-line stack trace counting as one
//! event), and the server holds them. The server is killed with SIGKILL mid-run and started
//! again on the same store: what the agent sent meanwhile, and what the dead server never
//! acknowledged, arrives once, nothing lost and nothing counted twice. An agent killed while
//! the server is down sends, once started again, what it had queued (kept on disk) and the log
//! lines written while it was not running.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::json;
use support::{
    call, create_token, free_port, now_seconds, post_ok, serve, upload_artifact, vigil, Dir,
};

const HOST: &str = "agent-host-1";
const APP: &str = "shop";
const STEP: i64 = 2;

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn append(path: &Path, text: &str) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

/// Five plain lines and one error with a Java stack trace: six events, one an exception.
fn write_events(path: &Path, round: u32, exception: &str) {
    let mut text = String::new();
    for order in 0..5 {
        text.push_str(&format!(
            "2026-12-07 10:00:0{order} INFO order {round}{order} placed for customer {order}\n"
        ));
    }
    text.push_str(&format!(
        "2026-12-07 10:00:09 ERROR order {round} failed\n\
{exception}: stock is gone\n\
\tat com.shop.OrderService.place(OrderService.java:42)\n\
\tat com.shop.Api.post(Api.java:7)\n\
\t... 12 more\n"
    ));
    append(path, &text);
}

/// The onboarding report's log counts of the host: (events, exception events), and the
/// exception templates' texts.
fn host_logs(port: u16, token: &str) -> (u64, u64, Vec<String>) {
    let (status, report) = call(
        port,
        "GET",
        &format!("/api/v1/apps/{APP}/onboarding"),
        token,
        None,
    );
    assert_eq!(status, 200, "{report}");
    let host = report["logs"]["hosts"]
        .as_array()
        .and_then(|hosts| hosts.iter().find(|host| host["host"] == HOST).cloned());
    let templates = report["logs"]["top_exceptions"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|template| template["text"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default();
    match host {
        Some(host) => (
            host["lines"].as_u64().unwrap_or(0),
            host["exception_lines"].as_u64().unwrap_or(0),
            templates,
        ),
        None => (0, 0, templates),
    }
}

/// A server, a release watching the host, and an agent following `app.log`, which by now
/// holds one round of events (6, one an exception) that the agent sent.
struct Running {
    dir: Dir,
    database: std::path::PathBuf,
    port: u16,
    admin: String,
    ingest: String,
    server: support::Server,
    log: std::path::PathBuf,
    agent: Agent,
}

fn start_running(label: &str, release: &str) -> Running {
    let dir = Dir::new(label);
    let database = dir.0.join("vigil.db");
    let admin = create_token(&database, "admin");
    let ingest = create_token(&database, "ingest");
    let port = free_port();
    let server = serve(&database, port);
    watch_host(port, &admin, release, now_seconds() as i64);
    let log = dir.0.join("app.log");
    append(
        &log,
        "2026-12-07 09:59:59 INFO written before the agent started\n",
    );
    let agent = start_agent(port, &ingest, &dir.0, &log, "agent.log");
    std::thread::sleep(Duration::from_secs(2));
    write_events(&log, 1, "java.lang.IllegalStateException");
    std::thread::sleep(Duration::from_secs(3));
    Running {
        dir,
        database,
        port,
        admin,
        ingest,
        server,
        log,
        agent,
    }
}

/// A release of the host, deployed at `start`, for the host's series through the API.
fn watch_host(port: u16, admin: &str, release: &str, start: i64) {
    post_ok(
        port,
        admin,
        "/api/v1/releases",
        json!({
            "id": release, "app": APP, "version": "2", "hosts": [HOST],
            "reference": {"type": "none"}, "step_seconds": STEP, "observe_seconds": 3600,
            "metrics": [{"name": "memory_used_ratio", "kind": "system", "direction": "increase",
                         "critical": false}],
        }),
    );
    post_ok(
        port,
        admin,
        &format!("/api/v1/releases/{release}/batches/0/deployed"),
        json!({"at": start}),
    );
}

/// `vigil agent` for the host, its state in `dir/agent-state`, following `log`, sampling every
/// second, its own log in `dir/agent_log`.
fn start_agent(port: u16, ingest: &str, dir: &Path, log: &Path, agent_log: &str) -> Agent {
    let agent_log = std::fs::File::create(dir.join(agent_log)).unwrap();
    Agent(
        vigil()
            .args(["agent", "--server", &format!("http://127.0.0.1:{port}")])
            .args(["--token", ingest, "--app", APP, "--host", HOST])
            .args(["--label", "zone=b", "--metrics-interval", "1"])
            .arg("--state-dir")
            .arg(dir.join("agent-state"))
            .arg("--log-file")
            .arg(log)
            .stdout(Stdio::null())
            .stderr(Stdio::from(agent_log))
            .spawn()
            .unwrap(),
    )
}

/// The host's log counts once they reach `events` and `exceptions`, and again a few seconds
/// later (when late resends would have counted twice).
fn settled_logs(port: u16, admin: &str, events: u64, exceptions: u64) -> (u64, u64, Vec<String>) {
    let mut counted = (0, 0, Vec::new());
    for _ in 0..150 {
        counted = host_logs(port, admin);
        if counted.0 >= events && counted.1 >= exceptions {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    let settled = host_logs(port, admin);
    println!(
        "events {} (first count {}), exceptions {}, templates {:?}",
        settled.0, counted.0, settled.1, settled.2
    );
    settled
}

#[test]
fn an_agent_pushes_proc_metrics_and_log_events_and_loses_nothing_over_a_server_restart() {
    let Running {
        dir: _dir,
        database,
        port,
        admin,
        server: first,
        log,
        agent: _agent,
        ..
    } = start_running("agent", "agent-1");

    // The server dies without warning; the agent keeps sampling and tailing.
    let mut killed = first;
    killed.0.kill().unwrap();
    killed.0.wait().unwrap();
    drop(killed);
    let outage_start = now_seconds() as i64;
    std::thread::sleep(Duration::from_secs(1));
    write_events(&log, 2, "java.lang.ArithmeticException");
    std::thread::sleep(Duration::from_secs(5));
    let outage_end = now_seconds() as i64;
    let _second = serve(&database, port);

    // Every event arrives once: 12 events, 2 of them exceptions (each stack trace one event).
    let (events, exceptions, templates) = settled_logs(port, &admin, 12, 2);
    assert_eq!(events, 12, "{templates:?}");
    assert_eq!(exceptions, 2, "{templates:?}");
    for class in [
        "java.lang.IllegalStateException",
        "java.lang.ArithmeticException",
    ] {
        assert!(
            templates.iter().any(|text| text.contains(class)),
            "{class} not among {templates:?}"
        );
    }

    // The host registered with its labels and polls.
    let (status, agents) = call(port, "GET", "/api/v1/agents", &admin, None);
    assert_eq!(status, 200, "{agents}");
    let registered = agents
        .as_array()
        .unwrap()
        .iter()
        .find(|agent| agent["host"] == HOST)
        .unwrap_or_else(|| panic!("{HOST} is not registered: {agents}"));
    assert_eq!(registered["app"], APP, "{registered}");
    assert_eq!(registered["labels"]["zone"], "b", "{registered}");
    assert_eq!(registered["online"], true, "{registered}");

    // The metrics sampled while the server was down arrived after its restart: every step of
    // the outage holds a value of the host's memory use, read from /proc.
    let outage_steps = steps_sampled(port, &admin, "agent-1", outage_start, outage_end);
    println!("outage steps covered: {outage_steps}");
    assert!(outage_steps >= 2, "the outage covered {outage_steps} steps");
    // The other /proc metrics arrive too.
    for metric in ["load1", "cpu_utilization"] {
        let (status, answer) = call(
            port,
            "GET",
            &format!("/api/v1/releases/agent-1/series?metric={metric}"),
            &admin,
            None,
        );
        assert_eq!(status, 200, "{metric}: {answer}");
    }
}

#[test]
fn an_agent_killed_while_the_server_is_down_sends_what_it_had_queued_and_the_lines_written_meanwhile(
) {
    let Running {
        dir,
        database,
        port,
        admin,
        ingest,
        server: first,
        log,
        agent,
    } = start_running("agent-killed", "agent-2");

    // The server goes; the agent queues metrics and events; then the agent is killed too.
    drop(first);
    let outage_start = now_seconds() as i64;
    std::thread::sleep(Duration::from_secs(1));
    write_events(&log, 2, "java.lang.ArithmeticException");
    std::thread::sleep(Duration::from_secs(5));
    let mut killed = agent;
    killed.0.kill().unwrap();
    killed.0.wait().unwrap();
    let agent_killed = now_seconds() as i64;
    drop(killed);
    // Lines the host writes while no agent runs.
    write_events(&log, 3, "java.lang.NullPointerException");
    std::thread::sleep(Duration::from_secs(1));

    let _second = serve(&database, port);
    let _again = start_agent(port, &ingest, &dir.0, &log, "agent-again.log");
    let (events, exceptions, templates) = settled_logs(port, &admin, 18, 3);
    assert_eq!(events, 18, "{templates:?}");
    assert_eq!(exceptions, 3, "{templates:?}");
    for class in [
        "java.lang.IllegalStateException",
        "java.lang.ArithmeticException",
        "java.lang.NullPointerException",
    ] {
        assert!(
            templates.iter().any(|text| text.contains(class)),
            "{class} not among {templates:?}"
        );
    }
    // Sampled while the server was down, queued on disk when the agent was killed, sent by
    // the agent started again.
    let queued_steps = steps_sampled(port, &admin, "agent-2", outage_start, agent_killed);
    println!("steps sampled between the server's and the agent's death: {queued_steps}");
    assert!(queued_steps >= 2, "only {queued_steps} steps");
}

/// How many steps of the release's host series lie in `from..until`, asserting each holds a
/// sample of the host's memory use (a ratio, read from /proc).
fn steps_sampled(port: u16, token: &str, release: &str, from: i64, until: i64) -> usize {
    let (status, series) = call(
        port,
        "GET",
        &format!("/api/v1/releases/{release}/series?metric=memory_used_ratio"),
        token,
        None,
    );
    assert_eq!(status, 200, "{series}");
    let window_start = series["start"].as_i64().unwrap();
    let step = series["step_seconds"].as_i64().unwrap();
    let host = series["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|host| host["host"] == HOST)
        .unwrap_or_else(|| panic!("no series of {HOST}: {series}"));
    let values = host["values"].as_array().unwrap();
    let mut steps = 0;
    for (index, value) in values.iter().enumerate() {
        let at = window_start + index as i64 * step;
        if at < from || at + step > until {
            continue;
        }
        steps += 1;
        let ratio = value
            .as_f64()
            .unwrap_or_else(|| panic!("no sample at {at} (of {from}..{until}): {value}"));
        assert!((0.0..=1.0).contains(&ratio), "{ratio}");
    }
    steps
}

/// GET `path` until `ready` holds for the answer (at most `seconds`); the last answer.
fn wait_for(
    port: u16,
    token: &str,
    path: &str,
    seconds: u64,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    for _ in 0..seconds * 5 {
        let (status, answer) = call(port, "GET", path, token, None);
        if status == 200 && ready(&answer) {
            return answer;
        }
        last = answer;
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("GET {path} did not get there in {seconds} s: {last}");
}

#[test]
fn an_agent_deploys_a_release_from_its_artifact_and_rolls_it_back_to_the_version_on_its_disk() {
    let dir = Dir::new("agent-deploy");
    let database = dir.0.join("vigil.db");
    let admin = create_token(&database, "admin");
    let ingest = create_token(&database, "ingest");
    let port = free_port();
    let _server = serve(&database, port);

    // The host ran version 1 before, deployed by this agent: it is on its disk.
    let state = dir.0.join("agent-state");
    let version_one = state.join("versions").join("1");
    std::fs::create_dir_all(&version_one).unwrap();
    std::fs::write(version_one.join("shop-1.txt"), b"version one").unwrap();
    std::fs::write(version_one.join(".artifact"), b"shop-1.txt").unwrap();
    std::fs::write(state.join("current"), b"1\n").unwrap();

    let agent_log = std::fs::File::create(dir.0.join("agent.log")).unwrap();
    let _agent = Agent(
        vigil()
            .args(["agent", "--server", &format!("http://127.0.0.1:{port}")])
            .args(["--token", &ingest, "--app", APP, "--host", HOST])
            .args(["--label", "role=web", "--metrics-interval", "1"])
            // Every interface: the peer address sent is the one toward the server.
            .args(["--peer-listen", "0.0.0.0:0"])
            .args([
                "--deploy-command",
                "cp {artifact} {dir}/installed && echo from {previous} to {version}",
            ])
            .arg("--state-dir")
            .arg(&state)
            .stdout(Stdio::null())
            .stderr(Stdio::from(agent_log))
            .spawn()
            .unwrap(),
    );
    wait_for(port, &admin, "/api/v1/agents", 20, |agents| {
        agents.as_array().is_some_and(|list| {
            list.iter()
                .any(|agent| agent["host"] == HOST && agent["version"] == "1")
        })
    });

    let artifact = upload_artifact(port, &admin, "shop-2.txt", b"version two");
    post_ok(
        port,
        &admin,
        "/api/v1/deployments",
        json!({
            "id": "deploy-2", "app": APP, "version": "2", "artifact": artifact,
            "hosts": {"selector": "role=\"web\""},
            "plan": [{"size": "100%", "observe_seconds": 600}],
            "step_seconds": STEP,
            "metrics": [{"name": "load1", "kind": "system", "direction": "increase",
                         "critical": false}],
        }),
    );
    let deployed = wait_for(
        port,
        &admin,
        "/api/v1/releases/deploy-2/execution",
        60,
        |execution| {
            execution["tasks"].as_array().is_some_and(|tasks| {
                tasks
                    .iter()
                    .any(|task| task["kind"] == "deploy" && task["state"] == "succeeded")
            })
        },
    );
    println!("deployed: {}", deployed["tasks"]);
    let version_two = state.join("versions").join("2");
    assert_eq!(
        std::fs::read(version_two.join("shop-2.txt")).unwrap(),
        b"version two"
    );
    assert_eq!(
        std::fs::read(version_two.join("installed")).unwrap(),
        b"version two"
    );
    assert_eq!(
        std::fs::read_to_string(state.join("current")).unwrap(),
        "2\n"
    );
    let deploy_task = deployed["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|task| task["kind"] == "deploy")
        .unwrap()
        .clone();
    assert_eq!(deploy_task["message"], "from 1 to 2", "{deploy_task}");
    let agents = wait_for(port, &admin, "/api/v1/agents", 20, |agents| {
        agents.as_array().is_some_and(|list| {
            list.iter()
                .any(|agent| agent["host"] == HOST && !agent["peer_addr"].is_null())
        })
    });
    let peer_addr = agents[0]["peer_addr"].as_str().unwrap_or_default();
    assert!(peer_addr.starts_with("127.0.0.1:"), "{agents}");

    post_ok(
        port,
        &admin,
        "/api/v1/releases/deploy-2/rollback",
        json!({"reason": "checking the rollback"}),
    );
    let rolled_back = wait_for(port, &admin, "/api/v1/releases/deploy-2", 60, |release| {
        release["state"] == "rolled_back"
    });
    println!("rolled back: {}", rolled_back["reason"]);
    assert_eq!(
        std::fs::read_to_string(state.join("current")).unwrap(),
        "1\n"
    );
    assert_eq!(
        std::fs::read(version_one.join("installed")).unwrap(),
        b"version one"
    );
    let (_, execution) = call(
        port,
        "GET",
        "/api/v1/releases/deploy-2/execution",
        &admin,
        None,
    );
    let tasks = execution["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2, "{execution}");
    assert!(
        tasks.iter().all(|task| task["state"] == "succeeded"),
        "{execution}"
    );
    // The agent's own record: each task id ran once.
    let ledger: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("tasks.json")).unwrap()).unwrap();
    let mut ran: Vec<i64> = ledger["ran"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_i64().unwrap())
        .collect();
    let mut ids: Vec<i64> = tasks
        .iter()
        .map(|task| task["id"].as_i64().unwrap())
        .collect();
    ran.sort_unstable();
    ids.sort_unstable();
    assert_eq!(ran, ids);
}
