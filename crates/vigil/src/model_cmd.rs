//! `vigil model`: the learned stage's models in the store. `list`, `show`, `import` (a model
//! file as a candidate), `promote` (through the promotion gate: held-out labelled releases
//! replayed with the promoted model, or the funnel alone, and with the candidate) and
//! `rollback`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use vigil_analysis::learned::FEATURES;
use vigil_analysis::promotion::{self, Baseline, Comparison, DEFAULT_TOLERANCE};
use vigil_analysis::{Stage, StageModel};
use vigil_core::learned::{ModelRecord, ModelScores, ModelState};
use vigil_core::Clock;
use vigil_guard::models::{self as gate, PromotionError};
use vigil_store::{NewModel, Store};

use crate::corpus::read_model_file;
use crate::replay_cmd::{jobs_or_cores, read_settings, replay_folder};

#[derive(Debug, Args)]
pub struct ModelArgs {
    #[command(subcommand)]
    command: ModelCommand,
}

#[derive(Debug, Subcommand)]
enum ModelCommand {
    /// List the models, newest first: state, training set and latest scores.
    List {
        /// The server's store [default: ./vigil.db].
        #[arg(long, default_value = "./vigil.db")]
        database: String,
    },
    /// Print a model, its scores and its promotions as JSON.
    Show {
        version: i64,
        #[arg(long, default_value = "./vigil.db")]
        database: String,
    },
    /// Add a model file (as `vigil train --out` writes it, or a bare `vigil-model/1` model)
    /// as a candidate.
    Import {
        file: PathBuf,
        /// A note kept with the model [default: the file's own note].
        #[arg(long)]
        note: Option<String>,
        /// Who adds it, for the audit [default: $USER].
        #[arg(long)]
        by: Option<String>,
        #[arg(long, default_value = "./vigil.db")]
        database: String,
    },
    /// Promote a model: the guard applies it from its next step. It must not lower
    /// precision or recall (of pauses and of recommendations) by more than the tolerance
    /// against the promoted model, or the funnel alone, on held-out labelled releases: each
    /// --corpus folder is replayed with both and the figures are kept on the model. Without
    /// --corpus, the model's stored held-out scores must pass the same gate.
    Promote {
        version: i64,
        /// A held-out corpus folder (`releases/` and `labels.jsonl`); repeat for several.
        #[arg(long = "corpus")]
        corpus: Vec<PathBuf>,
        /// The largest fall allowed in any figure (a share, 0 to 1).
        #[arg(long, default_value_t = DEFAULT_TOLERANCE)]
        tolerance: f64,
        /// Releases replayed at once (default: the number of cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// Analysis settings as a JSON file, as `vigil replay` takes them.
        #[arg(long)]
        settings: Option<PathBuf>,
        /// Who promotes it, for the audit [default: $USER].
        #[arg(long)]
        by: Option<String>,
        #[arg(long, default_value = "./vigil.db")]
        database: String,
    },
    /// Undo the last promotion in force: the promoted model is retired and the one it
    /// replaced is promoted again; when it replaced none, the guard runs the funnel alone.
    Rollback {
        /// Who rolls it back, for the audit [default: $USER].
        #[arg(long)]
        by: Option<String>,
        #[arg(long, default_value = "./vigil.db")]
        database: String,
    },
}

pub fn run(args: ModelArgs) -> Result<()> {
    match args.command {
        ModelCommand::List { database } => list(&*vigil_store::open(&database)?),
        ModelCommand::Show { version, database } => show(&*vigil_store::open(&database)?, version),
        ModelCommand::Import {
            file,
            note,
            by,
            database,
        } => {
            let store = vigil_store::open(&database)?;
            import(&*store, &file, note, &actor(by))
        }
        ModelCommand::Promote {
            version,
            corpus,
            tolerance,
            jobs,
            settings,
            by,
            database,
        } => {
            let store = vigil_store::open(&database)?;
            let request = PromoteRequest {
                version,
                corpus,
                tolerance,
                jobs: jobs_or_cores(jobs),
                settings,
                actor: actor(by),
            };
            promote(&*store, &request)
        }
        ModelCommand::Rollback { by, database } => {
            let store = vigil_store::open(&database)?;
            let now = vigil_core::SystemClock.now();
            let rollback = gate::roll_back(&*store, &actor(by), now).map_err(refused)?;
            let outcome = match &rollback.promoted {
                Some(record) => format!("model v{} is promoted again", record.version),
                None => "no model is promoted: the guard runs the funnel alone".to_owned(),
            };
            crate::say(&format!(
                "rolled back model v{}; {outcome}",
                rollback.retired.version
            ));
            Ok(())
        }
    }
}

