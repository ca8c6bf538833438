//! What the analysis says of a release at one step: a verdict and the findings behind it.

use serde::{Deserialize, Serialize};

/// The decision at one step, from the most to the least severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The release hurts something: pause it.
    Fault,
    /// A minor deviation: recommend a look, do not pause.
    Anomaly,
    /// Nothing found.
    Healthy,
    /// Not enough data to judge; the next batch must wait.
    InsufficientData,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Fault => "fault",
            Verdict::Anomaly => "anomaly",
            Verdict::Healthy => "healthy",
            Verdict::InsufficientData => "insufficient_data",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a finding is about: a metric, a log template, silent hosts, a team's rule or an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Signal {
    Metric {
        name: String,
    },
    Log {
        template: String,
        text: String,
        level: String,
    },
    /// Release hosts that stopped sending anything while their peers kept reporting.
    Silence,
    /// A rule of the app's or the release's own, by its name.
    Rule {
        name: String,
    },
    /// An alert received from Alertmanager or another alerting system, by its name.
    Alert {
        name: String,
    },
}

impl Signal {
    /// A short label: the metric name, `log:` and the template text, `silence`, `rule:` and the
    /// rule's name, or `alert:` and the alert's name.
    pub fn label(&self) -> String {
        match self {
            Signal::Metric { name } => name.clone(),
            Signal::Log { text, .. } => format!("log:{text}"),
            Signal::Silence => "silence".to_owned(),
            Signal::Rule { name } => format!("rule:{name}"),
            Signal::Alert { name } => format!("alert:{name}"),
        }
    }
}

/// One piece of evidence: a signal that moved on some release hosts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// `fault` or `anomaly`.
    pub severity: Verdict,
    pub signal: Signal,
    /// The release hosts that show it.
    pub hosts: Vec<String>,
    /// How many deployed release hosts were judged.
    pub hosts_judged: usize,
    /// `up` or `down`: the direction of the change.
    pub direction: String,
    /// Typical value on the affected hosts, and what was expected from the baseline.
    pub observed: f64,
    pub expected: f64,
    /// Relative size of the change: observed / expected - 1 (for log templates: the rate ratio).
    pub effect: f64,
    /// Size of the change in units of the signal's own variability (robust z).
    pub score: f64,
    /// What it was compared with: `reference`, `history`.
    pub baseline: String,
    /// The test behind it, in a few words with its figures.
    pub evidence: String,
    /// Unix time from which the change holds.
    pub since: i64,
    /// One line a person understands.
    pub explanation: String,
}

impl Finding {
    /// Share of the judged release hosts that show it (0 when none was judged).
    pub fn host_share(&self) -> f64 {
        if self.hosts_judged == 0 {
            return 0.0;
        }
        self.hosts.len() as f64 / self.hosts_judged as f64
    }
}

/// The verdict at one step with its findings, most severe first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    /// Unix time of the step judged (the last sample looked at).
    pub at: i64,
    pub verdict: Verdict,
    pub findings: Vec<Finding>,
    /// Why, in one line, when there are no findings to say it (insufficient data, for instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Findings the learned stage set aside: a team's false-alarm signature matched them, or
    /// the model scored a recommendation below its threshold. They weigh nothing in the verdict
    /// and are shown apart, each with its reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suppressed: Vec<Suppressed>,
}

/// A finding the learned stage set aside, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suppressed {
    pub finding: Finding,
    /// One line a person understands: which signature or model, marked by whom.
    pub reason: String,
    /// The signature that matched it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<i64>,
    /// The model's probability that it matters, when the model set it aside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
}

impl Judgement {
    /// The judgement with `added` findings (a team's rules, received alerts) and its verdict
    /// recomputed: a `fault` finding makes it a fault whatever the funnel said (insufficient
    /// data included); an `anomaly` finding makes a healthy verdict an anomaly. Findings stay
    /// most severe first, the funnel's first within a severity.
    pub fn with_findings(self, added: Vec<Finding>) -> Judgement {
        if added.is_empty() {
            return self;
        }
        let fault = added
            .iter()
            .any(|finding| finding.severity == Verdict::Fault);
        let anomaly = added
            .iter()
            .any(|finding| finding.severity == Verdict::Anomaly);
        let verdict = match self.verdict {
            _ if fault => Verdict::Fault,
            Verdict::Healthy if anomaly => Verdict::Anomaly,
            unchanged => unchanged,
        };
        let mut findings = self.findings;
        findings.extend(added);
        // Stable: within a severity the funnel's findings stay first, in their order.
        findings.sort_by_key(|finding| finding.severity);
        Judgement {
            verdict,
            findings,
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silence_signal_is_stored_and_read_back_with_its_label() {
        let text = serde_json::to_string(&Signal::Silence).unwrap();
        assert_eq!(text, r#"{"type":"silence"}"#);
        let read: Signal = serde_json::from_str(&text).unwrap();
        assert_eq!(read, Signal::Silence);
        assert_eq!(read.label(), "silence");
    }

    #[test]
    fn rule_and_alert_signals_are_tagged_and_labelled_by_their_names() {
        let rule = Signal::Rule {
            name: "success-rate".to_owned(),
        };
        let text = serde_json::to_string(&rule).unwrap();
        assert_eq!(text, r#"{"type":"rule","name":"success-rate"}"#);
        assert_eq!(serde_json::from_str::<Signal>(&text).unwrap(), rule);
        assert_eq!(rule.label(), "rule:success-rate");
        let alert = Signal::Alert {
            name: "HighErrorRate".to_owned(),
        };
        assert_eq!(
            serde_json::to_string(&alert).unwrap(),
            r#"{"type":"alert","name":"HighErrorRate"}"#
        );
        assert_eq!(alert.label(), "alert:HighErrorRate");
    }
}
