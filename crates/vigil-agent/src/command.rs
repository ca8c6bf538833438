//! [`CommandDeployer`]: a deploy step on a real host. The artifact is kept in
//! `<state>/versions/<version>/` (so a rollback finds it there later); without a template that
//! is the whole step, with one (`--deploy-command`) the template then runs under `sh -c` with
//! `{artifact}` (the kept copy), `{version}`, `{dir}` (the version's directory) and
//! `{previous}` (the version the host ran before, empty for the first) replaced, each quoted
//! for the shell. A rollback runs the same step for the version to go back to, from its kept
//! artifact. The step's output (stdout and stderr) goes to `<dir>/deploy.log`, whose last
//! [`OUTPUT_TAIL_BYTES`] bytes are the task's message; a step running past its timeout is
//! killed and fails.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use vigil_core::agent::{check_shipped_version, HostTask};
use vigil_core::Clock;

use crate::state::StateDir;
use crate::Deployer;

/// Bytes of a step's output kept in its report.
pub const OUTPUT_TAIL_BYTES: usize = 2048;
/// The file in a version's directory naming its artifact.
const ARTIFACT_NAME_FILE: &str = ".artifact";

/// Replaces `{artifact}`, `{version}`, `{dir}` and `{previous}` in `template`, each value
/// quoted for `sh` (single quotes); other braces are left as they are.
pub fn render_template(template: &str, values: &[(&str, &str)]) -> String {
    let mut rendered = String::with_capacity(template.len());
    let mut rest = template;
    'outer: while let Some(open) = rest.find('{') {
        rendered.push_str(&rest[..open]);
        let after = &rest[open..];
        for (name, value) in values {
            let placeholder = format!("{{{name}}}");
            if after.starts_with(&placeholder) {
                rendered.push_str(&shell_quote(value));
                rest = &after[placeholder.len()..];
                continue 'outer;
            }
        }
        rendered.push('{');
        rest = &after[1..];
    }
    rendered.push_str(rest);
    rendered
}

/// `value` in single quotes for `sh`, a single quote written as `'\''`.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

/// Deploys with a command template (or by copying the artifact alone).
#[derive(Debug)]
pub struct CommandDeployer {
    state: StateDir,
    template: Option<String>,
    timeout: Duration,
    clock: Arc<dyn Clock>,
}

impl CommandDeployer {
    pub fn new(
        state: StateDir,
        template: Option<String>,
        timeout: Duration,
        clock: Arc<dyn Clock>,
    ) -> CommandDeployer {
        CommandDeployer {
            state,
            template,
            timeout,
            clock,
        }
    }

    /// Copies the artifact into the version's directory (atomically: a temporary name, then
    /// renamed) and notes its name there.
    fn keep_artifact(&self, version: &str, artifact: &Path) -> Result<PathBuf, String> {
        let dir = self.state.version_dir(version);
        std::fs::create_dir_all(&dir)
            .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
        let name = artifact
            .file_name()
            .and_then(|name| name.to_str())
            .filter(|name| !name.starts_with('.'))
            .unwrap_or("artifact")
            .to_owned();
        let kept = dir.join(&name);
        let temporary = dir.join(format!(".{name}.tmp"));
        std::fs::copy(artifact, &temporary).map_err(|error| {
            format!(
                "cannot copy the artifact {} into {}: {error}",
                artifact.display(),
                dir.display()
            )
        })?;
        std::fs::rename(&temporary, &kept)
            .map_err(|error| format!("cannot keep the artifact in {}: {error}", dir.display()))?;
        crate::state::write_atomic(&dir.join(ARTIFACT_NAME_FILE), name.as_bytes())
            .map_err(|error| format!("cannot write {}: {error}", dir.display()))?;
        Ok(kept)
    }

