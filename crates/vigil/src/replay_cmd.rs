//! `vigil replay`: judge recorded releases at every step and score them against labels.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use vigil_analysis::score::{self, Decision};
use vigil_analysis::{replay_staged, ReplayOutcome, Settings, Stage};

pub(crate) use crate::corpus::read_settings;
use crate::corpus::{bundle_files, map_bundles, read_labels, read_model};

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// A corpus folder (with `releases/`) or a folder of bundles (`.json` or `.json.gz`).
    #[arg(required_unless_present = "server", conflicts_with = "server")]
    pub dir: Option<PathBuf>,
    /// Replay the stored releases of this Vigil server instead (`http://host:port`), labelled
    /// by their feedback and transitions, through the API.
    #[arg(long)]
    pub server: Option<String>,
    /// The API token for --server (an operator's); `VIGIL_TOKEN` when not given.
    #[arg(long, requires = "server")]
    pub token: Option<String>,
    /// The learned stage's model. With a folder: a model file, as `vigil train --out` writes
    /// it (recommendations it scores below its threshold are set aside; none: the funnel
    /// alone). With --server: `promoted` (the default), `none` (the funnel alone) or a stored
    /// model's version.
    #[arg(long)]
    pub model: Option<String>,
    /// With --server: the releases of this app only.
    #[arg(long, requires = "server")]
    pub app: Option<String>,
    /// Labels to score against (`labels.jsonl`); found next to `releases/` when not given.
    #[arg(long, conflicts_with = "server")]
    pub labels: Option<PathBuf>,
    /// Where to write one JSON line per release; `-` for standard output.
    #[arg(long, default_value = "replay.jsonl")]
    pub out: String,
    /// Releases replayed at once (default: the number of cores).
    #[arg(long, conflicts_with = "server")]
    pub jobs: Option<usize>,
    /// Analysis settings as a JSON file (any subset of the fields; the rest keep defaults).
    #[arg(long, conflicts_with = "server")]
    pub settings: Option<PathBuf>,
}

/// One line of the output.
#[derive(Debug, serde::Serialize)]
struct OutputLine<'a> {
    id: &'a str,
    verdict: vigil_core::Verdict,
    paused_at: Option<i64>,
    findings: &'a [vigil_core::Finding],
}

pub fn run(args: ReplayArgs) -> Result<()> {
    let dir = match (&args.dir, &args.server) {
        (_, Some(server)) => {
            return crate::history_cmd::run(crate::history_cmd::HistoryArgs {
                server,
                token: args.token.as_deref(),
                model: args.model.as_deref().unwrap_or("promoted"),
                app: args.app.as_deref(),
                out: &args.out,
            })
        }
        (Some(dir), None) => dir.clone(),
        (None, None) => bail!("give a folder of releases or --server"),
    };
    let settings = read_settings(args.settings.as_deref())?;
    let jobs = jobs_or_cores(args.jobs);
    let stage = match args.model.as_deref().map(Path::new) {
        Some(path) => {
            let model = read_model(path)?;
            vigil_learn::stage_of(&model, 0)
                .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?
        }
        None => Stage::default(),
    };

    #[allow(clippy::disallowed_methods)] // the report times the replay itself
    let started = std::time::Instant::now();
    let FolderReplay { outcomes, score } =
        replay_folder(&dir, args.labels.as_deref(), &settings, &stage, jobs)?;
    let elapsed = started.elapsed().as_secs_f64();

    let mut writer: Box<dyn Write> = if args.out == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        let file = std::fs::File::create(&args.out)
            .with_context(|| format!("cannot create {}", args.out))?;
        Box::new(std::io::BufWriter::new(file))
    };
    for outcome in &outcomes {
        let line = OutputLine {
            id: &outcome.id,
            verdict: outcome.verdict,
            paused_at: outcome.paused_at,
            findings: &outcome.findings,
        };
        serde_json::to_writer(&mut writer, &line)?;
        writer.write_all(b"\n")?;
    }
    writer.flush()?;
    drop(writer);

    let mut report = String::new();
    let paused = outcomes
        .iter()
        .filter(|outcome| outcome.paused_at.is_some())
        .count();
    let recommended = outcomes
        .iter()
        .filter(|outcome| outcome.verdict == vigil_core::Verdict::Anomaly)
        .count();
    report.push_str(&format!(
        "replayed {} releases in {:.2} s ({:.0} releases/s, {} jobs): {} paused, {} recommended\n",
        outcomes.len(),
        elapsed,
        outcomes.len() as f64 / elapsed.max(1e-9),
        jobs,
        paused,
        recommended
    ));
    if let Some(scored) = &score {
        report.push_str(&render_score(scored));
    }
    // The report goes where the results do not; a closed pipe is not an error worth a panic.
    if args.out == "-" {
        let _ = std::io::stderr().write_all(report.as_bytes());
    } else {
        report.push_str(&format!("results written to {}\n", args.out));
        let _ = std::io::stdout().write_all(report.as_bytes());
    }
    Ok(())
}

