//! Replays a whole corpus and prints releases per second (on 1 and 2 threads, in one run) and the
//! cost of one evaluation step. `cargo bench -p vigil-analysis --bench replay [-- DIR]`; DIR
//! defaults to the shared public corpus beside the checkout, else the repository's examples.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use vigil_analysis::{Evaluator, Settings};
use vigil_core::Bundle;

fn main() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with('-'))
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let shared = manifest.join("../../../shared/corpus/public");
            if shared.is_dir() {
                shared
            } else {
                manifest.join("../../examples")
            }
        });
    let releases = dir.join("releases");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&releases)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    paths.sort();
    let bundles: Vec<Bundle> = paths
        .iter()
        .map(|path| Bundle::read(path).unwrap())
        .collect();
    let settings = Settings::default();
    println!(
        "corpus {} ({} releases, read once, not timed)",
        dir.display(),
        bundles.len()
    );

    for jobs in [1usize, 2] {
        let mut rates = Vec::new();
        for _ in 0..3 {
            let started = Instant::now();
            let next = AtomicUsize::new(0);
            std::thread::scope(|scope| {
                for _ in 0..jobs {
                    scope.spawn(|| {
                        while let Some(bundle) = bundles.get(next.fetch_add(1, Ordering::Relaxed)) {
                            std::hint::black_box(vigil_analysis::replay(bundle, &settings));
                        }
                    });
                }
            });
            rates.push(bundles.len() as f64 / started.elapsed().as_secs_f64());
        }
        rates.sort_by(f64::total_cmp);
        println!(
            "replay, {jobs} job(s): median {:.0} releases/s (runs: {:.0?})",
            rates[1], rates
        );
    }

    // One evaluation step: the evaluator is built once per release, then judged per step.
    let mut build_seconds = 0.0;
    let mut step_seconds = 0.0;
    let mut steps = 0usize;
    for bundle in &bundles {
        let started = Instant::now();
        let evaluator = Evaluator::new(bundle, &settings);
        build_seconds += started.elapsed().as_secs_f64();
        let Some(first) = evaluator.first_step() else {
            continue;
        };
        let started = Instant::now();
        for now in first..evaluator.points() {
            std::hint::black_box(evaluator.judge_at(now));
            steps += 1;
        }
        step_seconds += started.elapsed().as_secs_f64();
    }
    println!(
        "one evaluation step: {:.1} us (over {steps} steps); building an evaluator: {:.0} us per release",
        step_seconds / steps.max(1) as f64 * 1e6,
        build_seconds / bundles.len().max(1) as f64 * 1e6
    );
}
