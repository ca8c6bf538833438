//! A no-op release on a real host: about forty minutes of a Prometheus node exporter on an idle
//! test machine (every series it exposes, counters as per-second rates as the guard assembles
//! them, told apart by the exporter's own `# TYPE` metadata), a 15-second step, one host, no
//! reference group, and a deploy that changed nothing after thirty minutes. The release lists
//! none of the metrics, as a release that only names its app does.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::path::Path;

use vigil_analysis::{replay, Settings};
use vigil_core::{Bundle, Verdict};

fn recording() -> Bundle {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/node-exporter-noop.json.gz");
    Bundle::read(&path).unwrap()
}

#[test]
fn a_no_op_release_recorded_from_a_real_node_exporter_never_pauses() {
    let bundle = recording();
    assert!(bundle.metrics.len() >= 400, "{}", bundle.metrics.len());
    assert!(bundle.metrics.iter().all(|meta| !meta.judged));
    assert!(bundle.hosts.len() == 1 && bundle.batches.len() == 1);

    let outcome = replay(&bundle, &Settings::default());
    let first = outcome
        .findings
        .iter()
        .take(3)
        .map(|finding| finding.explanation.as_str())
        .collect::<Vec<_>>();
    assert_eq!(outcome.paused_at, None, "{first:#?}");
    assert_ne!(outcome.verdict, Verdict::Fault);
    for finding in &outcome.findings {
        assert!(
            finding.effect.is_finite() && finding.effect.abs() <= 100.0,
            "a boundless effect: {}",
            finding.explanation
        );
    }
    eprintln!(
        "node exporter no-op: {} series, verdict {}, {} findings (recommendations only)",
        bundle.metrics.len(),
        outcome.verdict,
        outcome.findings.len()
    );
}
