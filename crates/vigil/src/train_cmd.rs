//! `vigil train`: fit the learned stage's model on labelled releases, cross-validate it
//! against the funnel alone, and write it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use std::sync::{Arc, RwLock};

use anyhow::{bail, Context, Result};
use vigil_analysis::score::Figures;
use vigil_core::ModelScores;
use vigil_core::{Clock, SystemClock};
use vigil_guard::intake::Intake;
use vigil_guard::{DataIndex, Guard, GuardConfig};
use vigil_ingest::remote_write::RemoteWriteOptions;
use vigil_learn::{FoldReport, Trace, TrainOptions};
use vigil_store::Store;

use crate::corpus::{bundle_files, map_bundles, read_labels, read_settings, ModelFile};
use crate::progress::Progress;
use crate::replay_cmd::jobs_or_cores;

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Corpus folders, each with `releases/` and `labels.jsonl`.
    #[arg(required_unless_present = "database")]
    pub dirs: Vec<PathBuf>,
    /// A server's store (a SQLite path or a postgres:// URL): its finished releases labelled
    /// by their feedback and transitions are learned from too, and the model is added to it
    /// as a candidate (`vigil model promote` then weighs it).
    #[arg(long)]
    pub database: Option<String>,
    /// With --database: only this app's releases.
    #[arg(long, requires = "database")]
    pub app: Option<String>,
    /// Where to write the model file (JSON: the model, its training set and its
    /// cross-validated scores), for `vigil replay --model` and `vigil model import`.
    #[arg(long, default_value = "model.json")]
    pub out: PathBuf,
    /// Folds of the cross-validation printed before training on everything (0: none).
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Recommendation precision the decision threshold is calibrated to reach.
    #[arg(long, default_value_t = TrainOptions::default().target_precision)]
    pub target_precision: f64,
    /// Releases replayed at once (default: the number of cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Analysis settings as a JSON file (any subset of the fields; the rest keep defaults).
    #[arg(long)]
    pub settings: Option<PathBuf>,
}

pub fn run(args: TrainArgs) -> Result<()> {
    if !(0.0..=1.0).contains(&args.target_precision) {
        bail!("--target-precision must be between 0 and 1");
    }
    let settings = read_settings(args.settings.as_deref())?;
    let jobs = jobs_or_cores(args.jobs);
    let mut traces = Vec::new();
    let mut sources = Vec::new();
    for dir in &args.dirs {
        traces.extend(traces_of(dir, &settings, jobs)?);
        sources.push(dir.display().to_string());
    }
    let store = match &args.database {
        Some(database) => {
            let store: Arc<dyn Store> = vigil_store::open(database)?;
            traces.extend(stored_traces(&store, args.app.clone())?);
            sources.push(match &args.app {
                Some(app) => format!("store (app {app})"),
                None => "store".to_owned(),
            });
            Some(store)
        }
        None => None,
    };
    let options = TrainOptions {
        target_precision: args.target_precision,
        ..TrainOptions::default()
    };
    let mut report = String::new();
    let mut scores = Vec::new();
    if args.folds > 0 {
        let folds = vigil_learn::cross_validate(&traces, &options, args.folds);
        report.push_str(&render_folds(&folds, &traces));
        // Every release replayed by a model trained without it: held-out figures the
        // promotion gate can weigh (`vigil model import`, then promote).
        let on = format!(
            "{}-fold cross-validation of {}",
            folds.len(),
            sources.join(", ")
        );
        let held_out = vigil_analysis::promotion::held_out(&on);
        let funnel = vigil_analysis::promotion::baseline_on(
            vigil_analysis::promotion::Baseline::Funnel,
            &on,
        );
        scores.push(vigil_analysis::promotion::scores_of(
            &held_out,
            &pooled(&folds, &traces, true),
        ));
        scores.push(vigil_analysis::promotion::scores_of(
            &funnel,
            &pooled(&folds, &traces, false),
        ));
    }
    let trained = vigil_learn::train(&traces, &options, &sources)?;
    let file = ModelFile {
        model: trained.model.clone(),
        training: trained.training.clone(),
        scores,
        note: format!("trained by vigil train on {}", sources.join(", ")),
    };
    let text = serde_json::to_string_pretty(&file)?;
    std::fs::write(&args.out, text + "\n")
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    if let Some(store) = &store {
        let version = store.add_model(&vigil_store::NewModel {
            created_at: SystemClock.now(),
            created_by: std::env::var("USER").unwrap_or_else(|_| "vigil train".to_owned()),
            model: file.model.clone(),
            training: file.training.clone(),
            scores: file.scores.clone(),
            note: file.note.clone(),
        })?;
        report.push_str(&format!(
            "stored as candidate model v{version}: `vigil model promote {version}` weighs it\n"
        ));
    }
    let in_sample = vigil_learn::evaluate(&traces, Some(&trained.model), "training set");
    report.push_str(&format!(
        "trained on {} releases ({} examples, {} from releases that mattered); threshold {:.3} \
         for a recommendation precision of {:.2}\n\
         on its own training set: {}\n\
         model written to {}\n",
        trained.training.releases,
        trained.training.examples,
        trained.training.positives,
        trained.model.threshold,
        trained.model.target_precision,
        figures_line(&in_sample),
        args.out.display(),
    ));
    crate::say(report.trim_end());
    Ok(())
}

