//! The analysis funnel, synchronous and free of IO: **clean** ([`prepare`]), **detect** against
//! the reference group ([`peers`]), against the host's own history ([`history`]) and in the logs
//! ([`logs`]), **attribute and decide** ([`judge`]); and the [`replay`] driver with its
//! [`score`]. The same [`judge::Evaluator`] serves the live guard and replay, and it only ever
//! sees data up to the step it judges.
#![forbid(unsafe_code)]

pub mod coverage;
pub mod history;
pub mod hosts;
pub mod judge;
pub mod learned;
pub mod logs;
pub mod peers;
pub mod prepare;
pub mod promotion;
pub mod replay;
pub mod rules;
pub mod score;
pub mod settings;
pub mod stats;

pub use coverage::Coverage;
pub use judge::{Evaluator, RebuildNeeded};
pub use learned::{FindingContext, Stage, StageModel, Tally};
pub use replay::{replay, replay_staged, replay_with, ReplayOutcome};
pub use settings::Settings;

use vigil_core::{Bundle, Judgement};

/// Judges `bundle` at Unix time `now` from the samples at or before `now` only.
pub fn judge(bundle: &Bundle, now: i64, settings: &Settings) -> Judgement {
    let Some(index) = bundle.index_at(now) else {
        return Judgement {
            at: now,
            verdict: vigil_core::Verdict::InsufficientData,
            findings: Vec::new(),
            reason: Some("no samples yet".to_owned()),
            suppressed: Vec::new(),
        };
    };
    let visible = bundle.truncated(index);
    Evaluator::new(&visible, settings).judge_at(index)
}