    /// The artifact kept for `version`, when it is on disk.
    fn kept_artifact(&self, version: &str) -> Result<PathBuf, String> {
        let dir = self.state.version_dir(version);
        let name = std::fs::read_to_string(dir.join(ARTIFACT_NAME_FILE)).map_err(|_| {
            format!(
                "version {version} is not on this host (nothing kept in {})",
                dir.display()
            )
        })?;
        let kept = dir.join(name.trim());
        if !kept.is_file() {
            return Err(format!(
                "the artifact of version {version} is missing: {}",
                kept.display()
            ));
        }
        Ok(kept)
    }

    /// Runs the template for `version`, or nothing when there is none.
    fn run_step(&self, version: &str, artifact: &Path) -> Result<String, String> {
        let Some(template) = &self.template else {
            return Ok(format!("version {version} kept in {}", artifact.display()));
        };
        let dir = self.state.version_dir(version);
        let previous = self.state.current_version().unwrap_or_default();
        let artifact_text = artifact.display().to_string();
        let dir_text = dir.display().to_string();
        let command = render_template(
            template,
            &[
                ("artifact", &artifact_text),
                ("version", version),
                ("dir", &dir_text),
                ("previous", &previous),
            ],
        );
        run_shell(&command, &dir, self.timeout, self.clock.as_ref())
    }
}