/// A folder replayed: every release's outcome, in file order, and their score when the
/// folder has labels.
pub(crate) struct FolderReplay {
    pub outcomes: Vec<ReplayOutcome>,
    pub score: Option<score::Score>,
}

/// Replays a corpus folder (with `releases/`) or a folder of bundles with the learned `stage`
/// (empty: the funnel alone) and scores it against `labels`, or the `labels.jsonl` beside
/// `releases/` when there is one.
pub(crate) fn replay_folder(
    dir: &Path,
    labels: Option<&Path>,
    settings: &Settings,
    stage: &Stage,
    jobs: usize,
) -> Result<FolderReplay> {
    let files = bundle_files(dir)?;
    let labels = read_labels(dir, labels)?;
    let outcomes = map_bundles(&files, jobs, "replaying", |bundle| {
        replay_staged(&bundle, settings, stage, |_| {})
    })?;
    let score = labels
        .as_deref()
        .map(|labels| score_outcomes(labels, &outcomes));
    Ok(FolderReplay { outcomes, score })
}

/// Releases replayed at once: as asked, else the number of cores.
pub(crate) fn jobs_or_cores(jobs: Option<usize>) -> usize {
    jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1)
    })
    .max(1)
}

/// Scores replayed releases against labels.
fn score_outcomes(labels: &[score::Label], outcomes: &[ReplayOutcome]) -> score::Score {
    let decisions: HashMap<String, Decision> = outcomes
        .iter()
        .map(|outcome| {
            (
                outcome.id.clone(),
                Decision {
                    verdict: outcome.verdict,
                    paused_at: outcome.paused_at,
                },
            )
        })
        .collect();
    score::score(labels, &decisions)
}

fn render_score(scored: &score::Score) -> String {
    let figures = &scored.overall;
    let rate = |value: Option<f64>| {
        value
            .map(|value| format!("{value:.3}"))
            .unwrap_or_else(|| "n/a".to_owned())
    };
    let minutes = |value: Option<f64>| {
        value
            .map(|value| format!("{value:.1} min"))
            .unwrap_or_else(|| "n/a".to_owned())
    };
    let mut text = format!(
        "precision {:.3}  recall {:.3}  f1 {:.3}  (tp {} fp {} fn {} tn {}{})\n\
         detection delay: median {}, p90 {}\n\
         recommendations: anomalies recommended {}, false recommendations {} of healthy releases, \
         recommendation precision {}\n",
        figures.precision,
        figures.recall,
        figures.f1,
        figures.tp,
        figures.fp,
        figures.fn_,
        figures.tn,
        if figures.missing > 0 {
            format!(", {} labelled releases not replayed", figures.missing)
        } else {
            String::new()
        },
        minutes(figures.delay_min_median),
        minutes(figures.delay_min_p90),
        rate(figures.anomaly_recommended),
        rate(figures.healthy_recommended),
        rate(figures.recommendation_precision),
    );
    text.push_str("paused per cause (healthy releases by their first confounder):\n");
    for (cause, (paused, total)) in &scored.per_cause {
        text.push_str(&format!("  {cause:40} {paused:4} / {total:4}\n"));
    }
    text.push_str(&format!(
        "summary {}\n",
        serde_json::to_string(figures).unwrap_or_default()
    ));
    text
}