fn actor(by: Option<String>) -> String {
    by.or_else(|| std::env::var("USER").ok())
        .filter(|name| !name.trim().is_empty())
        .unwrap_or_else(|| "cli".to_owned())
}

fn refused(error: PromotionError) -> anyhow::Error {
    anyhow::anyhow!("{error}")
}

fn list(store: &dyn Store) -> Result<()> {
    let models = store.models()?;
    if models.is_empty() {
        crate::say("no models (add one with `vigil model import FILE`)");
        return Ok(());
    }
    crate::say(&format!(
        "{:>7}  {:9}  {:23}  {:12}  {:44}  {:6} {:6} {:9} {:8}  scores on",
        "version", "state", "created", "by", "training set", "P", "R", "false-rec", "rec-prec"
    ));
    for record in &models {
        crate::say(&list_line(record));
    }
    Ok(())
}

/// The scores a list shows: the latest held-out replay of the model, else its latest scores.
fn shown_scores(record: &ModelRecord) -> Option<&ModelScores> {
    record
        .scores
        .iter()
        .rev()
        .find(|row| row.on.starts_with("held-out: "))
        .or_else(|| record.scores.last())
}

fn list_line(record: &ModelRecord) -> String {
    let share = |value: Option<f64>| value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.3}"));
    let training = format!(
        "{} ({} releases, {} examples)",
        if record.training.sources.is_empty() {
            "-".to_owned()
        } else {
            record.training.sources.join(", ")
        },
        record.training.releases,
        record.training.examples
    );
    let scores = match shown_scores(record) {
        Some(row) => format!(
            "{:6} {:6} {:9} {:8}  {}",
            share(Some(row.precision)),
            share(Some(row.recall)),
            share(row.healthy_recommended),
            share(row.recommendation_precision),
            row.on
        ),
        None => format!("{:6} {:6} {:9} {:8}  -", "-", "-", "-", "-"),
    };
    format!(
        "{:>7}  {:9}  {:23}  {:12}  {:44}  {scores}",
        format!("v{}", record.version),
        record.state.as_str(),
        vigil_core::text::utc(record.created_at),
        record.created_by,
        training,
    )
}

fn show(store: &dyn Store, version: i64) -> Result<()> {
    let Some(record) = store.model(version)? else {
        bail!("no model version {version} (see `vigil model list`)");
    };
    let promotions: Vec<_> = store
        .model_promotions()?
        .into_iter()
        .filter(|promotion| promotion.version == version)
        .collect();
    let mut shown = serde_json::to_value(&record)?;
    if let Some(object) = shown.as_object_mut() {
        object.insert("promotions".to_owned(), serde_json::to_value(promotions)?);
    }
    crate::say(&serde_json::to_string_pretty(&shown)?);
    Ok(())
}

fn import(store: &dyn Store, path: &Path, note: Option<String>, actor: &str) -> Result<()> {
    let file = read_model_file(path)?;
    file.model.check(FEATURES).map_err(|error| {
        anyhow::anyhow!(
            "model file {} cannot be applied by this build: {error}",
            path.display()
        )
    })?;
    let note = note.unwrap_or(file.note);
    vigil_core::validate::free_text(&note, vigil_core::validate::MAX_TEXT_BYTES)
        .map_err(|problem| anyhow::anyhow!("note: {problem}"))?;
    let new = NewModel {
        created_at: vigil_core::SystemClock.now(),
        created_by: actor.to_owned(),
        model: file.model,
        training: file.training,
        scores: file.scores,
        note,
    };
    let version = store.add_model(&new)?;
    tracing::info!(model = version, by = %actor, "model imported");
    crate::say(&format!(
        "imported model v{version} as a candidate from {}",
        path.display()
    ));
    Ok(())
}

