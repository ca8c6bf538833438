//! How many releases 1, 2 and 3 `vigil serve` replicas on one PostgreSQL judge within a step,
//! on this machine and per core, and how long a release waits for another replica after its
//! replica is killed with SIGKILL.
//!
//! For each number of replicas: a database of its own, the replicas started as users run them
//! (`vigil serve --config`), a baseline already past, then `--releases` releases (4 release and 4
//! reference hosts, 3 metrics, 5 s steps) deployed at once, their data pushed every second to
//! the replicas in turn. Every step for `--seconds` the bench reads each replica's `/metrics`:
//! `vigil_guard_judgements_total` and the sum of `vigil_guard_pass_seconds`. Per step: the
//! releases judged in it, and how many releases the replicas would judge within the step if
//! the busiest replica's guard were busy all of it (the releases judged over its share of the
//! step spent in passes, the cost of a judgement taken as it is at this load); the table shows
//! the median over the steps, the range, per core, and how busy each replica's guard was. The
//! replicas of one machine share its cores: past them, more replicas add no capacity; ingestion
//! (decoding, storing, following) is not in these figures but in the guard's busy share only as
//! far as it slows the passes down. So the table also shows the cores the replica processes
//! used over the window (their CPU time from `/proc`, PostgreSQL's left out) and the releases
//! per core that makes, everything a replica does for them included.
//! The failover time is from the kill until `GET /api/v1/replicas` shows every observing
//! release of the killed replica guarded by a live one: with the default lease (15 s) after the
//! three-replica run, then with a 5 s lease on a smaller fleet. All runs share one machine
//! that is noisy: compare the figures of one run.
//!
//! Needs `VIGIL_TEST_POSTGRES`. `cargo bench -p vigil --bench replicas -- [--releases N]
//! [--seconds S]`
#![allow(
    clippy::disallowed_methods,
    clippy::print_stdout,
    clippy::unwrap_used,
    dead_code
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use support::{
    call, create_token, free_port, now_seconds, post_ok, replicas, scratch_postgres, Dir, Server,
};

const STEP: i64 = 5;
const RELEASE_HOSTS: usize = 4;
const REFERENCE_HOSTS: usize = 4;
const METRICS: [&str; 3] = ["latency_ms", "errors", "cpu"];
const BASELINE_SECONDS: i64 = 120;
/// From the deploy to the first reading of the metrics: the first steps build the evaluators.
const SETTLE_SECONDS: i64 = 15;
const DEFAULT_LEASE_SECONDS: i64 = 15;
const SHORT_LEASE_SECONDS: i64 = 5;

fn number_argument(name: &str, default: usize) -> usize {
    let flag = format!("--{name}");
    let arguments: Vec<String> = std::env::args().collect();
    arguments
        .iter()
        .position(|argument| *argument == flag)
        .and_then(|position| arguments.get(position + 1))
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn host_name(number: usize, release_host: bool, index: usize) -> String {
    let group = if release_host { "r" } else { "k" };
    format!("b{number:03}-{group}{index}")
}

fn value(metric: usize, number: usize, host: usize, t: i64) -> f64 {
    let noise = ((t * 7 + host as i64 * 13 + number as i64 * 3 + metric as i64) % 11) as f64;
    match metric {
        0 => 95.0 + noise,
        1 => 1.0 + noise / 10.0,
        _ => 40.0 + noise,
    }
}

/// Every metric of every host of `releases` releases at the seconds `times`.
fn samples_at(releases: usize, times: std::ops::RangeInclusive<i64>) -> Value {
    let mut samples = Vec::new();
    for t in times.clone() {
        for number in 0..releases {
            for host in 0..RELEASE_HOSTS + REFERENCE_HOSTS {
                let release_host = host < RELEASE_HOSTS;
                let index = if release_host {
                    host
                } else {
                    host - RELEASE_HOSTS
                };
                for (metric, name) in METRICS.iter().enumerate() {
                    samples.push(json!({
                        "host": host_name(number, release_host, index),
                        "app": format!("bench{number:03}"), "metric": name, "time": t,
                        "value": value(metric, number, host, t),
                    }));
                }
            }
        }
    }
    json!({ "samples": samples, "key": format!("t{}-{}", times.start(), times.end()) })
}

/// The sum over label sets of the samples named exactly `name` in a Prometheus text page.
fn metric_sum(page: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in page.lines().filter(|line| !line.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        let Some(number) = rest
            .rsplit(' ')
            .next()
            .and_then(|text| text.parse::<f64>().ok())
        else {
            continue;
        };
        found = Some(found.unwrap_or(0.0) + number);
    }
    found
}

/// (judgements, seconds of guard passes) of one replica, or why they cannot be read.
fn guard_counters(port: u16, token: &str) -> Result<(f64, f64), String> {
    let (status, answer) = call(port, "GET", "/metrics", token, None);
    if status != 200 {
        return Err(format!("GET /metrics answered {status}: {answer}"));
    }
    let page = answer["text"].as_str().unwrap_or("");
    let judgements = metric_sum(page, "vigil_guard_judgements_total")
        .ok_or("/metrics has no vigil_guard_judgements_total")?;
    let pass_seconds = metric_sum(page, "vigil_guard_pass_seconds_sum")
        .ok_or("/metrics has no vigil_guard_pass_seconds_sum")?;
    Ok((judgements, pass_seconds))
}

/// CPU seconds (user and system) a process has used, from `/proc/<pid>/stat` (Linux; clock
/// ticks of 1/100 s, the kernel's `USER_HZ`); `None` elsewhere.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / 100.0)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        length if length % 2 == 1 => sorted[length / 2],
        length => (sorted[length / 2 - 1] + sorted[length / 2]) / 2.0,
    }
}

