//! One live guard pass over many observing releases: each release has 50 hosts (25 release,
//! 25 reference) × 20 metrics at 30 s steps, an hour of baseline and half an hour since its
//! batch; every run after the first brings a new step of data for every series first (the
//! guard keeps each release's evaluator between passes and extends it with the new step; the
//! first run builds them all). Prints the time and CPU seconds of each pass (every release
//! judged once), the median of the runs after the first, and the guard's count of extended
//! and built evaluators.
//!
//! `cargo bench -p vigil-guard --bench live_pass -- [--releases N] [--runs N]`
#![allow(clippy::disallowed_methods, clippy::print_stdout, clippy::unwrap_used)]

use std::sync::{Arc, RwLock};
use std::time::Instant;

use vigil_core::release::ReferenceHosts;
use vigil_core::samples::{MetricChunk, Point, SeriesKey};
use vigil_core::ManualClock;
use vigil_guard::{DataIndex, Guard, GuardConfig};

mod common;
use common::argument;

const HOSTS: usize = 50;
const METRICS: usize = 20;
const STEP: i64 = 30;

/// CPU seconds this process has used (user + system), from `/proc/self/stat`; `None` where
/// there is no such file.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    // Linux reports clock ticks, 100 per second on every common configuration.
    Some((user + system) / 100.0)
}

fn main() {
    let releases = argument("--releases", 200);
    let runs = argument("--runs", 6);
    let deploy = 1_700_000_000i64;
    let start = deploy - 3600;
    let now = deploy + 1800;
    let dir = vigil_store::testing::TempDir::new("live-pass").unwrap();
    let store = vigil_store::open(&dir.path().join("vigil.db").display().to_string()).unwrap();
    let index = Arc::new(RwLock::new(DataIndex::new()));
    let mut noise = common::noise(7);
    let mut all_series: Vec<std::sync::Arc<SeriesKey>> = Vec::new();
    for release_number in 0..releases {
        let app = format!("app{release_number}");
        let host_names: Vec<String> = (0..HOSTS).map(|h| format!("{app}-h{h}")).collect();
        let mut chunk = MetricChunk::default();
        for host in &host_names {
            for metric in 0..METRICS {
                let series = chunk.series.len() as u32;
                chunk.series.push(
                    SeriesKey {
                        app: app.clone(),
                        host: host.clone(),
                        metric: format!("m{metric}"),
                        counter: false,
                    }
                    .into(),
                );
                let mut t = start;
                while t <= now {
                    chunk.points.push(Point {
                        series,
                        ms: t * 1000,
                        value: 100.0 + 10.0 * noise(),
                    });
                    t += STEP;
                }
            }
        }
        index.write().unwrap().insert_metrics(&chunk);
        all_series.extend(chunk.series.iter().cloned());
        let release_hosts: Vec<String> = host_names[..HOSTS / 2].to_vec();
        let release = common::release(
            format!("r{release_number}"),
            app,
            release_hosts,
            ReferenceHosts::EveryOtherHost,
            STEP,
            deploy,
        );
        store.create_release(&release).unwrap();
    }
    // The share of a pass spent assembling windows (one thread, every release once).
    let releases_stored = store.releases(&Default::default()).unwrap();
    let assembling = Instant::now();
    {
        let held = index.read().unwrap();
        for release in &releases_stored {
            let bundle =
                vigil_guard::assemble(release, &held, &Default::default(), 3600, now).unwrap();
            std::hint::black_box(bundle);
        }
    }
    println!(
        "assembling {} windows on one thread: {:.3} s",
        releases_stored.len(),
        assembling.elapsed().as_secs_f64()
    );
    let clock = Arc::new(ManualClock::new(now));
    let guard = Guard::new(store, index, clock.clone(), GuardConfig::default());
    let mut timings = Vec::new();
    let mut cpu_timings = Vec::new();
    for run in 0..runs {
        let step_time = now + run as i64 * STEP;
        if run > 0 {
            // A new step of data for every series, as ingestion brings between passes.
            let mut chunk = MetricChunk::default();
            for (position, key) in all_series.iter().enumerate() {
                chunk.series.push(std::sync::Arc::clone(key));
                chunk.points.push(Point {
                    series: position as u32,
                    ms: step_time * 1000,
                    value: 100.0 + 10.0 * noise(),
                });
            }
            guard.index().write().unwrap().insert_metrics(&chunk);
        }
        clock.set(step_time);
        let started = Instant::now();
        let cpu_before = cpu_seconds();
        let judged = guard.pass().unwrap();
        let seconds = started.elapsed().as_secs_f64();
        let cpu = cpu_before
            .zip(cpu_seconds())
            .map(|(before, after)| after - before);
        assert_eq!(judged.len(), releases, "every release judged once");
        let cpu_text = cpu.map_or(String::new(), |used| format!(" ({used:.2} CPU-s)"));
        println!("run {run}: {releases} releases judged in {seconds:.3} s{cpu_text}");
        timings.push(seconds);
        cpu_timings.push(cpu.unwrap_or(f64::NAN));
    }
    let (extended, built) = guard.evaluator_counts();
    println!("evaluators: {extended} extended, {built} built");
    // The first pass builds every evaluator: the steady state is the passes after it.
    if timings.len() > 1 {
        timings.remove(0);
        cpu_timings.remove(0);
    }
    timings.sort_by(|a, b| a.total_cmp(b));
    cpu_timings.sort_by(|a, b| a.total_cmp(b));
    let median = timings[timings.len() / 2];
    println!(
        "CPU per pass: median {:.2} CPU-s ({:.1} ms per release)",
        cpu_timings[cpu_timings.len() / 2],
        cpu_timings[cpu_timings.len() / 2] * 1000.0 / releases as f64
    );
    println!(
        "live pass: {releases} releases of {HOSTS} hosts x {METRICS} metrics: median {median:.3} s ({:.1} ms per release)",
        median * 1000.0 / releases as f64
    );
}
