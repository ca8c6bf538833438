//! Appends of 50 KB data chunks, the ingestion hot path: appends per second and MB/s, median of
//! several runs, on SQLite (both `synchronous` settings) and on PostgreSQL when
//! `VIGIL_TEST_POSTGRES` names a server.
//!
//! `cargo bench -p vigil-store --bench append` (`-- --runs 7 --appends 2000` to change sizes).
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::disallowed_methods
)]

use std::sync::Arc;
use std::time::Instant;

use vigil_store::testing::{ScratchPostgres, TempDir};
use vigil_store::{Appended, DataChunk, DataKind, Store};

const CHUNK_BYTES: usize = 50 * 1024;

struct Settings {
    runs: usize,
    appends: usize,
}

fn settings() -> Settings {
    let mut settings = Settings {
        runs: 5,
        appends: 1_000,
    };
    let arguments: Vec<String> = std::env::args().collect();
    for pair in arguments.windows(2) {
        match pair[0].as_str() {
            "--runs" => settings.runs = pair[1].parse().unwrap(),
            "--appends" => settings.appends = pair[1].parse().unwrap(),
            _ => {}
        }
    }
    settings
}

/// Bodies that do not compress, like the encoded samples they stand for.
fn body(seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..CHUNK_BYTES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A fresh store and the scratch place it lives in, to drop after it.
type Opener<'a> = &'a dyn Fn() -> (Arc<dyn Store>, Box<dyn std::any::Any>);

/// Seconds taken to append `appends` chunks to a fresh store from `open`.
fn one_run(open: Opener<'_>, appends: usize, bodies: &[Vec<u8>]) -> f64 {
    let (store, scratch) = open();
    let started = Instant::now();
    for index in 0..appends {
        let at_ms = 1_700_000_000_000 + index as i64 * 1_000;
        let chunk = DataChunk {
            kind: DataKind::Metrics,
            key: Some(format!("request-{index}")),
            min_ms: at_ms,
            max_ms: at_ms + 999,
            received_at: at_ms / 1_000 + 1,
            body: bodies[index % bodies.len()].clone(),
            origin: String::new(),
        };
        assert_eq!(store.append_data(&chunk).unwrap(), Appended::Stored);
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(store);
    drop(scratch);
    seconds
}

fn report(label: &str, settings: &Settings, open: Opener<'_>) {
    let bodies: Vec<Vec<u8>> = (0..16).map(body).collect();
    let mut seconds: Vec<f64> = (0..settings.runs)
        .map(|_| one_run(open, settings.appends, &bodies))
        .collect();
    seconds.sort_by(f64::total_cmp);
    let median = seconds[seconds.len() / 2];
    let appends_per_second = settings.appends as f64 / median;
    let megabytes_per_second = appends_per_second * CHUNK_BYTES as f64 / 1e6;
    println!(
        "{label:<32} {appends_per_second:>9.0} appends/s {megabytes_per_second:>8.1} MB/s \
         (median of {} runs of {} x {} KB)",
        settings.runs,
        settings.appends,
        CHUNK_BYTES / 1024
    );
}

fn main() {
    let settings = settings();
    for (label, query) in [
        ("sqlite synchronous=normal", ""),
        ("sqlite synchronous=full", "?synchronous=full"),
    ] {
        let open = || -> (Arc<dyn Store>, Box<dyn std::any::Any>) {
            let directory = TempDir::new("vigil_store_bench").unwrap();
            let url = format!(
                "sqlite://{}{query}",
                directory.path().join("vigil.db").display()
            );
            (vigil_store::open(&url).unwrap(), Box::new(directory))
        };
        report(label, &settings, &open);
    }
    match ScratchPostgres::from_env("vigil_bench") {
        Ok(Some(probe)) => {
            drop(probe);
            let open = || -> (Arc<dyn Store>, Box<dyn std::any::Any>) {
                let scratch = ScratchPostgres::from_env("vigil_bench").unwrap().unwrap();
                (vigil_store::open(scratch.url()).unwrap(), Box::new(scratch))
            };
            report("postgres", &settings, &open);
        }
        Ok(None) => println!("postgres: skipped (VIGIL_TEST_POSTGRES not set)"),
        Err(error) => eprintln!("postgres: {error}"),
    }
}