/// The replicas' counters at one time: per replica (judgements, seconds of guard passes), and
/// the CPU seconds of all of them.
struct Reading {
    at: f64,
    counters: Vec<(f64, f64)>,
    cpu: Option<f64>,
}

/// What one run measured.
struct Figures {
    replicas: usize,
    releases: usize,
    /// Per step of the window: judgements made in it, and releases the replicas would judge
    /// within one step's time at their rate during their passes.
    judged_per_step: Vec<f64>,
    capacity_per_step: Vec<f64>,
    /// Per replica: the share of the window its guard spent in passes.
    busy: Vec<f64>,
    /// Cores the replica processes kept busy over the window, all together (`None` without
    /// `/proc`).
    cores_used: Option<f64>,
    failover_seconds: Option<f64>,
    problems: Vec<String>,
}

/// A fleet of `replica_count` replicas on a database of its own, `releases` releases deployed,
/// measured for `window` seconds; then, with `kill`, the replica guarding most releases killed
/// and the takeover timed.
fn run(replica_count: usize, releases: usize, window: i64, lease: i64, kill: bool) -> Figures {
    let mut figures = Figures {
        replicas: replica_count,
        releases,
        judged_per_step: Vec::new(),
        capacity_per_step: Vec::new(),
        busy: Vec::new(),
        cores_used: None,
        failover_seconds: None,
        problems: Vec::new(),
    };
    let Some(database) = scratch_postgres("the replicas benchmark") else {
        figures
            .problems
            .push("no PostgreSQL server given (VIGIL_TEST_POSTGRES)".to_string());
        return figures;
    };
    let dir = Dir::new(&format!("replicas-bench-{replica_count}-{lease}"));
    let token = create_token(database.url(), "admin");
    let mut fleet: Vec<(String, u16, Option<Server>)> = (0..replica_count)
        .map(|index| {
            let id = format!("b{}", index + 1);
            let port = free_port();
            let config = dir.0.join(format!("{id}.json"));
            let settings = json!({"replica": {"id": id, "lease_seconds": lease}});
            std::fs::write(&config, settings.to_string()).unwrap();
            let log = dir.0.join(format!("{id}.log"));
            let server = support::serve_with_config(database.url(), port, &config, &log);
            (id, port, Some(server))
        })
        .collect();
    let ports: Vec<u16> = fleet.iter().map(|(_, port, _)| *port).collect();

    let start = now_seconds() as i64;
    let mut turn = 0usize;
    let mut t = start - BASELINE_SECONDS - 10;
    while t <= start {
        let until = (t + 9).min(start);
        let body = samples_at(releases, t..=until);
        post_ok(
            ports[turn % ports.len()],
            &token,
            "/api/v1/ingest/samples",
            body,
        );
        turn += 1;
        t = until + 1;
    }
    let metrics: Vec<Value> = METRICS
        .iter()
        .map(|name| json!({"name": name, "kind": "middleware", "direction": "increase"}))
        .collect();
    for number in 0..releases {
        let hosts: Vec<String> = (0..RELEASE_HOSTS)
            .map(|index| host_name(number, true, index))
            .collect();
        let reference: Vec<String> = (0..REFERENCE_HOSTS)
            .map(|index| host_name(number, false, index))
            .collect();
        let request = json!({
            "id": format!("bench-{number:03}"), "app": format!("bench{number:03}"),
            "version": "2", "hosts": hosts, "reference": {"type": "hosts", "hosts": reference},
            "step_seconds": STEP, "observe_seconds": 3600, "metrics": metrics,
            "settings": {"baseline_seconds": BASELINE_SECONDS, "warmup_seconds": 10},
        });
        post_ok(
            ports[number % ports.len()],
            &token,
            "/api/v1/releases",
            request,
        );
    }
    let deployed = now_seconds() as i64;
    for number in 0..releases {
        let path = format!("/api/v1/releases/bench-{number:03}/batches/0/deployed");
        post_ok(
            ports[number % ports.len()],
            &token,
            &path,
            json!({"at": deployed}),
        );
    }

    let live_ports = Arc::new(Mutex::new(ports.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let feeder_ports = Arc::clone(&live_ports);
        let feeder_stop = Arc::clone(&stop);
        let feeder_token = token.clone();
        std::thread::spawn(move || {
            let mut last_fed = start;
            let mut turn = 0usize;
            while !feeder_stop.load(Ordering::Relaxed) {
                let now = now_seconds() as i64;
                if now > last_fed {
                    let body = samples_at(releases, last_fed + 1..=now);
                    let live = feeder_ports.lock().unwrap();
                    post_ok(
                        live[turn % live.len()],
                        &feeder_token,
                        "/api/v1/ingest/samples",
                        body,
                    );
                    turn += 1;
                    last_fed = now;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };

    // Every step of the window, each replica's counters.
    let first_reading = (deployed + SETTLE_SECONDS) as f64;
    let mut readings: Vec<Reading> = Vec::new();
    let pids: Vec<u32> = fleet
        .iter()
        .filter_map(|(_, _, server)| server.as_ref().map(|server| server.0.id()))
        .collect();
    let mut reading_at = first_reading;
    while window > 0 && reading_at <= first_reading + window as f64 {
        let left = reading_at - now_seconds();
        if left > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(left));
        }
        let taken_at = now_seconds();
        let counters: Result<Vec<(f64, f64)>, String> = ports
            .iter()
            .map(|port| guard_counters(*port, &token))
            .collect();
        let cpu: Option<f64> = pids.iter().map(|pid| cpu_seconds(*pid)).sum();
        match counters {
            Ok(counters) => readings.push(Reading {
                at: taken_at,
                counters,
                cpu,
            }),
            Err(error) => {
                figures.problems.push(error);
                break;
            }
        }
        reading_at += STEP as f64;
    }
    for pair in readings.windows(2) {
        let (before, after) = (&pair[0].counters, &pair[1].counters);
        let elapsed = pair[1].at - pair[0].at;
        let mut judged = 0.0;
        let mut busiest: f64 = 0.0;
        for ((judgements_before, seconds_before), (judgements_after, seconds_after)) in
            before.iter().zip(after)
        {
            judged += judgements_after - judgements_before;
            busiest = busiest.max((seconds_after - seconds_before) / elapsed);
        }
        let judged_per_step = judged / (elapsed / STEP as f64);
        figures.judged_per_step.push(judged_per_step);
        // At a cost per judgement that stays as it is, the busiest replica's guard would be
        // busy the whole step with this many releases.
        if busiest > 0.0 {
            figures.capacity_per_step.push(judged_per_step / busiest);
        }
    }
    if let (Some(first), Some(last)) = (readings.first(), readings.last()) {
        let elapsed = last.at - first.at;
        figures.busy = first
            .counters
            .iter()
            .zip(&last.counters)
            .map(|((_, before), (_, after))| (after - before) / elapsed)
            .collect();
        if let (Some(before), Some(after)) = (first.cpu, last.cpu) {
            figures.cores_used = Some((after - before) / elapsed);
        }
    }

    if kill {
        let settled = (deployed + SETTLE_SECONDS) as f64 - now_seconds();
        if settled > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(settled));
        }
        match replicas(ports[0], &token) {
            Err(error) => figures.problems.push(error),
            Ok(found) => {
                let (victim, guarded) = found
                    .iter()
                    .max_by_key(|(_, (_, releases))| releases.len())
                    .map(|(id, (_, releases))| (id.clone(), releases.clone()))
                    .unwrap_or_default();
                let killed_at = {
                    let mut live = live_ports.lock().unwrap();
                    let member = fleet.iter_mut().find(|(id, _, _)| *id == victim);
                    match member {
                        Some((_, port, server)) => {
                            live.retain(|live_port| live_port != port);
                            if let Some(mut server) = server.take() {
                                server.0.kill().unwrap(); // SIGKILL
                                server.0.wait().unwrap();
                            }
                            Some(now_seconds())
                        }
                        None => {
                            figures
                                .problems
                                .push(format!("no replica {victim:?} to kill among {found:?}"));
                            None
                        }
                    }
                };
                let live_port = fleet
                    .iter()
                    .find(|(_, _, server)| server.is_some())
                    .map(|(_, port, _)| *port);
                if let (Some(killed_at), Some(live_port)) = (killed_at, live_port) {
                    let deadline = killed_at + (4 * lease) as f64 + 15.0;
                    let mut last_seen = String::new();
                    while now_seconds() < deadline {
                        match replicas(live_port, &token) {
                            Ok(now_found) => {
                                let held: BTreeSet<&String> = now_found
                                    .iter()
                                    .filter(|(id, (live, _))| **id != victim && *live)
                                    .flat_map(|(_, (_, releases))| releases)
                                    .collect();
                                let orphans = guarded
                                    .iter()
                                    .filter(|release| !held.contains(release))
                                    .count();
                                last_seen = format!("{orphans} releases not taken over");
                                if orphans == 0 {
                                    figures.failover_seconds = Some(now_seconds() - killed_at);
                                    break;
                                }
                            }
                            Err(error) => last_seen = error,
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    if figures.failover_seconds.is_none() {
                        figures.problems.push(format!(
                            "the releases of the killed replica {victim} ({}) were not taken over within {:.0} s: {last_seen}",
                            guarded.len(),
                            deadline - killed_at
                        ));
                    }
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    feeder.join().unwrap();
    drop(fleet);
    figures
}

fn main() {
    let releases = number_argument("releases", 60);
    let window = number_argument("seconds", 40) as i64;
    let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get());
    println!(
        "{releases} releases of {} hosts × {} metrics at {STEP} s steps, measured for {window} s on {cores} cores",
        RELEASE_HOSTS + REFERENCE_HOSTS,
        METRICS.len()
    );
    println!(
        "judging: releases the guards judge within a step at the cost a judgement has at this load (busiest replica busy the whole step)"
    );
    println!(
        "servers: releases per core the replica processes serve at this load, ingestion and following included (their CPU time; PostgreSQL's not)"
    );
    println!(
        "{:>8} {:>11} {:>28} {:>14} {:>22} {:>10} {:>17}",
        "replicas",
        "judged/step",
        "judging: median (range)",
        "judging/core",
        "guard busy per replica",
        "cores used",
        "servers/core"
    );
    let mut problems = Vec::new();
    let mut failovers = Vec::new();
    for replica_count in 1..=3 {
        let figures = run(
            replica_count,
            releases,
            window,
            DEFAULT_LEASE_SECONDS,
            replica_count == 3,
        );
        let capacity = median(&figures.capacity_per_step);
        let lowest = figures
            .capacity_per_step
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        let highest = figures
            .capacity_per_step
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        let busy: Vec<String> = figures
            .busy
            .iter()
            .map(|share| format!("{:.1}%", share * 100.0))
            .collect();
        if figures.capacity_per_step.is_empty() {
            println!("{:>8} {:>11}", figures.replicas, "not measured");
        } else {
            let (cores_used, served_per_core) = match figures.cores_used {
                Some(used) if used > 0.0 => (
                    format!("{used:.3}"),
                    format!("{:.0}", releases as f64 / used),
                ),
                _ => ("n/a".to_string(), "n/a".to_string()),
            };
            println!(
                "{:>8} {:>11.1} {:>28} {:>14.0} {:>22} {:>10} {:>17}",
                figures.replicas,
                median(&figures.judged_per_step),
                format!("{capacity:.0} ({lowest:.0}-{highest:.0})"),
                capacity / cores as f64,
                busy.join(" "),
                cores_used,
                served_per_core,
            );
        }
        if let Some(seconds) = figures.failover_seconds {
            failovers.push(format!(
                "lease {DEFAULT_LEASE_SECONDS} s: {seconds:.1} s ({} releases)",
                figures.releases
            ));
        }
        problems.extend(
            figures
                .problems
                .iter()
                .map(|problem| format!("{replica_count} replicas: {problem}")),
        );
    }
    let short = run(3, 12, 0, SHORT_LEASE_SECONDS, true);
    if let Some(seconds) = short.failover_seconds {
        failovers.push(format!(
            "lease {SHORT_LEASE_SECONDS} s: {seconds:.1} s ({} releases)",
            short.releases
        ));
    }
    problems.extend(
        short
            .problems
            .iter()
            .map(|problem| format!("3 replicas, lease {SHORT_LEASE_SECONDS} s: {problem}")),
    );
    println!(
        "failover after kill -9 (until every release of the killed replica is guarded again): {}",
        if failovers.is_empty() {
            "not measured".to_string()
        } else {
            failovers.join("; ")
        }
    );
    if !problems.is_empty() {
        println!("could not measure everything:\n- {}", problems.join("\n- "));
        std::process::exit(1);
    }
}
