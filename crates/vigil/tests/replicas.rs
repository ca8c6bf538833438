//! Three `vigil serve` replicas on one PostgreSQL database guard 40 concurrent releases, two of
//! them faulty, while one replica is killed with SIGKILL mid-run. Beside them, one replica on a
//! database of its own gets the very same requests: it is the reference each release must end
//! as (same state; a pause within one step of its pause). Data goes to the three replicas in
//! turn, second by second, so each holds a share of every release's data; batches are
//! reported through different replicas; every notification goes to a webhook receiver run by
//! the test, which counts them per release and event.
//!
//! Checked: the faulty releases pause and the healthy ones succeed, as on the single replica;
//! every pause is notified exactly once and no message is delivered twice; no release has two
//! verdicts recorded for one step or two pauses; `GET /api/v1/replicas` shows the releases of
//! the killed replica taken over by the others within the lease time. A summary line prints the
//! figures. Leases last 5 s here (15 s by default) so that the test stays short.
//!
//! Skipped loudly without `VIGIL_TEST_POSTGRES` (failed when `VIGIL_REQUIRE_POSTGRES` is set).
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use support::{
    call, create_token, free_port, now_seconds, post_ok, replicas, scratch_postgres, Dir, Server,
};

const RELEASES: usize = 40;
/// The releases whose new version triples the latency of its hosts.
const FAULTY: [usize; 2] = [7, 23];
const STEP: i64 = 5;
/// Lowered from the default 15 s to keep the test short.
const LEASE_SECONDS: i64 = 5;
const BASELINE_SECONDS: i64 = 120;
const WARMUP_SECONDS: i64 = 10;
const OBSERVE_SECONDS: i64 = 90;
/// After the first batch: the second batch, the kill, the fault.
const SECOND_BATCH_AFTER: i64 = 15;
const KILL_AFTER: i64 = 30;
const FAULT_AFTER: i64 = 45;
const RELEASE_HOSTS: usize = 4;
const REFERENCE_HOSTS: usize = 4;
/// Each replica guards at least this many of the 40 observing releases (a fair share is 13).
const LEAST_SHARE: usize = 6;

fn release_id(number: usize) -> String {
    format!("rel-{number:02}")
}

fn host_name(number: usize, release_host: bool, index: usize) -> String {
    let group = if release_host { "r" } else { "k" };
    format!("a{number:02}-{group}{index}")
}

/// Latency of a host at `t`: about 100 ms with a little noise, three times that on the release
/// hosts of a faulty release once its fault has started.
fn latency(number: usize, host_index: usize, t: i64, fault_from: Option<i64>) -> f64 {
    let noise = ((t * 7 + host_index as i64 * 13 + number as i64 * 3) % 11) as f64 - 5.0;
    let base = 100.0 + noise;
    let release_host = host_index < RELEASE_HOSTS;
    match fault_from {
        Some(from) if release_host && t >= from && FAULTY.contains(&number) => base * 3.0,
        _ => base,
    }
}

/// Every host of every release at the seconds `times`.
fn samples_at(times: std::ops::RangeInclusive<i64>, fault_from: Option<i64>) -> Value {
    let mut samples = Vec::new();
    for t in times.clone() {
        for number in 0..RELEASES {
            for host_index in 0..RELEASE_HOSTS + REFERENCE_HOSTS {
                let release_host = host_index < RELEASE_HOSTS;
                let index = if release_host {
                    host_index
                } else {
                    host_index - RELEASE_HOSTS
                };
                samples.push(json!({
                    "host": host_name(number, release_host, index),
                    "app": format!("app{number:02}"),
                    "metric": "latency_ms",
                    "time": t,
                    "value": latency(number, host_index, t, fault_from),
                }));
            }
        }
    }
    json!({ "samples": samples, "key": format!("t{}-{}", times.start(), times.end()) })
}

/// One webhook message as received.
#[derive(Debug, Clone)]
struct Received {
    /// The receiver's path the server was configured with: which deployment sent it.
    path: String,
    release: String,
    event: String,
    delivery: String,
}