/// Every labelled release of a corpus folder, traced through the funnel.
fn traces_of(dir: &Path, settings: &vigil_analysis::Settings, jobs: usize) -> Result<Vec<Trace>> {
    let files = bundle_files(dir)?;
    let Some(labels) = read_labels(dir, None)? else {
        bail!("{} has no labels.jsonl to learn from", dir.display());
    };
    let by_id: HashMap<&str, &vigil_analysis::score::Label> = labels
        .iter()
        .map(|label| (label.id.as_str(), label))
        .collect();
    let traced = map_bundles(&files, jobs, "tracing", |bundle| {
        by_id
            .get(bundle.id.as_str())
            .map(|label| vigil_learn::trace(&bundle, (*label).clone(), settings))
    })?;
    let traces: Vec<Trace> = traced.into_iter().flatten().collect();
    if traces.is_empty() {
        bail!("no release of {} has a label", dir.display());
    }
    Ok(traces)
}

fn rate(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |value| format!("{value:.3}"))
}

fn figures_line(scores: &ModelScores) -> String {
    format!(
        "precision {:.3} recall {:.3} anomalies recommended {} false recommendations {} \
         recommendation precision {}",
        scores.precision,
        scores.recall,
        rate(scores.anomaly_recommended),
        rate(scores.healthy_recommended),
        rate(scores.recommendation_precision),
    )
}

/// The cross-validation table, fold by fold, and the folds pooled.
fn render_folds(folds: &[FoldReport], traces: &[Trace]) -> String {
    let mut text = format!(
        "cross-validation, {} folds (train on the others, replay the fold):\n\
         {:<6} {:<8} {:>8} {:>9} {:>7} {:>11} {:>11} {:>9}\n",
        folds.len(),
        "fold",
        "stage",
        "releases",
        "precision",
        "recall",
        "anomaly rec",
        "healthy rec",
        "rec prec",
    );
    for fold in folds {
        if let Err(error) = &fold.model {
            text.push_str(&format!(
                "{:<6} no model: {error}; the fold counts with the funnel alone\n",
                fold.fold + 1
            ));
        }
        for (stage, scores) in [("funnel", &fold.funnel), ("learned", &fold.learned)] {
            text.push_str(&format!(
                "{:<6} {:<8} {:>8} {:>9.3} {:>7.3} {:>11} {:>11} {:>9}\n",
                fold.fold + 1,
                stage,
                scores.releases,
                scores.precision,
                scores.recall,
                rate(scores.anomaly_recommended),
                rate(scores.healthy_recommended),
                rate(scores.recommendation_precision),
            ));
        }
    }
    for (stage, figures) in [
        ("funnel", pooled(folds, traces, false)),
        ("learned", pooled(folds, traces, true)),
    ] {
        text.push_str(&format!(
            "{:<6} {:<8} {:>8} {:>9.3} {:>7.3} {:>11} {:>11} {:>9}\n",
            "all",
            stage,
            figures.releases,
            figures.precision,
            figures.recall,
            rate(figures.anomaly_recommended),
            rate(figures.healthy_recommended),
            rate(figures.recommendation_precision),
        ));
    }
    text
}

/// The folds pooled: each release decided by the model of the fold that held it out
/// (`learned`), or by the funnel alone.
fn pooled(folds: &[FoldReport], traces: &[Trace], learned: bool) -> Figures {
    let count = folds.len();
    let held_out_model = |trace: &Trace| {
        let fold = vigil_learn::fold_of(&trace.label.id, count);
        folds
            .iter()
            .find(|report| report.fold == fold)
            .and_then(|report| report.model.as_ref().ok())
    };
    let labels: Vec<_> = traces.iter().map(|trace| trace.label.clone()).collect();
    let decisions = traces
        .iter()
        .map(|trace| {
            let model = if learned { held_out_model(trace) } else { None };
            (trace.label.id.clone(), vigil_learn::decide(trace, model))
        })
        .collect();
    vigil_analysis::score::score(&labels, &decisions).overall
}

/// The finished releases of a server's store that history labels, each rebuilt from its
/// stored window and traced with its own settings, one at a time.
fn stored_traces(store: &Arc<dyn Store>, app: Option<String>) -> Result<Vec<Trace>> {
    let (labelled, counts) = vigil_guard::history::labelled_history(store.as_ref(), app)?;
    let index = Arc::new(RwLock::new(DataIndex::new()));
    let intake = Intake::new(
        Arc::clone(store),
        Arc::clone(&index),
        Arc::new(|| {}),
        RemoteWriteOptions::default(),
    );
    let guard = Guard::new(
        Arc::clone(store),
        index,
        Arc::new(SystemClock),
        GuardConfig::default(),
    );
    let mut progress = Progress::new("tracing stored releases", labelled.len());
    let mut traces = Vec::with_capacity(labelled.len());
    for (release, label) in &labelled {
        match vigil_guard::history::stored_example(&guard, &intake, release, label) {
            Ok((bundle, settings, corpus_label)) => {
                traces.push(vigil_learn::trace(&bundle, corpus_label, &settings));
            }
            Err(error) => {
                tracing::warn!(release = %release.id, %error, "train skipped a stored release");
            }
        }
        progress.advance();
    }
    progress.finish();
    crate::say(&format!(
        "stored releases: {} labelled ({} faults, {} healthy of which {} unreviewed), {} \
         traced; left out: {} running, {} unlabelled",
        labelled.len(),
        counts.faults,
        counts.healthy_reviewed + counts.healthy_unreviewed,
        counts.healthy_unreviewed,
        traces.len(),
        counts.running,
        counts.unlabelled,
    ));
    Ok(traces)
}
