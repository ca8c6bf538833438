//! Ingestion speed end to end: a real server in this process (SQLite store in a temporary
//! directory), fed pre-encoded requests over keep-alive loopback connections by client threads.
//!
//! `cargo bench -p vigil-server --bench ingest` prints, for JSON samples
//! (`POST /api/v1/ingest/samples`) and Prometheus remote write (`POST /api/v1/ingest/prometheus`)
//! with 1 000 and 10 000 series per request (one sample per series, agent-like), the median of
//! several runs of:
//! - samples/s: samples acknowledged per second of wall time;
//! - per server CPU-s: samples acknowledged per second of CPU time of the server's threads (its
//!   runtime and blocking pool), read from Linux' schedstat: the rate one core would take, and
//!   a figure that other work on a shared machine does not lower.
//!
//! Every run starts a fresh server and database; the first request of each client (every
//! series once) is sent before the clock starts, so the timed requests repeat known series.
//! The server's runtime has one worker thread; `taskset` pins the whole process when wanted.
//!
//! `cargo bench -p vigil-server --bench ingest -- --repeated` sends instead the same remote-write
//! load ten times in a row to one server, as a sender that resends would: 1 000 series, ten
//! minutes of one sample per series per second a run, one or ten samples per series per
//! request. `resent` repeats the very same requests; `overlapping` starts each run's
//! timestamps 7.3 s after the previous run's, so every run covers nearly the same seconds at
//! other milliseconds. After each run it prints the rate, the samples per server CPU-s, the
//! process' resident memory (the server, and the client's requests of one run) and the
//! samples the server's index holds; then the slowest run against the first.
#![allow(
    clippy::print_stdout,
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use vigil_core::release::Role;
use vigil_core::ManualClock;
use vigil_guard::DataIndex;
use vigil_ingest::remote_write::{encode_remote_write, WriteSeries};
use vigil_server::{start, ServerConfig};

const METRICS_PER_HOST: usize = 20;
const APPS: usize = 5;
const CLIENTS: usize = 2;
const RUNS: usize = 5;
/// Samples sent per timed run, about.
const SAMPLES_PER_RUN: usize = 600_000;
const START_SECONDS: i64 = 1_760_000_000;
const SERVER_THREAD: &str = "vigil-bench-server";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Json,
    RemoteWrite,
}

impl Route {
    fn path(self) -> &'static str {
        match self {
            Route::Json => "/api/v1/ingest/samples",
            Route::RemoteWrite => "/api/v1/ingest/prometheus",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Route::Json => "application/json",
            Route::RemoteWrite => "application/x-protobuf",
        }
    }
}

/// One request's series: (app, host, metric), `hosts` x 20 of them.
fn series_names(hosts: usize) -> Vec<(String, String, String)> {
    (0..hosts)
        .flat_map(|host| {
            (0..METRICS_PER_HOST).map(move |metric| {
                (
                    format!("app-{:02}", host % APPS),
                    format!("host-{host:05}"),
                    format!("bench_metric_{metric:02}"),
                )
            })
        })
        .collect()
}

fn value(round: usize, position: usize) -> f64 {
    0.35 + ((position * 7919 + round * 104_729) % 1000) as f64 / 997.0
}

/// The body of request `round`: every series once, at `round` seconds after the start.
fn payload(route: Route, names: &[(String, String, String)], round: usize) -> Vec<u8> {
    let seconds = START_SECONDS + round as i64;
    match route {
        Route::Json => {
            let samples: Vec<serde_json::Value> = names
                .iter()
                .enumerate()
                .map(|(position, (app, host, metric))| {
                    serde_json::json!({
                        "app": app,
                        "host": host,
                        "metric": metric,
                        "time": seconds,
                        "value": value(round, position),
                    })
                })
                .collect();
            serde_json::json!({ "samples": samples })
                .to_string()
                .into_bytes()
        }
        Route::RemoteWrite => {
            let series: Vec<WriteSeries> = names
                .iter()
                .enumerate()
                .map(|(position, (app, host, metric))| {
                    WriteSeries::new(&[("__name__", metric), ("app", app), ("host", host)])
                        .with_sample(seconds * 1000, value(round, position))
                })
                .collect();
            encode_remote_write(&series, &[]).expect("encodes")
        }
    }
}

