//! The first live guard pass over one history-mode release (no reference group, so its window
//! reaches `history_days` before the deploy) of 500 series at 5 s steps, whose hosts sent two
//! hours of data before the deploy and ten minutes after it: the data a server's index keeps
//! for most hosts. Prints the steps and cells (steps x series) of the window judged, the time
//! of the pass, and the process's resident memory before it and at its peak (from
//! `/proc/self/status`).
//!
//! `cargo bench -p vigil-guard --bench history_window -- [--hosts N] [--metrics N]`
#![allow(clippy::disallowed_methods, clippy::print_stdout, clippy::unwrap_used)]

use std::sync::{Arc, RwLock};
use std::time::Instant;

use vigil_core::release::ReferenceHosts;
use vigil_core::samples::{MetricChunk, Point, SeriesKey};
use vigil_core::ManualClock;
use vigil_guard::{DataIndex, Guard, GuardConfig};

mod common;
use common::argument;

const STEP: i64 = 5;
const DATA_BEFORE_DEPLOY: i64 = 2 * 3600;
const SINCE_DEPLOY: i64 = 600;

/// A field of `/proc/self/status` in MiB (`VmRSS`, `VmHWM`); `None` where there is no such
/// file.
fn memory_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn describe(memory: Option<f64>) -> String {
    memory.map_or_else(|| "unknown".to_string(), |mib| format!("{mib:.0} MiB"))
}

fn main() {
    let hosts = argument("--hosts", 5);
    let metrics = argument("--metrics", 100);
    let deploy = 1_700_000_000i64;
    let now = deploy + SINCE_DEPLOY;
    let dir = vigil_store::testing::TempDir::new("history-window").unwrap();
    let store = vigil_store::open(&dir.path().join("vigil.db").display().to_string()).unwrap();
    let index = Arc::new(RwLock::new(DataIndex::new()));
    let mut noise = common::noise(11);
    let host_names: Vec<String> = (0..hosts).map(|host| format!("h{host}")).collect();
    let mut chunk = MetricChunk::default();
    for host in &host_names {
        for metric in 0..metrics {
            let series = chunk.series.len() as u32;
            chunk.series.push(
                SeriesKey {
                    app: "shop".into(),
                    host: host.clone(),
                    metric: format!("m{metric}"),
                    counter: false,
                }
                .into(),
            );
            let mut time = deploy - DATA_BEFORE_DEPLOY;
            while time <= now {
                chunk.points.push(Point {
                    series,
                    ms: time * 1000,
                    value: 100.0 + 10.0 * noise(),
                });
                time += STEP;
            }
        }
    }
    index.write().unwrap().insert_metrics(&chunk);
    drop(chunk);
    let release = common::release(
        "r1".into(),
        "shop".into(),
        host_names,
        ReferenceHosts::None,
        STEP,
        deploy,
    );
    store.create_release(&release).unwrap();
    let clock = Arc::new(ManualClock::new(now));
    let guard = Guard::new(store, index, clock, GuardConfig::default());
    let resident_before = memory_mib("VmRSS:");
    let started = Instant::now();
    let judged = guard.pass().unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let peak = memory_mib("VmHWM:");
    let verdicts: Vec<String> = judged
        .iter()
        .map(|outcome| outcome.verdict.to_string())
        .collect();
    let steps = guard.window_points("r1").unwrap_or(0);
    let cells = steps * hosts * metrics;
    println!(
        "history-mode release of {} series at {STEP} s steps, {} s of data: window of {steps} steps, {cells} cells",
        hosts * metrics,
        DATA_BEFORE_DEPLOY + SINCE_DEPLOY
    );
    println!(
        "first pass: {seconds:.2} s, verdicts {verdicts:?}; resident memory before {}, peak {}",
        describe(resident_before),
        describe(peak)
    );
}
