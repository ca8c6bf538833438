//! Running tasks: one at a time, in the order the server gives them, never one id twice.
//!
//! A task's id is written to the ledger (with its `started` report) before its step runs, so
//! an agent killed mid-step never runs it again; started again, it reports that task failed
//! (the step's outcome is unknown). After a successful step, `<state>/current` holds the task's
//! version. Reports stay in the ledger until a poll's answer acknowledges them.

use std::path::Path;
use std::sync::Mutex;

use vigil_core::agent::{HostTask, TaskKind, TaskReport, TaskState};
use vigil_core::Clock;

use crate::state::{StateDir, TaskLedger};
use crate::Deployer;

/// What a restarted agent says of the task it was running when it stopped.
pub const INTERRUPTED: &str = "the agent stopped while the task ran; its outcome is unknown";

/// The ledger of tasks, shared by the poll (reports) and the runner (starts and ends).
#[derive(Debug)]
pub struct Ledger {
    state: StateDir,
    ledger: Mutex<TaskLedger>,
}

impl Ledger {
    /// Reads the ledger of `state`; a task found running is ended as failed.
    pub fn open(state: StateDir, now: i64) -> std::io::Result<Ledger> {
        let mut ledger = state.load_ledger()?;
        if let Some(task) = ledger.running {
            tracing::warn!(task, "task interrupted by an agent restart");
            ledger.end(TaskReport {
                task,
                state: TaskState::Failed,
                at: now,
                message: INTERRUPTED.to_owned(),
            });
            state.save_ledger(&ledger)?;
        }
        Ok(Ledger {
            state,
            ledger: Mutex::new(ledger),
        })
    }

