//! Scoring a replay against labels, by the rules of the corpus: a paused `fault` release is a
//! true positive, an unpaused one a miss; a paused `healthy` or `anomaly` release a false alarm.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use vigil_core::Verdict;

/// One line of a labels file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Label {
    pub id: String,
    pub label: String,
    #[serde(default)]
    pub cause: Option<String>,
    #[serde(default)]
    pub onset: Option<i64>,
    #[serde(default)]
    pub confounders: Option<Vec<String>>,
}

/// Parses `labels.jsonl` text; errors name the line.
pub fn parse_labels(text: &str) -> Result<Vec<Label>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(number, line)| {
            serde_json::from_str::<Label>(line)
                .map_err(|error| format!("line {}: {error}", number + 1))
        })
        .collect()
}

/// What a replay said of one release.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub verdict: Verdict,
    pub paused_at: Option<i64>,
}

/// Figures for a set of releases.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    pub releases: usize,
    pub missing: usize,
    pub tp: usize,
    pub fp: usize,
    #[serde(rename = "fn")]
    pub fn_: usize,
    pub tn: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub delay_min_median: Option<f64>,
    pub delay_min_p90: Option<f64>,
    pub anomaly_recommended: Option<f64>,
    /// Share of healthy releases recommended without being paused: false recommendations.
    pub healthy_recommended: Option<f64>,
    /// Share of the releases recommended without being paused that were anomalies or faults.
    pub recommendation_precision: Option<f64>,
}

/// The overall figures and, per cause (or per first confounder of healthy releases), how many
/// were paused out of how many.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    pub overall: Figures,
    pub per_cause: BTreeMap<String, (usize, usize)>,
}

pub fn score(labels: &[Label], decisions: &HashMap<String, Decision>) -> Score {
    let (mut tp, mut fp, mut fn_, mut tn) = (0, 0, 0, 0);
    let mut delays = Vec::new();
    let mut missing = 0;
    let (mut anomalies, mut anomalies_recommended) = (0usize, 0usize);
    let (mut healthy, mut healthy_recommended) = (0usize, 0usize);
    let (mut recommended, mut recommended_rightly) = (0usize, 0usize);
    let mut per_cause: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for label in labels {
        let Some(decision) = decisions.get(&label.id) else {
            missing += 1;
            continue;
        };
        let paused = decision.paused_at.is_some() || decision.verdict == Verdict::Fault;
        let flagged = paused || decision.verdict == Verdict::Anomaly;
        let key = label.cause.clone().unwrap_or_else(|| {
            let mut confounders = label.confounders.clone().unwrap_or_default();
            confounders.sort();
            format!(
                "healthy:{}",
                confounders.first().cloned().unwrap_or_default()
            )
        });
        let row = per_cause.entry(key).or_default();
        row.1 += 1;
        if label.label == "fault" {
            if paused {
                tp += 1;
                row.0 += 1;
                if let (Some(paused_at), Some(onset)) = (decision.paused_at, label.onset) {
                    delays.push((paused_at - onset) as f64 / 60.0);
                }
            } else {
                fn_ += 1;
            }
        } else {
            if paused {
                fp += 1;
                row.0 += 1;
            } else {
                tn += 1;
            }
            if label.label == "anomaly" {
                anomalies += 1;
                anomalies_recommended += usize::from(flagged && !paused);
            }
            if label.label == "healthy" {
                healthy += 1;
                healthy_recommended += usize::from(flagged && !paused);
            }
        }
        if flagged && !paused {
            recommended += 1;
            recommended_rightly += usize::from(label.label != "healthy");
        }
    }
    let ratio = |numerator: usize, denominator: usize| {
        if denominator == 0 {
            0.0
        } else {
            numerator as f64 / denominator as f64
        }
    };
    let precision = ratio(tp, tp + fp);
    let recall = ratio(tp, tp + fn_);
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    let round = |value: f64| (value * 10_000.0).round() / 10_000.0;
    let percentile = |q: f64| -> Option<f64> {
        if delays.is_empty() {
            None
        } else {
            Some((crate::stats::quantile(&delays, q) * 100.0).round() / 100.0)
        }
    };
    Score {
        overall: Figures {
            releases: labels.len(),
            missing,
            tp,
            fp,
            fn_,
            tn,
            precision: round(precision),
            recall: round(recall),
            f1: round(f1),
            delay_min_median: percentile(0.5),
            delay_min_p90: percentile(0.9),
            anomaly_recommended: (anomalies > 0)
                .then(|| round(ratio(anomalies_recommended, anomalies))),
            healthy_recommended: (healthy > 0).then(|| round(ratio(healthy_recommended, healthy))),
            recommendation_precision: (recommended > 0)
                .then(|| round(ratio(recommended_rightly, recommended))),
        },
        per_cause,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_by_the_corpus_rules() {
        let labels = parse_labels(concat!(
            r#"{"id":"a","label":"fault","cause":"x","onset":0,"metrics":[],"confounders":[]}"#, "\n",
            r#"{"id":"b","label":"fault","cause":"x","onset":0,"metrics":[],"confounders":[]}"#, "\n",
            r#"{"id":"c","label":"healthy","cause":null,"onset":null,"metrics":[],"confounders":["gaps"]}"#, "\n",
            r#"{"id":"d","label":"anomaly","cause":"m","onset":0,"metrics":[],"confounders":[]}"#, "\n",
            r#"{"id":"e","label":"healthy","cause":null,"onset":null,"metrics":[],"confounders":[]}"#, "\n",
        ))
        .unwrap();
        let decisions: HashMap<String, Decision> = [
            ("a", Verdict::Fault, Some(300)),
            ("b", Verdict::Healthy, None),
            ("c", Verdict::Fault, Some(60)),
            ("d", Verdict::Anomaly, None),
        ]
        .into_iter()
        .map(|(id, verdict, paused_at)| (id.to_owned(), Decision { verdict, paused_at }))
        .collect();
        let score = score(&labels, &decisions);
        let figures = &score.overall;
        assert_eq!(
            (
                figures.tp,
                figures.fp,
                figures.fn_,
                figures.tn,
                figures.missing
            ),
            (1, 1, 1, 1, 1)
        );
        assert_eq!(figures.precision, 0.5);
        assert_eq!(figures.recall, 0.5);
        assert_eq!(figures.delay_min_median, Some(5.0));
        assert_eq!(figures.anomaly_recommended, Some(1.0));
        assert_eq!(score.per_cause["healthy:gaps"], (1, 1));
        assert_eq!(score.per_cause["x"], (1, 2));
    }

    #[test]
    fn bad_label_lines_are_named() {
        let error = parse_labels("{\"id\":\"a\",\"label\":\"fault\"}\nnot json\n").unwrap_err();
        assert!(error.starts_with("line 2:"), "{error}");
    }
}
