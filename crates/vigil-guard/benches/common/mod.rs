//! What the guard's benchmarks share: their arguments, their noise and their release.
#![allow(dead_code, clippy::unwrap_used)]

use vigil_core::release::{PlannedBatch, ReferenceHosts, Release, ReleaseSpec, ReleaseState};
use vigil_core::Batch;

/// The number after `name` among the arguments, or `default`.
pub fn argument(name: &str, default: usize) -> usize {
    let arguments: Vec<String> = std::env::args().collect();
    arguments
        .iter()
        .position(|argument| argument == name)
        .and_then(|position| arguments.get(position + 1))
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// A generator of numbers in `[0, 1)`, the same from the same seed.
pub fn noise(mut seed: u64) -> impl FnMut() -> f64 {
    move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as f64 / (1u64 << 31) as f64
    }
}

/// An observing release of `app` with one batch of `hosts`, deployed at `deploy`.
pub fn release(
    id: String,
    app: String,
    hosts: Vec<String>,
    reference: ReferenceHosts,
    step_seconds: i64,
    deploy: i64,
) -> Release {
    Release {
        id,
        spec: ReleaseSpec {
            app,
            version: "2".into(),
            hosts: hosts.clone().into(),
            reference,
            batches: vec![PlannedBatch {
                hosts: hosts.clone(),
            }],
            step_seconds,
            observe_seconds: 7200,
            metrics: Vec::new(),
            settings: Default::default(),
            rules: Vec::new(),
        },
        state: ReleaseState::Observing,
        created_by: "bench".into(),
        created_at: deploy,
        updated_at: deploy,
        deployed: vec![Batch {
            index: 0,
            at: deploy,
            hosts,
        }],
        verdict: None,
        reason: String::new(),
    }
}