struct PromoteRequest {
    version: i64,
    corpus: Vec<PathBuf>,
    tolerance: f64,
    jobs: usize,
    settings: Option<PathBuf>,
    actor: String,
}

fn promote(store: &dyn Store, request: &PromoteRequest) -> Result<()> {
    let version = request.version;
    let now = vigil_core::SystemClock.now();
    if request.corpus.is_empty() {
        gate::promote_on_stored_scores(store, version, &request.actor, now, request.tolerance)
            .map_err(refused)?;
        crate::say(&format!(
            "promoted model v{version} on its stored held-out scores"
        ));
        return Ok(());
    }
    let tolerance = gate::check_tolerance(request.tolerance).map_err(refused)?;
    let Some(candidate) = store.model(version)? else {
        bail!("no model version {version} (see `vigil model list`)");
    };
    if candidate.state == ModelState::Promoted {
        bail!("model version {version} is promoted already");
    }
    gate::check_applicable(&candidate).map_err(refused)?;
    let promoted = store.promoted_model()?;
    let baseline = Baseline::of(promoted.as_ref());
    let baseline_stage = stage_of(promoted.as_ref())
        .context("the promoted model cannot be applied by this build; roll it back with `vigil model rollback`")?;
    let candidate_stage = stage_of(Some(&candidate))?;
    let settings = read_settings(request.settings.as_deref())?;

    let mut comparisons = Vec::new();
    let mut rows = Vec::new();
    for dir in &request.corpus {
        let name = dir.display().to_string();
        let before = replay_folder(dir, None, &settings, &baseline_stage, request.jobs)?;
        let Some(before_score) = before.score else {
            bail!("{name} has no labels.jsonl: a held-out folder must be labelled");
        };
        let after = replay_folder(dir, None, &settings, &candidate_stage, request.jobs)?;
        let Some(after_score) = after.score else {
            bail!("{name} has no labels.jsonl: a held-out folder must be labelled");
        };
        let baseline_scores = promotion::scores_of(
            &promotion::baseline_on(baseline, &name),
            &before_score.overall,
        );
        let candidate_scores =
            promotion::scores_of(&promotion::held_out(&name), &after_score.overall);
        rows.push(candidate_scores.clone());
        rows.push(baseline_scores.clone());
        let comparison = Comparison::new(&name, baseline_scores, candidate_scores, tolerance);
        crate::say(&comparison.describe(baseline));
        comparisons.push(comparison);
    }
    // The figures are kept whatever the gate says: the list shows why a model was refused.
    store.set_model_scores(version, &rows)?;
    if let Some(refusal) = gate::refusal(version, baseline, &comparisons) {
        tracing::warn!(model = version, by = %request.actor, reason = %refusal, "model promotion refused");
        bail!(refusal);
    }
    let still_promoted = store.promoted_model()?.map(|record| record.version);
    if still_promoted != promoted.as_ref().map(|record| record.version) {
        bail!(
            "the promoted model changed while the held-out releases were replayed; promote again"
        );
    }
    let promoted_at = vigil_core::SystemClock.now();
    store.promote_model(version, &request.actor, promoted_at)?;
    tracing::info!(model = version, by = %request.actor, at = promoted_at, "model promoted");
    crate::say(&format!(
        "promoted model v{version}: no figure fell by more than {tolerance} against the {}",
        baseline.label()
    ));
    Ok(())
}

/// The learned stage of a model (none: the funnel alone), without signatures: the gate
/// measures the model.
fn stage_of(record: Option<&ModelRecord>) -> Result<Stage> {
    let model = record.map(|record| StageModel {
        version: record.version,
        model: record.model.clone(),
    });
    Stage::new(model, Vec::new()).map_err(|error| anyhow::anyhow!("{error}"))
}
