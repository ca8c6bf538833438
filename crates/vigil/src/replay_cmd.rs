//! `vigil replay`: judge recorded releases at every step and score them against labels.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use anyhow::{bail, Context, Result};
use vigil_analysis::score::{self, Decision};
use vigil_analysis::{replay, ReplayOutcome, Settings};
use vigil_core::Bundle;

use crate::progress::Progress;

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
    /// With --server: the model the replay applies, `promoted`, `none` (the funnel alone) or a
    /// stored model's version.
    #[arg(long, requires = "server", default_value = "promoted")]
    pub model: String,
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
                model: &args.model,
                app: args.app.as_deref(),
                out: &args.out,
            })
        }
        (Some(dir), None) => dir.clone(),
        (None, None) => bail!("give a folder of releases or --server"),
    };
    let settings = match &args.settings {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read settings {}", path.display()))?;
            serde_json::from_str::<Settings>(&text)
                .with_context(|| format!("invalid settings in {}", path.display()))?
        }
        None => Settings::default(),
    };
    let files = bundle_files(&dir)?;
    let labels_path = args.labels.clone().or_else(|| {
        let beside = dir.join("labels.jsonl");
        beside.is_file().then_some(beside)
    });
    let labels = match &labels_path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read labels {}", path.display()))?;
            Some(
                score::parse_labels(&text)
                    .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?,
            )
        }
        None => None,
    };
    let jobs = args
        .jobs
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(1)
        })
        .max(1);

    #[allow(clippy::disallowed_methods)] // the report times the replay itself
    let started = std::time::Instant::now();
    let outcomes = replay_files(&files, &settings, jobs)?;
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
    if let Some(labels) = &labels {
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
        let scored = score::score(labels, &decisions);
        report.push_str(&render_score(&scored));
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

/// The bundle files of a corpus folder or a folder of bundles, in name order.
fn bundle_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let releases = dir.join("releases");
    let folder = if releases.is_dir() {
        releases
    } else {
        dir.to_path_buf()
    };
    let entries = std::fs::read_dir(&folder)
        .with_context(|| format!("cannot read folder {}", folder.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or_default();
        if path.is_file() && (name.ends_with(".json") || name.ends_with(".json.gz")) {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        bail!(
            "no release bundles (.json or .json.gz) in {}",
            folder.display()
        );
    }
    Ok(files)
}

/// Replays every file on `jobs` threads; results come back in file order.
fn replay_files(files: &[PathBuf], settings: &Settings, jobs: usize) -> Result<Vec<ReplayOutcome>> {
    let next = AtomicUsize::new(0);
    let (sender, receiver) = mpsc::channel::<(usize, Result<ReplayOutcome>)>();
    let mut results: Vec<Option<ReplayOutcome>> = vec![None; files.len()];
    let mut progress = Progress::new("replaying", files.len());
    let mut first_error = None;
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(files.len()) {
            let sender = sender.clone();
            let next = &next;
            scope.spawn(move || loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(path) = files.get(index) else { break };
                let outcome = Bundle::read(path)
                    .map(|bundle| replay(&bundle, settings))
                    .map_err(anyhow::Error::from);
                if sender.send((index, outcome)).is_err() {
                    break;
                }
            });
        }
        drop(sender);
        for (index, outcome) in receiver {
            progress.advance();
            match outcome {
                Ok(outcome) => results[index] = Some(outcome),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
    });
    progress.finish();
    if let Some(error) = first_error {
        return Err(error);
    }
    Ok(results.into_iter().flatten().collect())
}
