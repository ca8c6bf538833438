//! What the agent keeps in its state directory, so that a restarted agent never runs a task
//! twice and resends the reports the server has not acknowledged:
//!
//! - `tasks.json`: the ids of the tasks it ran (the latest [`MAX_RAN_IDS`]), the task running
//!   when it stopped, and the reports not yet acknowledged;
//! - `current`: the version the host runs (after a successful deploy or rollback);
//! - `versions/<version>/`: each deployed version's artifact;
//! - `server-key`: the server's manifest key, trusted on first use;
//! - `logs.json`: where each followed log file was read to, and when (see [`crate::tail`]);
//! - `outbox/`: the metric and log batches the server has not taken yet, a file each (see
//!   [`crate::outbox`]);
//! - `pieces/`: the peer node's pieces and fetched artifacts (named by their digest), and
//!   `artifacts/<sha256>/<upload name>`: each fetched artifact under its upload name.
//!
//! Every file is written atomically: a temporary file beside it, then renamed; all but the
//! outbox's batches and `logs.json` (rewritten every second while lines come) are synced first.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vigil_core::agent::TaskReport;

use crate::tail::FilePosition;

/// Task ids remembered; the server never hands out an old task again once it ended, so the
/// latest ones are enough.
pub const MAX_RAN_IDS: usize = 10_000;
/// Reports kept while the server does not acknowledge them (three per task at most).
pub const MAX_PENDING_REPORTS: usize = 3_000;

/// Seconds an agent may have been down and still go on reading its log files from where it
/// stopped. After a longer gap the backlog would be counted at the time it is read, not when
/// it was written, piling hours of lines into one minute of a release's series: the files are
/// read from their end instead.
pub const LOG_RESUME_SECONDS: i64 = 300;

/// `logs.json`: where the followed log files were read to, and when (Unix seconds).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPositions {
    pub saved_at: i64,
    pub files: Vec<FilePosition>,
}

/// The tasks' part of the state directory (`tasks.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskLedger {
    /// Ids of the tasks started, oldest first.
    pub ran: VecDeque<i64>,
    /// The task started and not yet ended; found at start, the agent stopped while it ran.
    #[serde(default)]
    pub running: Option<i64>,
    /// Reports not yet acknowledged, in the order they were made.
    #[serde(default)]
    pub reports: Vec<TaskReport>,
}

impl TaskLedger {
    pub fn has_run(&self, task: i64) -> bool {
        self.ran.contains(&task)
    }

    /// Notes a task as started: remembered before it runs, so a crash never runs it again.
    pub fn start(&mut self, report: TaskReport) {
        if !self.has_run(report.task) {
            self.ran.push_back(report.task);
        }
        while self.ran.len() > MAX_RAN_IDS {
            self.ran.pop_front();
        }
        self.running = Some(report.task);
        self.push_report(report);
    }

    /// Notes the end of the running task.
    pub fn end(&mut self, report: TaskReport) {
        if self.running == Some(report.task) {
            self.running = None;
        }
        self.push_report(report);
    }

    fn push_report(&mut self, report: TaskReport) {
        self.reports.push(report);
        let excess = self.reports.len().saturating_sub(MAX_PENDING_REPORTS);
        if excess > 0 {
            self.reports.drain(..excess);
        }
    }

    /// Forgets the reports that were sent (`sent`) and whose task the server acknowledged;
    /// reports made after the poll was sent stay.
    pub fn acknowledge(&mut self, sent: &[TaskReport], acknowledged: &[i64]) -> usize {
        let before = self.reports.len();
        self.reports
            .retain(|report| !(acknowledged.contains(&report.task) && sent.contains(report)));
        before - self.reports.len()
    }
}

