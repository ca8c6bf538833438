//! Bundles the analysis tests read: the examples kept in the repository, or a corpus folder.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use vigil_core::Bundle;

pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Every bundle of `dir/releases`, in file name order.
pub fn bundles_in(dir: &Path) -> Vec<Bundle> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir.join("releases"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| Bundle::read(path).unwrap())
        .collect()
}

/// A deterministic noise source, roughly normal with mean 0 and sd 1 (a sum of uniforms; no
/// dependency needed for a few thousand numbers).
pub struct Noise(pub u64);

impl Noise {
    pub fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut sum = 0.0;
        for shift in [0, 16, 32, 48] {
            sum += ((self.0 >> shift) & 0xffff) as f64 / 65535.0;
        }
        (sum - 2.0) * 1.7
    }
}

/// Checks the scorecard at `now` against the judgement at `now`: the same verdict, a row for
/// every finding with the same verdict (by severity) and the same figures, and one row per
/// metric and one for silence. Returns the scorecard.
pub fn scorecard_holding_the_findings(
    evaluator: &vigil_analysis::Evaluator,
    now: usize,
) -> vigil_core::scorecard::Scorecard {
    use vigil_core::scorecard::RowVerdict;

    let judgement = evaluator.judge_at(now);
    let scorecard = evaluator.scorecard_at(now);
    assert_eq!(scorecard.verdict, judgement.verdict, "step {now}");
    assert_eq!(scorecard.at, judgement.at);
    for finding in &judgement.findings {
        let rows: Vec<_> = scorecard
            .rows
            .iter()
            .filter(|row| row.signal == finding.signal)
            .collect();
        assert_eq!(rows.len(), 1, "step {now}: {:?}", finding.signal);
        let row = rows[0];
        assert_eq!(row.verdict, RowVerdict::of_severity(finding.severity));
        assert_eq!(
            row.observed.map(f64::to_bits),
            Some(finding.observed.to_bits())
        );
        assert_eq!(
            row.reference.map(f64::to_bits),
            Some(finding.expected.to_bits())
        );
        assert_eq!(row.effect.map(f64::to_bits), Some(finding.effect.to_bits()));
        assert_eq!(row.score.map(f64::to_bits), Some(finding.score.to_bits()));
        assert_eq!(row.hosts_affected, finding.hosts.len());
        assert_eq!(row.compared_with, finding.baseline);
    }
    // Rows that are no finding neither fail nor recommend.
    let failing = scorecard
        .rows
        .iter()
        .filter(|row| matches!(row.verdict, RowVerdict::Fail | RowVerdict::Recommend))
        .count();
    assert_eq!(failing, judgement.findings.len(), "step {now}");
    for metric in &evaluator.prepared().metrics {
        let signal = vigil_core::Signal::Metric {
            name: metric.meta.name.clone(),
        };
        assert_eq!(
            scorecard
                .rows
                .iter()
                .filter(|row| row.signal == signal)
                .count(),
            1,
            "step {now}: {}",
            metric.meta.name
        );
    }
    assert_eq!(
        scorecard
            .rows
            .iter()
            .filter(|row| row.signal == vigil_core::Signal::Silence)
            .count(),
        1
    );
    scorecard
}
