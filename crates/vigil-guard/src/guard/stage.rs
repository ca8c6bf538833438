//! The learned stage in the guard: each app's active signatures and the promoted model, read
//! once per pass, applied to every judgement after the rules' and the alerts' findings.

use std::collections::HashMap;
use std::sync::Mutex;

use vigil_analysis::prepare::Prepared;
use vigil_analysis::{FindingContext, Stage, StageModel, Tally};
use vigil_core::release::Release;
use vigil_core::{Judgement, MetricMeta};
use vigil_store::Store;

use super::locks::lock;

/// The stage of each app of `releases`. A promoted model that fails its check is warned about
/// once per version and left out; a store that cannot be read leaves the app's stage empty
/// (the release is judged by the funnel alone, as without a library), warned about.
pub(super) fn stages_for(
    store: &dyn Store,
    releases: &[Release],
    refused_model: &Mutex<Option<i64>>,
) -> HashMap<String, Stage> {
    let mut stages = HashMap::new();
    if releases.is_empty() {
        return stages;
    }
    let model = match store.promoted_model() {
        Ok(promoted) => promoted.map(|record| StageModel {
            version: record.version,
            model: record.model,
        }),
        Err(error) => {
            tracing::warn!(%error, "guard could not read the promoted model: judging without it");
            None
        }
    };
    for release in releases {
        let app = &release.spec.app;
        if stages.contains_key(app) {
            continue;
        }
        let signatures = match store.app_signatures(app) {
            Ok(signatures) => signatures,
            Err(error) => {
                tracing::warn!(app = %app, %error, "guard could not read the app's signatures: judging without them");
                Vec::new()
            }
        };
        stages.insert(
            app.clone(),
            stage_of(model.clone(), signatures, refused_model),
        );
    }
    stages
}

/// The stage of `model` and `signatures`; without the model when it fails its check.
fn stage_of(
    model: Option<StageModel>,
    signatures: Vec<vigil_core::Signature>,
    refused_model: &Mutex<Option<i64>>,
) -> Stage {
    let version = model.as_ref().map(|staged| staged.version);
    match Stage::new(model, signatures.clone()) {
        Ok(stage) => stage,
        Err(error) => {
            let mut refused = lock(refused_model);
            if *refused != version {
                *refused = version;
                tracing::warn!(model_version = version.unwrap_or(0), %error, "guard ignores the promoted model: it does not fit this build");
            }
            Stage::new(None, signatures).unwrap_or_default()
        }
    }
}

/// `judgement` of `release` with the `learned` stage applied; `prepared` is the judged window,
/// `tally` has observed the funnel's judgement of this step.
pub(super) fn staged(
    learned: Option<&Stage>,
    judgement: Judgement,
    release: &Release,
    prepared: &Prepared,
    tally: &Tally,
) -> Judgement {
    let Some(stage) = learned.filter(|found| !found.is_empty()) else {
        return judgement;
    };
    // Only the model's features read the metrics, and only a recommendation's: no copy of
    // every metric's metadata at every step otherwise.
    let scored = stage.model().is_some()
        && judgement
            .findings
            .iter()
            .any(|finding| finding.severity == vigil_core::Verdict::Anomaly);
    let metrics: Vec<MetricMeta> = if scored {
        prepared
            .metrics
            .iter()
            .map(|metric| metric.meta.clone())
            .collect()
    } else {
        Vec::new()
    };
    let context = FindingContext {
        metrics: &metrics,
        step_seconds: prepared.step_seconds,
        first_deploy: release
            .deployed
            .iter()
            .map(|batch| batch.at)
            .min()
            .unwrap_or(judgement.at),
    };
    stage.apply(judgement, &context, tally)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use vigil_core::learned::{LearnedModel, MODEL_FORMAT};
    use vigil_core::signature::SignatureMark;
    use vigil_core::{Finding, Signal, Signature, Verdict};

    use super::*;

    fn cpu_finding(effect: f64, severity: Verdict) -> Finding {
        Finding {
            severity,
            signal: Signal::Metric {
                name: "cpu".to_owned(),
            },
            hosts: vec!["h1".to_owned()],
            hosts_judged: 1,
            direction: "up".to_owned(),
            observed: 1.0 + effect,
            expected: 1.0,
            effect,
            score: 5.0,
            baseline: "reference".to_owned(),
            evidence: String::new(),
            since: 0,
            explanation: String::new(),
        }
    }

    fn active_signature() -> Signature {
        let finding = cpu_finding(0.1, Verdict::Anomaly);
        let mark = |release: &str| SignatureMark {
            release_id: release.to_owned(),
            finding_at: 0,
            actor: "alice".to_owned(),
            at: 0,
            note: String::new(),
        };
        let mut signature = Signature::from_finding("shop", &finding, mark("r1"));
        signature.add_mark(&finding, mark("r2"));
        signature
    }

    #[test]
    fn a_model_that_does_not_fit_is_left_out_and_the_signatures_still_apply() {
        let misfit = StageModel {
            version: 4,
            model: LearnedModel {
                format: MODEL_FORMAT.to_owned(),
                features: vec!["other".to_owned()],
                mean: vec![0.0],
                scale: vec![1.0],
                weights: vec![1.0],
                intercept: 0.0,
                threshold: 0.5,
                target_precision: 0.9,
            },
        };
        let refused = Mutex::new(None);
        let stage = stage_of(Some(misfit.clone()), vec![active_signature()], &refused);
        assert!(stage.model().is_none());
        assert!(!stage.is_empty());
        assert_eq!(*refused.lock().unwrap(), Some(4));
        // The second time is not warned about again, and gives the same stage.
        assert_eq!(
            stage_of(Some(misfit), vec![active_signature()], &refused),
            stage
        );

        let judgement = Judgement {
            at: 600,
            verdict: Verdict::Anomaly,
            findings: vec![cpu_finding(0.12, Verdict::Anomaly)],
            reason: None,
            suppressed: Vec::new(),
        };
        let applied = stage.apply(
            judgement,
            &FindingContext {
                metrics: &[],
                step_seconds: 60,
                first_deploy: 0,
            },
            &Tally::default(),
        );
        assert_eq!(applied.verdict, Verdict::Healthy);
        assert_eq!(applied.suppressed.len(), 1);
    }
}