/// A webhook receiver on loopback: every POST is answered 200 and kept.
fn start_receiver() -> (u16, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let listener_kept = Arc::clone(&received);
    std::thread::spawn(move || {
        for accepted in listener.incoming() {
            let Ok(stream) = accepted else {
                continue;
            };
            let connection_kept = Arc::clone(&listener_kept);
            std::thread::spawn(move || serve_connection(stream, &connection_kept));
        }
    });
    (port, received)
}

/// Reads requests from one connection (kept alive or not) until it closes.
fn serve_connection(stream: std::net::TcpStream, kept: &Mutex<Vec<Received>>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string();
        let mut length = 0usize;
        let mut delivery = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                continue;
            };
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("x-vigil-delivery") {
                delivery = value.trim().to_string();
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        kept.lock().unwrap().push(Received {
            path,
            release: message["release_id"].as_str().unwrap_or("").to_string(),
            event: message["event"].as_str().unwrap_or("").to_string(),
            delivery,
        });
        let answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok";
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// A settings file for one replica: its id, its lease time and one webhook channel to the
/// receiver at `path`.
fn write_config(dir: &Path, replica: &str, receiver_port: u16, path: &str) -> std::path::PathBuf {
    let file = dir.join(format!("{replica}.json"));
    let config = json!({
        "replica": {"id": replica, "lease_seconds": LEASE_SECONDS},
        "notifications": {"channels": [{
            "name": "receiver", "kind": "webhook",
            "url": format!("http://127.0.0.1:{receiver_port}{path}"),
            "secret": "a secret only the test knows",
        }]},
    });
    std::fs::write(&file, config.to_string()).unwrap();
    file
}

/// One running replica.
struct Replica {
    id: String,
    port: u16,
    server: Option<Server>,
}

/// Where the feeder sends data: the replicas still alive, and the single reference replica.
struct Targets {
    live_ports: Vec<u16>,
    single_port: u16,
}

/// What one deployment holds of a release once it has ended.
#[derive(Debug, Clone)]
struct Outcome {
    state: String,
    /// The step of the deciding fault verdict, for a paused release.
    paused_at: Option<i64>,
    /// Steps with more than one verdict recorded.
    doubled_steps: Vec<i64>,
    /// Every verdict recorded: its step and verdict.
    history: Vec<(i64, String)>,
    pauses: usize,
}

fn outcome(port: u16, token: &str, id: &str) -> Outcome {
    let (status, release) = call(port, "GET", &format!("/api/v1/releases/{id}"), token, None);
    assert_eq!(status, 200, "{release}");
    let state = release["state"].as_str().unwrap_or("").to_string();
    let (status, findings) = call(
        port,
        "GET",
        &format!("/api/v1/releases/{id}/findings"),
        token,
        None,
    );
    assert_eq!(status, 200, "{findings}");
    let history: Vec<(i64, String)> = findings["history"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|record| {
            (
                record["at"].as_i64().unwrap_or(0),
                record["verdict"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let mut per_step: BTreeMap<i64, usize> = BTreeMap::new();
    for (at, _) in &history {
        *per_step.entry(*at).or_default() += 1;
    }
    let doubled_steps = per_step
        .iter()
        .filter(|(_, count)| **count > 1)
        .map(|(at, _)| *at)
        .collect();
    let paused_at = (state == "paused" && findings["latest"]["verdict"] == "fault")
        .then(|| findings["latest"]["at"].as_i64())
        .flatten();
    let (status, transitions) = call(
        port,
        "GET",
        &format!("/api/v1/releases/{id}/transitions"),
        token,
        None,
    );
    assert_eq!(status, 200, "{transitions}");
    let pauses = transitions
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|transition| transition["action"] == "pause")
        .count();
    Outcome {
        state,
        paused_at,
        doubled_steps,
        history,
        pauses,
    }
}

/// The states of every release, by id.
fn states(port: u16, token: &str) -> BTreeMap<String, String> {
    let (status, list) = call(port, "GET", "/api/v1/releases?limit=100", token, None);
    assert_eq!(status, 200, "{list}");
    list.as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|release| {
            (
                release["id"].as_str().unwrap_or("").to_string(),
                release["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn sleep_until(t: f64) {
    let left = t - now_seconds();
    if left > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(left));
    }
}

#[test]
fn three_replicas_with_one_killed_guard_forty_releases_as_one_replica_does() {
    let Some(shared) = scratch_postgres("the three-replica test") else {
        return;
    };
    let Some(alone) = scratch_postgres("the three-replica test's single replica") else {
        return;
    };
    let dir = Dir::new("replicas");
    let token = create_token(shared.url(), "admin");
    let single_token = create_token(alone.url(), "admin");
    let (receiver_port, received) = start_receiver();

    let mut replicas_running: Vec<Replica> = ["r1", "r2", "r3"]
        .iter()
        .map(|id| {
            let port = free_port();
            let config = write_config(&dir.0, id, receiver_port, "/replicas");
            let log = dir.0.join(format!("{id}.log"));
            Replica {
                id: id.to_string(),
                port,
                server: Some(support::serve_with_config(
                    shared.url(),
                    port,
                    &config,
                    &log,
                )),
            }
        })
        .collect();
    let single_port = free_port();
    let single_config = write_config(&dir.0, "solo", receiver_port, "/single");
    let _single = support::serve_with_config(
        alone.url(),
        single_port,
        &single_config,
        &dir.0.join("solo.log"),
    );
    let ports: Vec<u16> = replicas_running
        .iter()
        .map(|replica| replica.port)
        .collect();

    // A baseline already past, ten seconds per request, to the replicas in turn and to the
    // single replica.
    let start = now_seconds() as i64;
    let mut turn = 0usize;
    let mut t = start - BASELINE_SECONDS - 10;
    while t <= start {
        let until = (t + 9).min(start);
        let body = samples_at(t..=until, None);
        post_ok(
            ports[turn % 3],
            &token,
            "/api/v1/ingest/samples",
            body.clone(),
        );
        post_ok(single_port, &single_token, "/api/v1/ingest/samples", body);
        turn += 1;
        t = until + 1;
    }
    for number in 0..RELEASES {
        let hosts: Vec<String> = (0..RELEASE_HOSTS)
            .map(|index| host_name(number, true, index))
            .collect();
        let reference: Vec<String> = (0..REFERENCE_HOSTS)
            .map(|index| host_name(number, false, index))
            .collect();
        let request = json!({
            "id": release_id(number), "app": format!("app{number:02}"), "version": "2",
            "hosts": hosts, "reference": {"type": "hosts", "hosts": reference},
            "batches": [{"hosts": hosts[..2]}, {"hosts": hosts[2..]}],
            "step_seconds": STEP, "observe_seconds": OBSERVE_SECONDS,
            "metrics": [{"name": "latency_ms", "kind": "middleware", "direction": "increase",
                         "critical": true}],
            "settings": {"baseline_seconds": BASELINE_SECONDS, "warmup_seconds": WARMUP_SECONDS},
        });
        post_ok(
            ports[number % 3],
            &token,
            "/api/v1/releases",
            request.clone(),
        );
        post_ok(single_port, &single_token, "/api/v1/releases", request);
    }

    // From here on, every second of data goes to the next live replica and to the single one.
    let deployed = now_seconds() as i64;
    let fault_from = deployed + FAULT_AFTER;
    let targets = Arc::new(Mutex::new(Targets {
        live_ports: ports.clone(),
        single_port,
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let feeder_targets = Arc::clone(&targets);
        let feeder_stop = Arc::clone(&stop);
        let feeder_token = token.clone();
        let feeder_single_token = single_token.clone();
        std::thread::spawn(move || {
            let mut last_fed = start;
            let mut turn = 0usize;
            let mut refused: Vec<String> = Vec::new();
            while !feeder_stop.load(Ordering::Relaxed) {
                let now = now_seconds() as i64;
                if now > last_fed {
                    let body = samples_at(last_fed + 1..=now, Some(fault_from));
                    // Held while posting, so that a replica is killed between two requests.
                    let current = feeder_targets.lock().unwrap();
                    let replica_port = current.live_ports[turn % current.live_ports.len()];
                    for (port, port_token) in [
                        (replica_port, &feeder_token),
                        (current.single_port, &feeder_single_token),
                    ] {
                        let (status, answer) = call(
                            port,
                            "POST",
                            "/api/v1/ingest/samples",
                            port_token,
                            Some(body.clone()),
                        );
                        if status != 200 && refused.len() < 5 {
                            refused.push(format!(
                                "data of seconds {}..={now} posted to port {port} answered {status}: {answer}",
                                last_fed + 1
                            ));
                        }
                    }
                    turn += 1;
                    last_fed = now;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            refused
        })
    };
    for (batch, after) in [(0usize, 0i64), (1, SECOND_BATCH_AFTER)] {
        sleep_until((deployed + after) as f64);
        for number in 0..RELEASES {
            let path = format!(
                "/api/v1/releases/{}/batches/{batch}/deployed",
                release_id(number)
            );
            let body = json!({"at": deployed + after});
            post_ok(ports[(number + batch) % 3], &token, &path, body.clone());
            post_ok(single_port, &single_token, &path, body);
        }
    }

    let mut problems: Vec<String> = Vec::new();
    // The kill: preferably the replica that guards the first faulty release, before its fault.
    sleep_until((deployed + KILL_AFTER) as f64);
    let faulty_id = release_id(FAULTY[0]);
    let before_kill = replicas(ports[0], &token);
    let (victim, killed_releases) = match &before_kill {
        Ok(found) => {
            let mut shares = Vec::new();
            for (id, (live, releases)) in found {
                shares.push(format!("{id}: {}", releases.len()));
                if !live {
                    problems.push(format!("replica {id} is not live before the kill"));
                }
                if releases.len() < LEAST_SHARE {
                    problems.push(format!(
                        "replica {id} guards {} of {RELEASES} releases before the kill, fewer than {LEAST_SHARE}: no fair share ({found:?})",
                        releases.len()
                    ));
                }
            }
            println!("releases guarded before the kill: {}", shares.join(", "));
            let holder = found
                .iter()
                .find(|(_, (_, releases))| releases.contains(&faulty_id))
                .map(|(id, (_, releases))| (id.clone(), releases.clone()));
            match holder {
                Some(holder) => holder,
                None => {
                    problems.push(format!(
                        "no replica holds faulty release {faulty_id} before the kill: {found:?}"
                    ));
                    ("r2".to_string(), BTreeSet::new())
                }
            }
        }
        Err(error) => {
            problems.push(format!("before the kill: {error}"));
            ("r2".to_string(), BTreeSet::new())
        }
    };
    let killed_at = {
        let mut current = targets.lock().unwrap();
        let replica = replicas_running
            .iter_mut()
            .find(|replica| replica.id == victim)
            .unwrap();
        current.live_ports.retain(|port| *port != replica.port);
        let mut server = replica.server.take().unwrap();
        server.0.kill().unwrap(); // SIGKILL
        server.0.wait().unwrap();
        drop(server);
        now_seconds()
    };
    println!(
        "killed replica {victim} at +{:.1} s, guarding {} releases",
        killed_at - deployed as f64,
        killed_releases.len()
    );
    let live_port = replicas_running
        .iter()
        .find(|replica| replica.server.is_some())
        .unwrap()
        .port;

    // The takeover: every release the killed replica guarded is guarded by a live one.
    let mut takeover_seconds = None;
    let mut last_seen = String::new();
    if before_kill.is_ok() {
        while now_seconds() < killed_at + (4 * LEASE_SECONDS) as f64 + 10.0 {
            match replicas(live_port, &token) {
                Ok(found) => {
                    let held: BTreeSet<String> = found
                        .iter()
                        .filter(|(id, (live, _))| **id != victim && *live)
                        .flat_map(|(_, (_, releases))| releases.iter().cloned())
                        .collect();
                    let observing = states(live_port, &token);
                    let orphans: Vec<&String> = killed_releases
                        .iter()
                        .filter(|id| {
                            !held.contains(*id)
                                && observing.get(*id).map(String::as_str) == Some("observing")
                        })
                        .collect();
                    let victim_live = found.get(&victim).is_some_and(|(live, _)| *live);
                    last_seen = format!(
                        "not taken over: {orphans:?}; killed replica still live: {victim_live}"
                    );
                    if orphans.is_empty() && !victim_live {
                        takeover_seconds = Some(now_seconds() - killed_at);
                        break;
                    }
                }
                Err(error) => last_seen = error,
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        match takeover_seconds {
            None => problems.push(format!(
                "the killed replica {victim}'s releases were not taken over within {} s: {last_seen}",
                4 * LEASE_SECONDS + 10
            )),
            Some(seconds) if seconds > (LEASE_SECONDS + 3) as f64 => problems.push(format!(
                "the takeover took {seconds:.1} s, more than the lease ({LEASE_SECONDS} s) and 3 s"
            )),
            Some(_) => {}
        }
    }

    // Every release ends on both sides (or the time is up).
    let ends = ["paused", "succeeded"];
    let deadline = (deployed + SECOND_BATCH_AFTER + OBSERVE_SECONDS + 60) as f64;
    loop {
        let shared_states = states(live_port, &token);
        let single_states = states(single_port, &single_token);
        let ended = |found: &BTreeMap<String, String>| {
            found.len() == RELEASES && found.values().all(|state| ends.contains(&state.as_str()))
        };
        if ended(&shared_states) && ended(&single_states) {
            break;
        }
        if now_seconds() > deadline {
            problems.push(format!(
                "not every release ended by +{} s: three replicas {:?}; single replica {:?}",
                deadline as i64 - deployed,
                shared_states
                    .iter()
                    .filter(|(_, state)| !ends.contains(&state.as_str()))
                    .collect::<Vec<_>>(),
                single_states
                    .iter()
                    .filter(|(_, state)| !ends.contains(&state.as_str()))
                    .collect::<Vec<_>>()
            ));
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    stop.store(true, Ordering::Relaxed);
    problems.extend(feeder.join().unwrap());

    let shared_outcomes: BTreeMap<String, Outcome> = (0..RELEASES)
        .map(|number| {
            let id = release_id(number);
            let found = outcome(live_port, &token, &id);
            (id, found)
        })
        .collect();
    let single_outcomes: BTreeMap<String, Outcome> = (0..RELEASES)
        .map(|number| {
            let id = release_id(number);
            let found = outcome(single_port, &single_token, &id);
            (id, found)
        })
        .collect();
    let paused_ids: Vec<String> = shared_outcomes
        .iter()
        .filter(|(_, found)| found.state == "paused")
        .map(|(id, _)| id.clone())
        .collect();

    // The outbox drains: every pause notified (give the notifiers a few rounds), then a little
    // longer to see any second delivery.
    let paused_notified = |path: &str, ids: &[String]| {
        let messages = received.lock().unwrap();
        ids.iter().all(|id| {
            messages.iter().any(|message| {
                message.path == path && message.release == *id && message.event == "paused"
            })
        })
    };
    let single_paused: Vec<String> = single_outcomes
        .iter()
        .filter(|(_, found)| found.state == "paused")
        .map(|(id, _)| id.clone())
        .collect();
    let drain_deadline = now_seconds() + 30.0;
    while now_seconds() < drain_deadline
        && !(paused_notified("/replicas", &paused_ids)
            && paused_notified("/single", &single_paused))
    {
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(8));
    let messages = received.lock().unwrap().clone();

    let mut doubled: Vec<String> = Vec::new();
    for number in 0..RELEASES {
        let id = release_id(number);
        let shared_found = &shared_outcomes[&id];
        let single_found = &single_outcomes[&id];
        let expected = if FAULTY.contains(&number) {
            "paused"
        } else {
            "succeeded"
        };
        if single_found.state != expected {
            problems.push(format!(
                "on the single replica {id} ended {} (expected {expected}): the scenario itself is off",
                single_found.state
            ));
        }
        if shared_found.state != single_found.state {
            problems.push(format!(
                "{id} ended {} on three replicas but {} on one",
                shared_found.state, single_found.state
            ));
        }
        if let (Some(shared_at), Some(single_at)) = (shared_found.paused_at, single_found.paused_at)
        {
            if (shared_at - single_at).abs() > STEP {
                problems.push(format!(
                    "{id} paused at the step +{} s on three replicas, +{} s on one (after the first batch): more than one step ({STEP} s) apart",
                    shared_at - deployed,
                    single_at - deployed
                ));
            }
            if shared_at < fault_from {
                problems.push(format!(
                    "{id} paused at {shared_at}, before its fault started at {fault_from}"
                ));
            }
        }
        if !shared_found.doubled_steps.is_empty() {
            let steps: Vec<String> = shared_found
                .doubled_steps
                .iter()
                .map(|at| format!("+{} s", at - deployed))
                .collect();
            doubled.push(format!("{id} at {}", steps.join(" and ")));
        }
        if shared_found.pauses > 1 {
            problems.push(format!(
                "{id} was paused {} times on three replicas",
                shared_found.pauses
            ));
        }
    }
    if let Some(first) = shared_outcomes
        .iter()
        .find(|(_, found)| !found.doubled_steps.is_empty())
    {
        let written = |history: &[(i64, String)]| {
            history
                .iter()
                .map(|(at, verdict)| format!("+{} s {verdict}", at - deployed))
                .collect::<Vec<_>>()
                .join(", ")
        };
        problems.push(format!(
            "{} releases have two or more verdicts recorded for one step on three replicas (steps after the first batch): {}; {} on three replicas: {}; on one: {}",
            doubled.len(),
            doubled.join(", "),
            first.0,
            written(&first.1.history),
            written(&single_outcomes[first.0].history)
        ));
    }
    let mut per_event: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut deliveries: BTreeMap<String, usize> = BTreeMap::new();
    for message in messages
        .iter()
        .filter(|message| message.path == "/replicas")
    {
        *per_event
            .entry((message.release.clone(), message.event.clone()))
            .or_default() += 1;
        *deliveries.entry(message.delivery.clone()).or_default() += 1;
    }
    for id in &paused_ids {
        let count = per_event
            .get(&(id.clone(), "paused".to_string()))
            .copied()
            .unwrap_or(0);
        if count != 1 {
            problems.push(format!(
                "the pause of {id} was notified {count} times by the three replicas, not once"
            ));
        }
    }
    for (delivery, count) in &deliveries {
        if *count > 1 {
            problems.push(format!(
                "outbox message {delivery} was delivered {count} times by the three replicas"
            ));
        }
    }
    let single_notifications = messages
        .iter()
        .filter(|message| message.path == "/single" && message.event == "paused")
        .count();
    let shared_notifications = per_event
        .iter()
        .filter(|((_, event), _)| event == "paused")
        .map(|(_, count)| count)
        .sum::<usize>();
    let succeeded = shared_outcomes
        .values()
        .filter(|found| found.state == "succeeded")
        .count();
    let step_gaps: Vec<String> = FAULTY
        .iter()
        .map(|number| {
            let id = release_id(*number);
            match (
                shared_outcomes[&id].paused_at,
                single_outcomes[&id].paused_at,
            ) {
                (Some(shared_at), Some(single_at)) => format!(
                    "{id} at the step {} s after its fault began, one replica at {} s",
                    shared_at - fault_from,
                    single_at - fault_from
                ),
                _ => format!("{id} not paused"),
            }
        })
        .collect();
    println!(
        "three replicas, {RELEASES} releases: {} paused ({}), {succeeded} succeeded; pause notifications received {shared_notifications} (one replica: {single_notifications}); killed {victim} guarding {} releases, taken over in {}; lease {LEASE_SECONDS} s, step {STEP} s",
        paused_ids.len(),
        step_gaps.join(", "),
        killed_releases.len(),
        takeover_seconds.map_or("(not seen)".to_string(), |seconds| format!("{seconds:.1} s")),
    );
    if !problems.is_empty() {
        for replica in replicas_running.iter().map(|replica| &replica.id) {
            let log =
                std::fs::read_to_string(dir.0.join(format!("{replica}.log"))).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            println!("last lines of {replica}'s log: {tail:#?}");
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems with three replicas:\n- {}",
        problems.len(),
        problems.join("\n- ")
    );
}
