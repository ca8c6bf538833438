//! Corpus folders as the commands read them: bundle files, labels, settings and model files,
//! and a parallel map over bundles with progress.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use anyhow::{bail, Context, Result};
use vigil_analysis::score;
use vigil_analysis::Settings;
use vigil_core::learned::LearnedModel;
use vigil_core::Bundle;
use vigil_core::{ModelScores, TrainingSet};

use crate::progress::Progress;

/// Analysis settings from a JSON file (any subset of the fields), or the defaults.
pub(crate) fn read_settings(path: Option<&Path>) -> Result<Settings> {
    let Some(path) = path else {
        return Ok(Settings::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read settings {}", path.display()))?;
    serde_json::from_str::<Settings>(&text)
        .with_context(|| format!("invalid settings in {}", path.display()))
}

/// The labels of a corpus folder: `labels` when given, else `labels.jsonl` beside
/// `releases/`, else none.
pub(crate) fn read_labels(dir: &Path, labels: Option<&Path>) -> Result<Option<Vec<score::Label>>> {
    let beside = dir.join("labels.jsonl");
    let path = match labels {
        Some(path) => path,
        None if beside.is_file() => beside.as_path(),
        None => return Ok(None),
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read labels {}", path.display()))?;
    let parsed = score::parse_labels(&text)
        .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
    Ok(Some(parsed))
}

/// The bundle files of a corpus folder or a folder of bundles, in name order.
pub(crate) fn bundle_files(dir: &Path) -> Result<Vec<PathBuf>> {
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

/// Reads every file and maps its bundle on `jobs` threads, showing progress under `what`;
/// results come back in file order. The first unreadable file is the error.
pub(crate) fn map_bundles<T: Send>(
    files: &[PathBuf],
    jobs: usize,
    what: &'static str,
    map: impl Fn(Bundle) -> T + Sync,
) -> Result<Vec<T>> {
    let next = AtomicUsize::new(0);
    let (sender, receiver) = mpsc::channel::<(usize, Result<T>)>();
    let mut results: Vec<Option<T>> = (0..files.len()).map(|_| None).collect();
    let mut progress = Progress::new(what, files.len());
    let mut first_error = None;
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(files.len()) {
            let sender = sender.clone();
            let next = &next;
            let map = &map;
            scope.spawn(move || loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(path) = files.get(index) else { break };
                let outcome = Bundle::read(path).map(map).map_err(anyhow::Error::from);
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

/// A model file as `vigil train` writes it, checked against this build's features.
pub(crate) fn read_model(path: &Path) -> Result<LearnedModel> {
    let file = read_model_file(path)?;
    file.model
        .check(vigil_analysis::learned::FEATURES)
        .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
    Ok(file.model)
}

/// A model file larger than this is refused before it is parsed.
const MAX_MODEL_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// A model file: what `vigil train --out` writes (the model with its training set, scores
/// and note), or the bare model.
/// Other fields (those of a stored record, as `vigil model show` prints it) are ignored.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct ModelFile {
    pub model: LearnedModel,
    #[serde(default)]
    pub training: TrainingSet,
    #[serde(default)]
    pub scores: Vec<ModelScores>,
    #[serde(default)]
    pub note: String,
}

pub(crate) fn read_model_file(path: &Path) -> Result<ModelFile> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read model file {}", path.display()))?
        .len();
    if size > MAX_MODEL_FILE_BYTES {
        bail!(
            "model file {} is {size} bytes, more than the {MAX_MODEL_FILE_BYTES} a model file may be",
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read model file {}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("model file {} is not json", path.display()))?;
    let bare = value
        .as_object()
        .is_some_and(|object| object.contains_key("format") && !object.contains_key("model"));
    if bare {
        let model: LearnedModel = serde_json::from_value(value)
            .with_context(|| format!("model file {} is not a model", path.display()))?;
        return Ok(ModelFile {
            model,
            training: TrainingSet::default(),
            scores: Vec::new(),
            note: String::new(),
        });
    }
    serde_json::from_value(value)
        .with_context(|| format!("model file {} is not a model file", path.display()))
}
