//! Vigil's domain: apps, hosts and groups, metrics, releases and batches, samples, findings and
//! verdicts; the `release-bundle/1` exchange format; and the clock every other crate takes time
//! from. Nothing here does network IO; the bundle reader and writer touch only the file they are
//! given.
#![forbid(unsafe_code)]

pub mod agent;
pub mod alert;
pub mod bundle;
pub mod clock;
pub mod learned;
pub mod model;
pub mod release;
pub mod rules;
pub mod samples;
pub mod scorecard;
pub mod signature;
pub mod telemetry;
pub mod text;
pub mod validate;
pub mod verdict;

pub use alert::Alert;
pub use bundle::{Bundle, BundleError, Logs, BUNDLE_FORMAT};
pub use clock::{Clock, ManualClock, Stopwatch, SystemClock};
pub use learned::{LearnedModel, ModelRecord, ModelScores, ModelState, TrainingSet};
pub use model::{Batch, Direction, Host, HostGroup, LogTemplate, MetricKind, MetricMeta};
pub use rules::{Rule, RuleSeverity};
pub use scorecard::{RowVerdict, Scorecard, ScorecardRow};
pub use signature::{Signature, SignatureState};
pub use verdict::{Finding, Judgement, Signal, Suppressed, Verdict};
