//! Remote-write decoding speed: snappy, protobuf and chunk building together, in samples per
//! second on one thread, for agent-like requests (one sample per series, labels `__name__`, `app`
//! and `host`, as the load generator sends them).
//!
//! `cargo bench -p vigil-ingest --bench remote_write` prints, for 1 000 and 10 000 series per
//! request, the median of several runs: with a decoder kept between requests (how the server
//! runs), with a fresh decoder per request, and snappy's share alone. Rates are per second of
//! this thread's CPU time (Linux' schedstat), so that other work on a shared machine does not
//! lower them; where that is not readable, per second of wall time.
#![allow(clippy::print_stdout, clippy::disallowed_methods)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use vigil_ingest::remote_write::{
    encode_remote_write, RemoteWriteDecoder, RemoteWriteOptions, WriteSeries,
};

/// Typical host and middleware metrics: name and whether it counts.
const CATALOG: [(&str, bool); 20] = [
    ("cpu_user_ratio", false),
    ("cpu_system_ratio", false),
    ("cpu_iowait_ratio", false),
    ("load1", false),
    ("load5", false),
    ("load15", false),
    ("memory_used_bytes", false),
    ("memory_available_bytes", false),
    ("disk_read_bytes_total", true),
    ("disk_written_bytes_total", true),
    ("network_receive_bytes_total", true),
    ("network_transmit_bytes_total", true),
    ("network_receive_errors_total", true),
    ("http_requests_total", true),
    ("http_errors_total", true),
    ("http_latency_p99_seconds", false),
    ("gc_pause_seconds", false),
    ("open_fds", false),
    ("threads", false),
    ("tcp_established", false),
];
const METRICS_PER_HOST: usize = 20;
const APPS: usize = 5;
const ROUNDS: usize = 8;
const RUNS: usize = 11;
const RUN_TIME: Duration = Duration::from_millis(300);

/// `ROUNDS` request bodies for `hosts` x 20 series, one sample per series each.
fn payloads(hosts: usize) -> Vec<Vec<u8>> {
    let start_ms = 1_760_000_000_000i64;
    (0..ROUNDS)
        .map(|round| {
            let series: Vec<WriteSeries> = (0..hosts)
                .flat_map(|host| (0..METRICS_PER_HOST).map(move |metric| (host, metric)))
                .map(|(host, metric)| {
                    let (name, counter) = CATALOG[metric % CATALOG.len()];
                    let value = if counter {
                        (1000 * (round + 1) + host) as f64
                    } else {
                        0.35 + ((host * 7919 + metric * 104_729 + round) % 1000) as f64 / 997.0
                    };
                    WriteSeries::new(&[
                        ("__name__", &format!("rwload_{name}")),
                        ("app", &format!("app-{:02}", host % APPS)),
                        ("host", &format!("host-{host:05}")),
                    ])
                    .with_sample(start_ms + 1000 * round as i64, value)
                })
                .collect();
            encode_remote_write(&series, &[]).expect("encodes")
        })
        .collect()
}

/// Nanoseconds this thread has run on a CPU.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Median samples per second of `RUNS` runs of `decode_one` over the bodies.
fn measure(samples_per_body: usize, bodies: &[Vec<u8>], mut decode_one: impl FnMut(&[u8])) -> f64 {
    let mut rates: Vec<f64> = (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            let cpu_started = thread_cpu_ns();
            let mut decoded = 0usize;
            while started.elapsed() < RUN_TIME {
                for body in bodies {
                    decode_one(black_box(body));
                    decoded += samples_per_body;
                }
            }
            let wall = started.elapsed().as_secs_f64();
            let seconds = match (cpu_started, thread_cpu_ns()) {
                (Some(before), Some(after)) if after > before => (after - before) as f64 / 1e9,
                _ => wall,
            };
            decoded as f64 / seconds
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[RUNS / 2]
}

fn main() {
    // For profilers: a fixed number of passes over the 10 000-series bodies only, with a kept
    // decoder, or a fresh one per request when REMOTE_WRITE_BENCH_FRESH is set.
    if let Some(passes) = std::env::var("REMOTE_WRITE_BENCH_PASSES")
        .ok()
        .and_then(|text| text.parse::<usize>().ok())
    {
        let bodies = payloads(500);
        let fresh = std::env::var_os("REMOTE_WRITE_BENCH_FRESH").is_some();
        let mut kept = RemoteWriteDecoder::new(RemoteWriteOptions::default());
        for _ in 0..passes {
            for body in &bodies {
                if fresh {
                    kept = RemoteWriteDecoder::new(RemoteWriteOptions::default());
                }
                black_box(kept.decode(body).expect("decodes"));
            }
        }
        return;
    }
    for hosts in [50, 500] {
        let series = hosts * METRICS_PER_HOST;
        let bodies = payloads(hosts);
        let compressed: usize = bodies.iter().map(Vec::len).sum::<usize>() / bodies.len();
        let options = RemoteWriteOptions::default();

        let mut kept = RemoteWriteDecoder::new(options.clone());
        let warm = measure(series, &bodies, |body| {
            let batch = kept.decode(body).expect("decodes");
            assert_eq!(batch.chunk.points.len(), series);
        });
        let cold = measure(series, &bodies, |body| {
            let mut fresh = RemoteWriteDecoder::new(options.clone());
            black_box(fresh.decode(body).expect("decodes"));
        });
        let mut output = Vec::new();
        let snappy = measure(series, &bodies, |body| {
            let length = snap::raw::decompress_len(body).expect("header");
            output.resize(length, 0);
            snap::raw::Decoder::new()
                .decompress(body, &mut output)
                .expect("decompresses");
        });
        println!(
            "remote write, {series} series x 1 sample per request ({compressed} bytes compressed): \
             kept decoder {:.2} M samples/s, fresh decoder {:.2} M samples/s, snappy alone {:.2} M samples/s \
             (per CPU-second, median of {RUNS} runs)",
            warm / 1e6,
            cold / 1e6,
            snappy / 1e6
        );
    }
}