/// A server on a loopback port with a fresh database, stopped when dropped.
struct BenchServer {
    base: String,
    token: String,
    /// The server's data index, to count what it holds.
    index: Arc<RwLock<DataIndex>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: vigil_store::testing::TempDir,
}

impl BenchServer {
    fn start() -> BenchServer {
        let dir = vigil_store::testing::TempDir::new("ingest-bench").unwrap();
        let database = dir.path().join("vigil.db").display().to_string();
        let store = vigil_store::open(&database).unwrap();
        let token = vigil_web::new_token().unwrap();
        store
            .create_token(
                "bench",
                Role::Ingest,
                &vigil_web::hash_token(&token),
                START_SECONDS,
            )
            .unwrap();
        let config = ServerConfig {
            listen: "127.0.0.1:0".to_string(),
            database,
            ..ServerConfig::default()
        };
        let clock: Arc<dyn vigil_core::Clock> = Arc::new(ManualClock::new(START_SECONDS));
        let (sender, receiver) = std::sync::mpsc::channel();
        let (shutdown, shutdown_receiver) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name(SERVER_THREAD)
                .thread_keep_alive(Duration::from_secs(600))
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let started = start(&config, store, clock).await.unwrap();
                let index = Arc::clone(started.state.guard.index());
                sender.send((started.address, index)).unwrap();
                started
                    .run(async move {
                        let _ = shutdown_receiver.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let (address, index) = receiver.recv_timeout(Duration::from_secs(30)).unwrap();
        BenchServer {
            base: format!("http://{address}"),
            token,
            index,
            shutdown: Some(shutdown),
            thread: Some(thread),
            _dir: dir,
        }
    }
}

impl Drop for BenchServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Nanoseconds of CPU time of this process' threads named `name`, from Linux' schedstat.
fn threads_cpu_ns(name: &str) -> Option<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let path = entry.path();
        let Ok(comm) = std::fs::read_to_string(path.join("comm")) else {
            continue;
        };
        // The kernel keeps 15 bytes of a thread's name.
        if !name.starts_with(comm.trim_end()) {
            continue;
        }
        let Ok(schedstat) = std::fs::read_to_string(path.join("schedstat")) else {
            continue;
        };
        total += schedstat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

fn client_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// Sends `bodies` in order on one keep-alive connection; panics on an answer that is not 2xx.
fn send_all(agent: &ureq::Agent, url: &str, route: Route, bodies: &[Vec<u8>]) {
    for body in bodies {
        let mut response = agent
            .post(url)
            .header("Content-Type", route.content_type())
            .send(&body[..])
            .expect("request goes through");
        let status = response.status().as_u16();
        let answer = response.body_mut().read_to_string().unwrap_or_default();
        assert!((200..300).contains(&status), "status {status}: {answer}");
    }
}

struct Measured {
    samples_per_second: f64,
    samples_per_server_cpu_second: Option<f64>,
}

/// One run on a fresh server: each client sends its warm-up request, then the timed ones.
fn run(route: Route, per_client: &[Vec<Vec<u8>>], series: usize) -> Measured {
    let server = BenchServer::start();
    let url = format!("{}{}?token={}", server.base, route.path(), server.token);
    let agents: Vec<ureq::Agent> = (0..CLIENTS).map(|_| client_agent()).collect();
    std::thread::scope(|scope| {
        for (agent, bodies) in agents.iter().zip(per_client) {
            scope.spawn(|| send_all(agent, &url, route, &bodies[..1]));
        }
    });
    let timed_requests: usize = per_client.iter().map(|bodies| bodies.len() - 1).sum();
    let after_warm_up: Vec<&[Vec<u8>]> = per_client.iter().map(|bodies| &bodies[1..]).collect();
    send_timed(
        &agents,
        &url,
        route,
        &after_warm_up,
        timed_requests * series,
    )
}

/// Sends each client's bodies on its connection, all at once, and measures the rates of
/// `samples` (what the bodies hold).
fn send_timed(
    agents: &[ureq::Agent],
    url: &str,
    route: Route,
    per_client: &[&[Vec<u8>]],
    samples: usize,
) -> Measured {
    let cpu_before = threads_cpu_ns(SERVER_THREAD);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for (agent, bodies) in agents.iter().zip(per_client) {
            scope.spawn(move || send_all(agent, url, route, bodies));
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_after = threads_cpu_ns(SERVER_THREAD);
    let samples = samples as f64;
    let server_cpu_seconds = match (cpu_before, cpu_after) {
        (Some(before), Some(after)) if after > before => Some((after - before) as f64 / 1e9),
        _ => None,
    };
    Measured {
        samples_per_second: samples / elapsed,
        samples_per_server_cpu_second: server_cpu_seconds.map(|seconds| samples / seconds),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    if std::env::args().any(|argument| argument == "--repeated") {
        repeated_loads();
        return;
    }
    println!(
        "ingestion end to end, {CLIENTS} keep-alive connections, one sample per series, \
         median of {RUNS} runs on fresh servers"
    );
    for route in [Route::RemoteWrite, Route::Json] {
        for hosts in [50, 500] {
            let names = series_names(hosts);
            let series = names.len();
            let timed_per_client = (SAMPLES_PER_RUN / series / CLIENTS).max(4);
            // Client `c` sends rounds c, c + CLIENTS, ...: every request a new time.
            let per_client: Vec<Vec<Vec<u8>>> = (0..CLIENTS)
                .map(|client| {
                    (0..=timed_per_client)
                        .map(|step| payload(route, &names, step * CLIENTS + client))
                        .collect()
                })
                .collect();
            let body_bytes = per_client[0][1].len();
            let measured: Vec<Measured> =
                (0..RUNS).map(|_| run(route, &per_client, series)).collect();
            let wall = median(measured.iter().map(|m| m.samples_per_second).collect());
            let per_cpu: Option<Vec<f64>> = measured
                .iter()
                .map(|m| m.samples_per_server_cpu_second)
                .collect();
            let per_cpu_text = per_cpu.map_or_else(
                || "unknown".to_string(),
                |values| format!("{:.2} M", median(values) / 1e6),
            );
            println!(
                "{:<12} {series:>6} series/request ({:>7} bytes): {:.2} M samples/s, \
                 {per_cpu_text} samples per server CPU-s",
                match route {
                    Route::Json => "json",
                    Route::RemoteWrite => "remote write",
                },
                body_bytes,
                wall / 1e6,
            );
        }
    }
}

/// Runs of the repeated-load benchmark, each on the one server.
const REPEATED_RUNS: usize = 10;
/// Seconds of data a run sends, one sample per series per second.
const REPEATED_SECONDS: usize = 600;
/// How much later each overlapping run's timestamps start than the previous run's.
const OVERLAP_SHIFT_MS: i64 = 7_300;
/// The slowest run must keep this share of the first run's rate.
const REPEATED_FLOOR: f64 = 0.8;

/// How a run's timestamps relate to the previous run's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resend {
    /// The very same requests again.
    Resent,
    /// The same seconds at other milliseconds, and a few seconds more.
    Overlapping,
}

/// The requests of run `run`: `per_request` samples per series in each (consecutive seconds),
/// split between the clients in turn.
fn repeated_run_bodies(
    names: &[(String, String, String)],
    per_request: usize,
    resend: Resend,
    run: usize,
) -> Vec<Vec<Vec<u8>>> {
    let shift_ms = match resend {
        Resend::Resent => 0,
        Resend::Overlapping => run as i64 * OVERLAP_SHIFT_MS,
    };
    let mut per_client: Vec<Vec<Vec<u8>>> = vec![Vec::new(); CLIENTS];
    for (request, first_second) in (0..REPEATED_SECONDS).step_by(per_request).enumerate() {
        let series: Vec<WriteSeries> = names
            .iter()
            .enumerate()
            .map(|(position, (app, host, metric))| {
                let labels = [("__name__", &metric[..]), ("app", app), ("host", host)];
                (first_second..first_second + per_request).fold(
                    WriteSeries::new(&labels),
                    |series, second| {
                        let ms = START_SECONDS * 1000 + shift_ms + second as i64 * 1000;
                        series.with_sample(ms, value(second, position))
                    },
                )
            })
            .collect();
        per_client[request % CLIENTS].push(encode_remote_write(&series, &[]).expect("encodes"));
    }
    per_client
}

/// The slowest of `rates` against the first, and whether it keeps [`REPEATED_FLOOR`] of it.
fn slowest_share(rates: &[f64]) -> String {
    let Some(&first) = rates.first() else {
        return "unknown".to_string();
    };
    let share = rates.iter().copied().fold(f64::INFINITY, f64::min) / first;
    let verdict = if share >= REPEATED_FLOOR {
        "holds 80 %"
    } else {
        "BELOW 80 %"
    };
    format!("{share:.2} ({verdict})")
}

/// Resident memory of this process, in MiB, from Linux' status file.
fn resident_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The same load sent ten times in a row to one server.
fn repeated_loads() {
    let names = series_names(50);
    println!(
        "the same remote-write load {REPEATED_RUNS} times to one server: {} series, \
         {REPEATED_SECONDS} s of samples a run, {CLIENTS} keep-alive connections",
        names.len()
    );
    for per_request in [1, 10] {
        for resend in [Resend::Resent, Resend::Overlapping] {
            let server = BenchServer::start();
            let agents: Vec<ureq::Agent> = (0..CLIENTS).map(|_| client_agent()).collect();
            // Every series once, before the clock starts.
            let url = format!(
                "{}{}?token={}",
                server.base,
                Route::RemoteWrite.path(),
                server.token
            );
            let warm_up = payload(Route::RemoteWrite, &names, 0);
            send_all(&agents[0], &url, Route::RemoteWrite, &[warm_up]);
            println!("{per_request} sample(s) per series per request, {resend:?}:");
            let mut rates = Vec::new();
            let mut cpu_rates = Vec::new();
            for run in 0..REPEATED_RUNS {
                let bodies = repeated_run_bodies(&names, per_request, resend, run);
                let per_client: Vec<&[Vec<u8>]> = bodies.iter().map(Vec::as_slice).collect();
                let samples = names.len() * REPEATED_SECONDS;
                let measured = send_timed(&agents, &url, Route::RemoteWrite, &per_client, samples);
                drop(per_client);
                drop(bodies);
                let held = server
                    .index
                    .read()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .sample_count();
                let per_cpu = measured.samples_per_server_cpu_second.map_or_else(
                    || "unknown".to_string(),
                    |rate| format!("{:.2} M", rate / 1e6),
                );
                let resident = resident_mib()
                    .map_or_else(|| "unknown".to_string(), |mib| format!("{mib:.0} MiB"));
                println!(
                    "  run {:>2}: {:.2} M samples/s, {per_cpu} samples per server CPU-s, \
                     RSS {resident}, index holds {held} samples",
                    run + 1,
                    measured.samples_per_second / 1e6,
                );
                rates.push(measured.samples_per_second);
                cpu_rates.extend(measured.samples_per_server_cpu_second);
            }
            println!(
                "  slowest run / first run: {} in samples/s, {} in samples per server CPU-s",
                slowest_share(&rates),
                slowest_share(&cpu_rates)
            );
        }
    }
}