/// The agent's state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Creates the directory (and `versions/`) when missing.
    pub fn open(root: &Path) -> std::io::Result<StateDir> {
        std::fs::create_dir_all(root.join("versions"))?;
        Ok(StateDir {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `versions/<version>/`; a version is a name checked by the caller.
    pub fn version_dir(&self, version: &str) -> PathBuf {
        self.root.join("versions").join(version)
    }

    /// The log positions saved at most [`LOG_RESUME_SECONDS`] before `now`, to go on from;
    /// none when there are none, they are older (logged) or unreadable (logged).
    pub fn resumable_log_positions(&self, now: i64) -> Vec<FilePosition> {
        let path = self.root.join("logs.json");
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(error) => {
                tracing::warn!(path = %path.display(), error = %error, "cannot read the log positions, log files read from their end");
                return Vec::new();
            }
        };
        let saved: LogPositions = match serde_json::from_slice(&bytes) {
            Ok(saved) => saved,
            Err(error) => {
                tracing::warn!(path = %path.display(), error = %error, "log positions unreadable, log files read from their end");
                return Vec::new();
            }
        };
        let down_seconds = now - saved.saved_at;
        if down_seconds > LOG_RESUME_SECONDS {
            tracing::info!(
                down_seconds,
                most = LOG_RESUME_SECONDS,
                "the agent was down too long to go on from its log positions, log files read from their end"
            );
            return Vec::new();
        }
        saved.files
    }

    /// Replaces `logs.json` (not synced: it is rewritten every second while lines come).
    pub fn save_log_positions(&self, positions: &LogPositions) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(positions).map_err(std::io::Error::other)?;
        write_unsynced(&self.root.join("logs.json"), &bytes)
    }

    /// Where the batches not yet sent wait.
    pub fn outbox_dir(&self) -> PathBuf {
        self.root.join("outbox")
    }

    /// Where the peer node keeps its pieces and whole artifacts.
    pub fn pieces_dir(&self) -> PathBuf {
        self.root.join("pieces")
    }

    /// The ledger, or an empty one when there is none yet.
    pub fn load_ledger(&self) -> std::io::Result<TaskLedger> {
        let path = self.root.join("tasks.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|error| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is not a task ledger: {error}", path.display()),
                )
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(TaskLedger::default()),
            Err(error) => Err(error),
        }
    }

    pub fn save_ledger(&self, ledger: &TaskLedger) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(ledger).map_err(std::io::Error::other)?;
        write_atomic(&self.root.join("tasks.json"), &bytes)
    }

    /// The version the host runs, when one was deployed.
    pub fn current_version(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.root.join("current")).ok()?;
        let version = text.trim();
        (!version.is_empty()).then(|| version.to_owned())
    }

    pub fn set_current_version(&self, version: &str) -> std::io::Result<()> {
        write_atomic(
            &self.root.join("current"),
            format!("{version}\n").as_bytes(),
        )
    }

    /// The server's manifest key trusted on first use, if one was kept.
    pub fn server_key(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.root.join("server-key")).ok()?;
        let key = text.trim();
        (!key.is_empty()).then(|| key.to_owned())
    }

    pub fn set_server_key(&self, key_hex: &str) -> std::io::Result<()> {
        write_atomic(
            &self.root.join("server-key"),
            format!("{key_hex}\n").as_bytes(),
        )
    }
}

/// Writes `bytes` to `path` so that a reader (or a crash) sees the old content or the new,
/// never a part: a temporary file in the same directory, synced, renamed over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_replacing(path, bytes, true)?;
    if let Some(parent) = path.parent() {
        if let Ok(directory) = std::fs::File::open(parent) {
            let _ = directory.sync_all();
        }
    }
    Ok(())
}

/// As [`write_atomic`] without syncing: the file outlives the agent's process, not a power cut
/// (for files rewritten every second, such as the outbox's batches and `logs.json`).
pub fn write_unsynced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_replacing(path, bytes, false)
}

