//! The live guard's cost: it builds an evaluator and judges the latest step for every release it
//! watches, at every step. One synthetic release of the live shape (50 hosts, half of them
//! reference, 20 metrics, 240 steps of 30 s, a few log templates; fixed seed, no external data),
//! built and judged at its last step many times; prints the median milliseconds per release.
//! `cargo bench -p vigil-analysis --bench live`; with `-- --once`, builds and judges once and
//! prints nothing more (for a profiler).
#![allow(clippy::print_stdout, clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::time::Instant;

use vigil_analysis::prepare::Prepared;
use vigil_analysis::{Evaluator, Settings};
use vigil_core::{
    Batch, Bundle, Direction, Host, HostGroup, LogTemplate, Logs, MetricKind, MetricMeta,
    BUNDLE_FORMAT,
};

const HOSTS: usize = 50;
const RELEASE_HOSTS: usize = 25;
const METRICS: usize = 20;
const POINTS: usize = 240;
const STEP_SECONDS: i64 = 30;
const START: i64 = 1_700_000_000;
/// The release is deployed an hour in: the baseline is the first 120 steps.
const DEPLOY_STEP: usize = 120;
const TEMPLATES: usize = 4;
/// Metrics that go wrong on the release hosts after the deploy.
const FAULTY_METRICS: [usize; 4] = [0, 5, 10, 15];
const RUNS: usize = 31;

/// A small deterministic generator (64-bit LCG): the same release on every run and machine.
struct Noise(u64);

impl Noise {
    /// Uniform in [0, 1).
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn host_name(host: usize) -> String {
    format!("h{host:02}")
}

/// Metric metadata cycling through the shapes the analysis treats differently: latencies
/// (relative scale), success rates (headroom of a share), counts that may be zero, and a
/// signed metric (linear scale).
fn metric_meta(metric: usize) -> MetricMeta {
    let (unit, direction) = match metric % 4 {
        0 => ("ms", Direction::Increase),
        1 => ("%", Direction::Decrease),
        2 => ("count", Direction::Increase),
        _ => ("", Direction::Either),
    };
    MetricMeta {
        name: format!("m{metric:02}"),
        kind: MetricKind::Middleware,
        unit: unit.to_owned(),
        direction,
        critical: metric < 4,
        judged: true,
    }
}

/// One sample: a per-host level, a slow daily-like wave, noise, and, on a few metrics of the
/// release hosts after the deploy, a fault (so that judging finds something to explain).
fn sample(metric: usize, host: usize, step: usize, noise: &mut Noise) -> Option<f64> {
    if noise.next() < 0.01 {
        return None;
    }
    let wave = (step as f64 / 40.0).sin();
    let faulty =
        host < RELEASE_HOSTS && step >= DEPLOY_STEP + 6 && FAULTY_METRICS.contains(&metric);
    let value = match metric % 4 {
        0 => {
            let latency = 120.0 + 3.0 * host as f64 + 10.0 * wave + 8.0 * noise.next();
            if faulty {
                latency * 1.6
            } else {
                latency
            }
        }
        1 => {
            let failures = 0.2 + 0.1 * noise.next() + if faulty { 3.0 } else { 0.0 };
            100.0 - failures
        }
        2 => (4.0 * noise.next() + 2.0 * wave).floor().max(0.0),
        _ => 5.0 * wave + noise.next() - 0.5,
    };
    Some(value)
}

fn live_release() -> Bundle {
    let mut noise = Noise(7);
    let hosts: Vec<Host> = (0..HOSTS)
        .map(|host| Host {
            name: host_name(host),
            group: if host < RELEASE_HOSTS {
                HostGroup::Release
            } else {
                HostGroup::Reference
            },
        })
        .collect();
    let batches = vec![Batch {
        index: 0,
        at: START + DEPLOY_STEP as i64 * STEP_SECONDS,
        hosts: (0..RELEASE_HOSTS).map(host_name).collect(),
    }];
    let metrics: Vec<MetricMeta> = (0..METRICS).map(metric_meta).collect();
    let mut series = BTreeMap::new();
    for (metric, meta) in metrics.iter().enumerate() {
        let by_host = (0..HOSTS)
            .map(|host| {
                let values = (0..POINTS)
                    .map(|step| sample(metric, host, step, &mut noise))
                    .collect();
                (host_name(host), values)
            })
            .collect();
        series.insert(meta.name.clone(), by_host);
    }
    let templates: Vec<LogTemplate> = (0..TEMPLATES)
        .map(|template| LogTemplate {
            id: format!("t{template}"),
            text: format!("event {template} at <*>"),
            level: if template == 0 { "ERROR" } else { "INFO" }.to_owned(),
        })
        .collect();
    let mut counts = BTreeMap::new();
    for (template, meta) in templates.iter().enumerate() {
        let by_host = (0..HOSTS)
            .map(|host| {
                let values = (0..POINTS)
                    .map(|step| {
                        let surging = template == 0 && host < RELEASE_HOSTS && step > DEPLOY_STEP;
                        let rate = if surging { 3.0 } else { 0.3 };
                        Some((2.0 * rate * noise.next()).floor())
                    })
                    .collect();
                (host_name(host), values)
            })
            .collect();
        counts.insert(meta.id.clone(), by_host);
    }
    Bundle {
        format: BUNDLE_FORMAT.to_owned(),
        id: "live".to_owned(),
        app: "live-app".to_owned(),
        step_seconds: STEP_SECONDS,
        start: START,
        points: POINTS,
        hosts,
        batches,
        metrics,
        series,
        logs: Logs { templates, counts },
    }
}

/// Milliseconds of `RUNS` runs of `work`: the median, and the fastest (the least disturbed by
/// whatever else the machine runs).
struct Timing {
    median: f64,
    fastest: f64,
}

impl Timing {
    fn of(mut work: impl FnMut()) -> Timing {
        let mut runs: Vec<f64> = (0..RUNS)
            .map(|_| {
                let started = Instant::now();
                work();
                started.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        runs.sort_by(f64::total_cmp);
        Timing {
            median: runs[RUNS / 2],
            fastest: runs[0],
        }
    }
}

impl std::fmt::Display for Timing {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "median {:.2} ms (fastest {:.2} ms)",
            self.median, self.fastest
        )
    }
}

fn main() {
    let bundle = live_release();
    if let Err(error) = bundle.validate("live") {
        println!("the synthetic release is invalid: {error}");
        return;
    }
    let settings = Settings::default();
    let last = POINTS - 1;
    if std::env::args().any(|arg| arg == "--once") {
        std::hint::black_box(Evaluator::new(&bundle, &settings).judge_at(last));
        return;
    }
    let verdict = Evaluator::new(&bundle, &settings).judge_at(last).verdict;
    println!(
        "live shape: {HOSTS} hosts ({RELEASE_HOSTS} release), {METRICS} metrics, {POINTS} steps of {STEP_SECONDS} s, {TEMPLATES} log templates; verdict at the last step: {verdict:?}"
    );
    let prepare = Timing::of(|| {
        std::hint::black_box(Prepared::new(&bundle, &settings));
    });
    let build = Timing::of(|| {
        std::hint::black_box(Evaluator::new(&bundle, &settings));
    });
    let build_and_judge = Timing::of(|| {
        let evaluator = Evaluator::new(&bundle, &settings);
        std::hint::black_box(evaluator.judge_at(last));
    });
    println!("{RUNS} runs each");
    println!("prepare: {prepare}");
    println!("build an evaluator: {build}");
    println!(
        "build + judge the last step: {build_and_judge} per release; {:.0} releases/s on one core",
        1e3 / build_and_judge.median
    );
}