/// Runs `command` under `sh -c` in `dir`, its output into `dir/deploy.log`, killed after
/// `timeout`; Ok with the output's tail when it exits 0, Err with the status and the tail
/// otherwise.
pub fn run_shell(
    command: &str,
    dir: &Path,
    timeout: Duration,
    clock: &dyn Clock,
) -> Result<String, String> {
    let log_path = dir.join("deploy.log");
    let log = std::fs::File::create(&log_path)
        .map_err(|error| format!("cannot create {}: {error}", log_path.display()))?;
    let log_for_errors = log
        .try_clone()
        .map_err(|error| format!("cannot open {}: {error}", log_path.display()))?;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .process_group(0)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_for_errors))
        .spawn()
        .map_err(|error| format!("cannot start sh: {error}"))?;
    let started = clock.now();
    let timeout_seconds = i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX).max(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(error) => return Err(format!("cannot wait for the deploy command: {error}")),
        }
        if clock.now() - started >= timeout_seconds {
            // The step's own process group: the shell and whatever it started.
            let _ = Command::new("sh")
                .arg("-c")
                .arg(format!("kill -KILL -{}", child.id()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "the deploy command ran past its timeout of {timeout_seconds} s and was killed; output: {}",
                output_tail(&log_path)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let tail = output_tail(&log_path);
    if status.success() {
        Ok(tail)
    } else {
        Err(format!(
            "the deploy command failed ({status}); output: {tail}"
        ))
    }
}

/// The last [`OUTPUT_TAIL_BYTES`] bytes of a file, cut at a character boundary.
fn output_tail(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let start = bytes.len().saturating_sub(OUTPUT_TAIL_BYTES);
    let text = String::from_utf8_lossy(&bytes[start..]);
    text.trim().to_owned()
}

impl Deployer for CommandDeployer {
    fn deploy(&mut self, task: &HostTask, artifact: Option<&Path>) -> Result<String, String> {
        check_shipped_version(&task.version)?;
        let artifact = artifact.ok_or_else(|| {
            format!(
                "deploy task {} of version {} names no artifact",
                task.id, task.version
            )
        })?;
        let kept = self.keep_artifact(&task.version, artifact)?;
        self.run_step(&task.version, &kept)
    }

    fn rollback(&mut self, task: &HostTask) -> Result<String, String> {
        check_shipped_version(&task.version)?;
        let kept = self.kept_artifact(&task.version)?;
        self.run_step(&task.version, &kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::agent::{TaskKind, TaskState};
    use vigil_core::SystemClock;

    #[test]
    fn placeholders_are_replaced_quoted_and_other_braces_kept() {
        let rendered = render_template(
            "tar -xzf {artifact} -C {dir} && echo {version} {previous} ${HOME} {other}",
            &[
                ("artifact", "/x/it's.tgz"),
                ("version", "2"),
                ("dir", "/x/versions/2"),
                ("previous", ""),
            ],
        );
        assert_eq!(
            rendered,
            "tar -xzf '/x/it'\\''s.tgz' -C '/x/versions/2' && echo '2' '' ${HOME} {other}"
        );
    }

    #[test]
    fn a_quoted_value_comes_back_whole_through_the_shell() {
        let value = "a b'c\"$(touch nope)`x`";
        let output = Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", shell_quote(value)))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&output.stdout), value);
    }

    fn task(id: i64, kind: TaskKind, version: &str) -> HostTask {
        HostTask {
            id,
            release: "r1".into(),
            host: "h1".into(),
            batch: 0,
            kind,
            version: version.into(),
            artifact: Some("ab".repeat(32)),
            state: TaskState::Sent,
            created_at: 0,
            started_at: None,
            ended_at: None,
            message: String::new(),
        }
    }

    fn scratch(label: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "vigil-agent-command-{label}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        path
    }

    #[test]
    fn the_default_step_keeps_the_artifact_and_a_rollback_finds_it() {
        let root = scratch("default");
        let artifact = root.join("shop-2.tar.gz");
        std::fs::write(&artifact, b"version two").unwrap();
        let state = StateDir::open(&root.join("state")).unwrap();
        let mut deployer = CommandDeployer::new(
            state.clone(),
            None,
            Duration::from_secs(5),
            Arc::new(SystemClock),
        );
        deployer
            .deploy(&task(1, TaskKind::Deploy, "2"), Some(&artifact))
            .unwrap();
        let kept = state.version_dir("2").join("shop-2.tar.gz");
        assert_eq!(std::fs::read(&kept).unwrap(), b"version two");
        assert!(deployer.rollback(&task(2, TaskKind::Rollback, "2")).is_ok());
        let missing = deployer
            .rollback(&task(3, TaskKind::Rollback, "1"))
            .unwrap_err();
        assert!(
            missing.contains("version 1 is not on this host"),
            "{missing}"
        );
        let no_artifact = deployer
            .deploy(&task(4, TaskKind::Deploy, "3"), None)
            .unwrap_err();
        assert!(no_artifact.contains("names no artifact"), "{no_artifact}");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_template_runs_with_its_values_and_a_failure_carries_its_output() {
        let root = scratch("template");
        let artifact = root.join("app.txt");
        std::fs::write(&artifact, b"payload").unwrap();
        let state = StateDir::open(&root.join("state")).unwrap();
        state.set_current_version("1").unwrap();
        let template = "cat {artifact} > {dir}/installed && echo from {previous} to {version}; \
                        test {version} != bad || { echo broken >&2; exit 3; }";
        let mut deployer = CommandDeployer::new(
            state.clone(),
            Some(template.to_owned()),
            Duration::from_secs(5),
            Arc::new(SystemClock),
        );
        let output = deployer
            .deploy(&task(1, TaskKind::Deploy, "2"), Some(&artifact))
            .unwrap();
        assert_eq!(output, "from 1 to 2");
        assert_eq!(
            std::fs::read(state.version_dir("2").join("installed")).unwrap(),
            b"payload"
        );
        let failed = deployer
            .deploy(&task(2, TaskKind::Deploy, "bad"), Some(&artifact))
            .unwrap_err();
        assert!(failed.contains("exit status: 3"), "{failed}");
        assert!(failed.ends_with("broken"), "{failed}");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_step_past_its_timeout_is_killed() {
        let root = scratch("timeout");
        let artifact = root.join("app.txt");
        std::fs::write(&artifact, b"payload").unwrap();
        let state = StateDir::open(&root.join("state")).unwrap();
        let mut deployer = CommandDeployer::new(
            state,
            Some("echo waiting; sleep 30".to_owned()),
            Duration::from_secs(1),
            Arc::new(SystemClock),
        );
        let failed = deployer
            .deploy(&task(1, TaskKind::Deploy, "2"), Some(&artifact))
            .unwrap_err();
        assert!(failed.contains("past its timeout"), "{failed}");
        assert!(failed.ends_with("waiting"), "{failed}");
        let _ = std::fs::remove_dir_all(&root);
    }
}
