//! The feature library: findings people marked a false alarm, kept as signatures (signal,
//! direction, shape, scope) that suppress the same benign pattern in later releases of the
//! same app, and dropped once a release they match is confirmed a fault.

use serde::{Deserialize, Serialize};

use crate::verdict::Finding;

/// Releases a pattern must be marked a false alarm on before it suppresses anything: one
/// person's single click never silences a signal.
pub const MARKS_TO_SUPPRESS: usize = 2;

/// How far past the largest marked change a finding still matches: a change this many times
/// larger than anything marked benign is a different thing and is judged as usual.
pub const EFFECT_MARGIN: f64 = 1.5;

/// Where a signature stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureState {
    /// Marked on fewer than [`MARKS_TO_SUPPRESS`] releases: listed, suppresses nothing.
    Learning,
    /// Suppresses matching findings.
    Active,
    /// A matching release was confirmed a fault, or an admin removed it.
    Dropped,
}

impl SignatureState {
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureState::Learning => "learning",
            SignatureState::Active => "active",
            SignatureState::Dropped => "dropped",
        }
    }

    pub fn parse(text: &str) -> Option<SignatureState> {
        match text {
            "learning" => Some(SignatureState::Learning),
            "active" => Some(SignatureState::Active),
            "dropped" => Some(SignatureState::Dropped),
            _ => None,
        }
    }
}

/// The size of the changes marked benign.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SignatureShape {
    /// Smallest and largest `|effect|` marked.
    pub min_effect: f64,
    pub max_effect: f64,
    /// Largest robust z marked.
    pub max_score: f64,
    /// Largest share of the judged release hosts that showed it.
    pub max_host_share: f64,
}

/// One false-alarm mark that made or widened a signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignatureMark {
    pub release_id: String,
    /// Unix time of the verdict whose finding was marked.
    pub finding_at: i64,
    pub actor: String,
    /// When it was marked.
    pub at: i64,
    #[serde(default)]
    pub note: String,
}

/// Why and by whom a signature was dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignatureDrop {
    /// The confirmed release that matched it, when that is why.
    pub release_id: Option<String>,
    pub actor: String,
    pub at: i64,
    pub reason: String,
}

/// A benign pattern of one app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signature {
    /// Given by the store; 0 before it is stored.
    pub id: i64,
    pub app: String,
    /// The signal's label ([`crate::Signal::label`]).
    pub signal: String,
    /// `up` or `down`.
    pub direction: String,
    /// What it was compared with: `reference` or `history`.
    pub baseline: String,
    pub shape: SignatureShape,
    pub marks: Vec<SignatureMark>,
    pub state: SignatureState,
    pub dropped: Option<SignatureDrop>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Signature {
    /// A new signature from one finding marked a false alarm.
    pub fn from_finding(app: &str, finding: &Finding, mark: SignatureMark) -> Signature {
        let at = mark.at;
        let mut signature = Signature {
            id: 0,
            app: app.to_owned(),
            signal: finding.signal.label(),
            direction: finding.direction.clone(),
            baseline: finding.baseline.clone(),
            shape: SignatureShape {
                min_effect: finding.effect.abs(),
                max_effect: finding.effect.abs(),
                max_score: finding.score,
                max_host_share: finding.host_share(),
            },
            marks: Vec::new(),
            state: SignatureState::Learning,
            dropped: None,
            created_at: at,
            updated_at: at,
        };
        signature.add_mark(finding, mark);
        signature
    }

    /// True when `finding` is this pattern: same signal, direction and baseline, and a change
    /// no larger than [`EFFECT_MARGIN`] times the largest marked.
    pub fn matches(&self, finding: &Finding) -> bool {
        finding.direction == self.direction
            && finding.baseline == self.baseline
            && finding.effect.abs() <= self.shape.max_effect * EFFECT_MARGIN
            && finding.signal.label() == self.signal
    }

    /// True when it suppresses matching findings now.
    pub fn is_active(&self) -> bool {
        self.state == SignatureState::Active
    }

    /// Widens the shape by another marked finding of the same pattern and counts the mark
    /// (one per release); active from [`MARKS_TO_SUPPRESS`] releases on.
    pub fn add_mark(&mut self, finding: &Finding, mark: SignatureMark) {
        self.shape.min_effect = self.shape.min_effect.min(finding.effect.abs());
        self.shape.max_effect = self.shape.max_effect.max(finding.effect.abs());
        self.shape.max_score = self.shape.max_score.max(finding.score);
        self.shape.max_host_share = self.shape.max_host_share.max(finding.host_share());
        self.updated_at = self.updated_at.max(mark.at);
        let already = self
            .marks
            .iter()
            .any(|marked| marked.release_id == mark.release_id);
        if !already {
            self.marks.push(mark);
        }
        if self.state == SignatureState::Learning && self.releases_marked() >= MARKS_TO_SUPPRESS {
            self.state = SignatureState::Active;
        }
    }

    /// Distinct releases marked.
    pub fn releases_marked(&self) -> usize {
        self.marks.len()
    }

    /// The line shown beside a suppressed finding.
    pub fn reason(&self) -> String {
        let first = self.marks.first();
        let by = first.map_or("someone", |mark| mark.actor.as_str());
        let on = first.map_or_else(String::new, |mark| {
            format!(" on {}", crate::text::utc_date(mark.at))
        });
        format!(
            "suppressed because {} {} by up to {} matches a benign pattern (signature {}), marked a \
             false alarm by {by}{on} on {} releases",
            self.signal,
            self.direction,
            crate::text::change_words(self.shape.max_effect),
            self.id,
            self.releases_marked(),
        )
    }
}