/// `bytes` into `.<name>.tmp` beside `path` (synced when `sync`), renamed over `path`; the
/// temporary file is removed when a step fails.
fn write_replacing(path: &Path, bytes: &[u8], sync: bool) -> std::io::Result<()> {
    let file_name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("state");
    let temporary = path.with_file_name(format!(".{file_name}.tmp"));
    let written = std::fs::File::create(&temporary)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            if sync {
                file.sync_all()?;
            }
            Ok(())
        })
        .and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::agent::TaskState;

    fn report(task: i64, state: TaskState) -> TaskReport {
        TaskReport {
            task,
            state,
            at: 1_700_000_000,
            message: String::new(),
        }
    }

    fn scratch(label: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("vigil-agent-state-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        path
    }

    #[test]
    fn the_ledger_survives_a_restart_of_the_agent() {
        let root = scratch("ledger");
        let state = StateDir::open(&root).unwrap();
        assert_eq!(state.load_ledger().unwrap(), TaskLedger::default());
        let mut ledger = TaskLedger::default();
        ledger.start(report(7, TaskState::Started));
        ledger.end(report(7, TaskState::Succeeded));
        ledger.start(report(8, TaskState::Started));
        state.save_ledger(&ledger).unwrap();

        let reopened = StateDir::open(&root).unwrap().load_ledger().unwrap();
        assert_eq!(reopened, ledger);
        assert!(reopened.has_run(7) && reopened.has_run(8) && !reopened.has_run(9));
        assert_eq!(reopened.running, Some(8));
        assert_eq!(reopened.reports.len(), 3);
        assert!(!root.join(".tasks.json.tmp").exists());
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_broken_ledger_is_an_error_not_an_empty_one() {
        let root = scratch("broken");
        let state = StateDir::open(&root).unwrap();
        std::fs::write(root.join("tasks.json"), b"{not json").unwrap();
        let error = state.load_ledger().unwrap_err();
        assert!(error.to_string().contains("not a task ledger"), "{error}");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn acknowledging_forgets_only_the_reports_sent() {
        let mut ledger = TaskLedger::default();
        ledger.start(report(1, TaskState::Started));
        let sent = ledger.reports.clone();
        // The task ended while the poll was on its way.
        ledger.end(report(1, TaskState::Succeeded));
        assert_eq!(ledger.acknowledge(&sent, &[1]), 1);
        assert_eq!(ledger.reports, vec![report(1, TaskState::Succeeded)]);
        // An acknowledgement of another task forgets nothing.
        let sent = ledger.reports.clone();
        assert_eq!(ledger.acknowledge(&sent, &[2]), 0);
        assert_eq!(ledger.acknowledge(&sent, &[1]), 1);
        assert!(ledger.reports.is_empty());
    }

    #[test]
    fn the_ledger_keeps_the_latest_ids_and_reports_only() {
        let mut ledger = TaskLedger::default();
        for task in 0..(MAX_RAN_IDS as i64 + 5) {
            ledger.start(report(task, TaskState::Started));
        }
        assert_eq!(ledger.ran.len(), MAX_RAN_IDS);
        assert!(!ledger.has_run(4) && ledger.has_run(5));
        assert_eq!(ledger.reports.len(), MAX_PENDING_REPORTS);
        assert_eq!(
            ledger.reports.last().map(|report| report.task),
            Some(MAX_RAN_IDS as i64 + 4)
        );
    }

    #[test]
    fn log_positions_are_gone_on_from_only_after_a_short_stop() {
        let root = scratch("positions");
        let state = StateDir::open(&root).unwrap();
        assert!(state.resumable_log_positions(1_000).is_empty());
        let files = vec![FilePosition {
            path: PathBuf::from("/var/log/shop.log"),
            inode: 7,
            offset: 42,
        }];
        state
            .save_log_positions(&LogPositions {
                saved_at: 1_000,
                files: files.clone(),
            })
            .unwrap();
        assert_eq!(
            state.resumable_log_positions(1_000 + LOG_RESUME_SECONDS),
            files
        );
        assert!(state
            .resumable_log_positions(1_001 + LOG_RESUME_SECONDS)
            .is_empty());
        std::fs::write(root.join("logs.json"), b"{not json").unwrap();
        assert!(state.resumable_log_positions(1_000).is_empty());
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn the_current_version_is_written_whole() {
        let root = scratch("current");
        let state = StateDir::open(&root).unwrap();
        assert_eq!(state.current_version(), None);
        state.set_current_version("1.2.3").unwrap();
        assert_eq!(state.current_version().as_deref(), Some("1.2.3"));
        state.set_current_version("1.2.4").unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("current")).unwrap(),
            "1.2.4\n"
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