    pub fn state(&self) -> &StateDir {
        &self.state
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TaskLedger> {
        self.ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn has_run(&self, task: i64) -> bool {
        self.lock().has_run(task)
    }

    /// The reports not yet acknowledged, oldest first.
    pub fn reports(&self) -> Vec<TaskReport> {
        self.lock().reports.clone()
    }

    /// Forgets the acknowledged reports among those sent, and saves.
    pub fn acknowledge(&self, sent: &[TaskReport], acknowledged: &[i64]) -> std::io::Result<()> {
        let mut ledger = self.lock();
        if ledger.acknowledge(sent, acknowledged) > 0 {
            self.state.save_ledger(&ledger)?;
        }
        Ok(())
    }

    /// Notes the task started and saves; false (nothing changed) when it ran before.
    fn start(&self, report: TaskReport) -> std::io::Result<bool> {
        let mut ledger = self.lock();
        if ledger.has_run(report.task) {
            return Ok(false);
        }
        ledger.start(report);
        self.state.save_ledger(&ledger)?;
        Ok(true)
    }

    fn end(&self, report: TaskReport) -> std::io::Result<()> {
        let mut ledger = self.lock();
        ledger.end(report);
        self.state.save_ledger(&ledger)
    }
}

/// Why a task could not be run at all (it was not started; the server sends it again).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot write the task ledger: {0}")]
    Ledger(#[from] std::io::Error),
}

/// Runs `task` unless it ran before (None then): notes it started, runs its step, writes the
/// host's current version after a success, notes its end. Returns the end's report.
pub fn run_task(
    ledger: &Ledger,
    deployer: &mut dyn Deployer,
    task: &HostTask,
    artifact: Option<&Path>,
    clock: &dyn Clock,
) -> Result<Option<TaskReport>, RunError> {
    let started = TaskReport {
        task: task.id,
        state: TaskState::Started,
        at: clock.now(),
        message: String::new(),
    };
    if !ledger.start(started)? {
        return Ok(None);
    }
    tracing::info!(
        task = task.id,
        release = %task.release,
        task_kind = task.kind.as_str(),
        version = %task.version,
        "task started"
    );
    let step = match task.kind {
        TaskKind::Deploy => deployer.deploy(task, artifact),
        TaskKind::Rollback => deployer.rollback(task),
    };
    let outcome = step.and_then(|output| {
        ledger
            .state()
            .set_current_version(&task.version)
            .map(|()| output)
            .map_err(|error| {
                format!("the step succeeded but the current version cannot be written: {error}")
            })
    });
    let (state, message) = match outcome {
        Ok(output) => (TaskState::Succeeded, output),
        Err(reason) => (TaskState::Failed, reason),
    };
    let ended = TaskReport {
        task: task.id,
        state,
        at: clock.now(),
        message: bounded_message(&message),
    };
    ledger.end(ended.clone())?;
    if state == TaskState::Succeeded {
        tracing::info!(task = task.id, release = %task.release, version = %task.version, "task succeeded");
    } else {
        tracing::warn!(task = task.id, release = %task.release, reason = %ended.message, "task failed");
    }
    Ok(Some(ended))
}

/// A report's message at most 4 KiB, cut at a character boundary (its end kept: the tail of
/// an output says most).
fn bounded_message(message: &str) -> String {
    const LIMIT: usize = 4096;
    if message.len() <= LIMIT {
        return message.to_owned();
    }
    let mut start = message.len() - LIMIT;
    while !message.is_char_boundary(start) {
        start += 1;
    }
    message[start..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use vigil_core::ManualClock;

    /// Records what it was asked to do; fails the versions named `bad`.
    #[derive(Default)]
    struct Recording {
        calls: Vec<(TaskKind, String, Option<PathBuf>)>,
    }

    impl Deployer for Recording {
        fn deploy(&mut self, task: &HostTask, artifact: Option<&Path>) -> Result<String, String> {
            self.calls.push((
                TaskKind::Deploy,
                task.version.clone(),
                artifact.map(Path::to_path_buf),
            ));
            if task.version == "bad" {
                return Err("exit status: 1; output: no".to_owned());
            }
            Ok(format!("deployed {}", task.version))
        }
        fn rollback(&mut self, task: &HostTask) -> Result<String, String> {
            self.calls
                .push((TaskKind::Rollback, task.version.clone(), None));
            Ok(format!("rolled back to {}", task.version))
        }
    }

    fn task(id: i64, kind: TaskKind, version: &str) -> HostTask {
        HostTask {
            id,
            release: "r1".into(),
            host: "h1".into(),
            batch: 0,
            kind,
            version: version.into(),
            artifact: None,
            state: TaskState::Sent,
            created_at: 0,
            started_at: None,
            ended_at: None,
            message: String::new(),
        }
    }

    fn scratch(label: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("vigil-agent-tasks-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        path
    }

    #[test]
    fn tasks_run_once_in_order_and_a_restarted_agent_does_not_run_them_again() {
        let root = scratch("once");
        let clock = ManualClock::new(1_000);
        let state = StateDir::open(&root).unwrap();
        let ledger = Ledger::open(state.clone(), clock.now()).unwrap();
        let mut deployer = Recording::default();
        let artifact = root.join("a.tgz");
        let first = run_task(
            &ledger,
            &mut deployer,
            &task(1, TaskKind::Deploy, "2"),
            Some(&artifact),
            &clock,
        )
        .unwrap()
        .unwrap();
        assert_eq!(first.state, TaskState::Succeeded);
        assert_eq!(first.message, "deployed 2");
        assert_eq!(state.current_version().as_deref(), Some("2"));
        clock.advance(5);
        let rollback = run_task(
            &ledger,
            &mut deployer,
            &task(2, TaskKind::Rollback, "1"),
            None,
            &clock,
        )
        .unwrap()
        .unwrap();
        assert_eq!(rollback.state, TaskState::Succeeded);
        assert_eq!(state.current_version().as_deref(), Some("1"));
        // The same ids again: nothing runs.
        for id in [1, 2] {
            let again = run_task(
                &ledger,
                &mut deployer,
                &task(id, TaskKind::Deploy, "9"),
                None,
                &clock,
            );
            assert!(again.unwrap().is_none());
        }
        assert_eq!(deployer.calls.len(), 2);
        assert_eq!(
            deployer.calls[0],
            (TaskKind::Deploy, "2".into(), Some(artifact))
        );
        assert_eq!(deployer.calls[1], (TaskKind::Rollback, "1".into(), None));
        let states: Vec<(i64, TaskState)> = ledger
            .reports()
            .iter()
            .map(|report| (report.task, report.state))
            .collect();
        assert_eq!(
            states,
            [
                (1, TaskState::Started),
                (1, TaskState::Succeeded),
                (2, TaskState::Started),
                (2, TaskState::Succeeded)
            ]
        );

        // Restarted: the ids are remembered, the reports not acknowledged are still there.
        drop(ledger);
        let reopened = Ledger::open(StateDir::open(&root).unwrap(), clock.now()).unwrap();
        assert_eq!(reopened.reports().len(), 4);
        let mut fresh = Recording::default();
        assert!(run_task(
            &reopened,
            &mut fresh,
            &task(1, TaskKind::Deploy, "2"),
            None,
            &clock
        )
        .unwrap()
        .is_none());
        assert!(fresh.calls.is_empty());
        let sent = reopened.reports();
        reopened.acknowledge(&sent, &[1, 2]).unwrap();
        assert!(Ledger::open(StateDir::open(&root).unwrap(), clock.now())
            .unwrap()
            .reports()
            .is_empty());
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_failed_step_is_reported_and_keeps_the_current_version() {
        let root = scratch("failed");
        let clock = ManualClock::new(1_000);
        let state = StateDir::open(&root).unwrap();
        state.set_current_version("1").unwrap();
        let ledger = Ledger::open(state.clone(), clock.now()).unwrap();
        let mut deployer = Recording::default();
        let report = run_task(
            &ledger,
            &mut deployer,
            &task(5, TaskKind::Deploy, "bad"),
            None,
            &clock,
        )
        .unwrap()
        .unwrap();
        assert_eq!(report.state, TaskState::Failed);
        assert_eq!(report.message, "exit status: 1; output: no");
        assert_eq!(state.current_version().as_deref(), Some("1"));
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_task_running_when_the_agent_stopped_is_reported_failed_not_run_again() {
        let root = scratch("interrupted");
        let state = StateDir::open(&root).unwrap();
        let mut interrupted = TaskLedger::default();
        interrupted.start(TaskReport {
            task: 9,
            state: TaskState::Started,
            at: 10,
            message: String::new(),
        });
        state.save_ledger(&interrupted).unwrap();
        let ledger = Ledger::open(state, 20).unwrap();
        let reports = ledger.reports();
        assert_eq!(reports.len(), 2);
        assert_eq!(reports[1].state, TaskState::Failed);
        assert_eq!(reports[1].message, INTERRUPTED);
        assert!(ledger.has_run(9));
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn long_messages_keep_their_end() {
        let message = format!("{}end", "é".repeat(4000));
        let bounded = bounded_message(&message);
        assert!(bounded.len() <= 4096 && bounded.ends_with("end"));
    }
}
