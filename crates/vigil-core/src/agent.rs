//! Vigil's own executor: the hosts' agents, the tasks the server gives them (deploy a version,
//! roll back to the one before), what they report back, and the artifacts they fetch, described
//! by a signed manifest. These are the wire types of the agent routes (`/api/v1/agents/...`,
//! `/api/v1/artifacts/...`) and the rows the store keeps; the rules live in `vigil-deploy`, the
//! executor in `vigil-executor`, the agent in `vigil-agent`, the distribution in `vigil-p2p`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What an agent says of itself when it starts, and again whenever the server forgot it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentHello {
    /// The host's name, as its metrics and logs name it.
    pub host: String,
    pub app: String,
    /// Labels a release's selector matches (`zone="b"`, `role="web"`): at most 32.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The version the host runs now, if the agent deployed one before.
    #[serde(default)]
    pub version: Option<String>,
    /// `ip:port` where the agent serves artifact pieces to its peers.
    #[serde(default)]
    pub peer_addr: Option<String>,
    /// The agent's own build, for the pages.
    #[serde(default)]
    pub agent_version: String,
}

/// A registered agent, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub host: String,
    pub app: String,
    pub labels: BTreeMap<String, String>,
    pub version: Option<String>,
    pub peer_addr: Option<String>,
    pub agent_version: String,
    /// Unix seconds.
    pub registered_at: i64,
    /// Unix seconds of its latest poll: an agent silent for longer than the executor's
    /// `agent_timeout_seconds` has vanished.
    pub last_seen_at: i64,
}

/// What a task asks a host to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Install `version` from its artifact and switch to it.
    Deploy,
    /// Switch back to `version`, the one the host ran before the release (kept on its disk).
    Rollback,
}

impl TaskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Deploy => "deploy",
            TaskKind::Rollback => "rollback",
        }
    }

    pub fn parse(text: &str) -> Option<TaskKind> {
        [TaskKind::Deploy, TaskKind::Rollback]
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

/// Where a task is. `Pending` until the host's agent fetched it with a poll, `Sent` after,
/// then what the agent reports: `Started`, and `Succeeded` or `Failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Pending,
    Sent,
    Started,
    Succeeded,
    Failed,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Sent => "sent",
            TaskState::Started => "started",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<TaskState> {
        [
            TaskState::Pending,
            TaskState::Sent,
            TaskState::Started,
            TaskState::Succeeded,
            TaskState::Failed,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }

    /// No report moves a task out of an ended state.
    pub fn is_ended(self) -> bool {
        matches!(self, TaskState::Succeeded | TaskState::Failed)
    }
}

/// One host's step of a release: deploy its version, or roll it back. At most one deploy and one
/// rollback task exist per release and host, so a host is never deployed twice by one release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostTask {
    /// Unique over the store; the agent remembers the ids it ran and never runs one twice.
    pub id: i64,
    pub release: String,
    pub host: String,
    /// The batch (from 0) the host is deployed in.
    pub batch: u32,
    pub kind: TaskKind,
    /// The version to run after the task.
    pub version: String,
    /// The artifact (its SHA-256 in hex) holding `version`; for a rollback, the artifact the
    /// host ran before, if the server knows it (the agent keeps it on disk either way).
    pub artifact: Option<String>,
    pub state: TaskState,
    /// Unix seconds.
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    /// The agent's last words on it: a failure's exit status and the tail of its output.
    pub message: String,
}

/// An agent's report on one task; reports are resent until a poll's answer acknowledges them,
/// and a repeated report changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskReport {
    pub task: i64,
    /// `started`, `succeeded` or `failed`.
    pub state: TaskState,
    /// Unix seconds on the host.
    pub at: i64,
    #[serde(default)]
    pub message: String,
}

/// How far an agent has an artifact: pieces verified and held, out of all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactProgress {
    pub artifact: String,
    pub pieces_held: u32,
    pub pieces: u32,
    /// The whole file's SHA-256 was checked against the manifest.
    #[serde(default)]
    pub verified: bool,
}

/// `POST /api/v1/agents/{host}/poll`: the agent's heartbeat, its reports and its downloads.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentPoll {
    #[serde(default)]
    pub reports: Vec<TaskReport>,
    #[serde(default)]
    pub artifacts: Vec<ArtifactProgress>,
}

/// The answer to a poll.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AgentOrders {
    /// Task ids whose reports in the poll were stored: the agent may forget them.
    pub acknowledged: Vec<i64>,
    /// Tasks to run now, in order (pending or sent and not yet reported ended).
    pub tasks: Vec<HostTask>,
    /// Artifacts to fetch ahead of their batch (their ids); fetch them from peers.
    pub fetch: Vec<String>,
    /// When to poll again.
    pub poll_seconds: u32,
    /// False when the server does not know this host (it lost its agents, or never had it):
    /// the agent registers again and then polls.
    pub registered: bool,
}

/// A file to deploy, cut into pieces. The server signs it; an agent checks the signature with
/// the server's public key, every piece against its BLAKE3 digest before it keeps or serves it,
/// and the whole file against `sha256` before it deploys it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The artifact's id: the SHA-256 of the whole file, lowercase hex.
    pub sha256: String,
    /// The name it was uploaded with (`shop-42.tar.gz`).
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// Bytes per piece; the last piece may be shorter.
    pub piece_size: u32,
    /// BLAKE3 of each piece, lowercase hex, in order.
    pub pieces: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Ed25519 signature over [`Manifest::signed_bytes`], lowercase hex.
    pub signature: String,
}

impl Manifest {
    /// What the signature covers: every field but the signature, one line each.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut text = format!(
            "vigil-manifest/1\n{}\n{}\n{}\n{}\n{}\n",
            self.sha256, self.name, self.size, self.piece_size, self.created_at
        );
        for piece in &self.pieces {
            text.push_str(piece);
            text.push('\n');
        }
        text.into_bytes()
    }

    pub fn piece_count(&self) -> u32 {
        self.pieces.len() as u32
    }

    /// The byte length of piece `index` (the last is shorter), or None past the end.
    pub fn piece_len(&self, index: u32) -> Option<u32> {
        if index >= self.piece_count() {
            return None;
        }
        let start = u64::from(index) * u64::from(self.piece_size);
        let end = (start + u64::from(self.piece_size)).min(self.size);
        Some((end - start) as u32)
    }
}

/// An artifact as the store keeps it (its bytes live in the server's artifact directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRecord {
    pub manifest: Manifest,
    /// The uploading token's name.
    pub created_by: String,
}

/// A peer as the tracker hands it out: where it serves, and which pieces it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub host: String,
    /// `ip:port`.
    pub addr: String,
    /// Which pieces it holds: a bitfield, piece 0 the highest bit of the first byte, lowercase
    /// hex.
    pub have: String,
}

/// `POST /api/v1/artifacts/{id}/announce`: a peer tells the tracker what it holds and asks
/// whom to fetch from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Announce {
    pub host: String,
    pub addr: String,
    /// As [`PeerInfo::have`].
    pub have: String,
    /// Peers that sent a piece that failed its digest: the tracker stops handing them out.
    #[serde(default)]
    pub bad_peers: Vec<String>,
}

/// The tracker's answer: a few peers to fetch from, rarest pieces first being the fetcher's
/// choice.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Swarm {
    pub peers: Vec<PeerInfo>,
    /// When to announce again.
    pub interval_ms: u32,
}

/// One batch of an executor release's plan: how many of the target hosts, and how long to
/// watch them before the next batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanStep {
    /// `"1"` (hosts) or `"10%"` (of the target hosts, rounded up; the batches' hosts add up to
    /// the share reached so far).
    pub size: String,
    /// Seconds to observe the batch before the next one starts; the last batch's is the
    /// release's `observe_seconds`.
    pub observe_seconds: i64,
}

/// What Vigil's own executor holds for a release it ships, beside its `ReleaseSpec` (whose
/// hosts and batches the plan was resolved into): the artifact and each batch's observation
/// time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutorSpec {
    /// The artifact's id (its SHA-256).
    pub artifact: String,
    /// Seconds to observe each batch before the next starts, one per planned batch.
    pub observe_seconds: Vec<i64>,
}

/// Whether `version` may be shipped by Vigil's executor: it names a directory on every host
/// (`<state>/versions/<version>/`), so no path separators, no leading dot, only letters, digits,
/// `.`, `-`, `_` and `+`, at most 128 bytes. The server refuses an order whose version breaks
/// this, and the agent checks it again before touching its disk.
pub fn check_shipped_version(version: &str) -> Result<(), String> {
    if version.is_empty() || version.len() > 128 {
        return Err(format!("version {version:?} must be 1 to 128 bytes"));
    }
    if version.starts_with('.') {
        return Err(format!("version {version:?} may not start with a dot"));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+');
    if !version.chars().all(allowed) {
        return Err(format!(
            "version {version:?} may hold only letters, digits, '.', '-', '_' and '+'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(size: u64, piece_size: u32, pieces: usize) -> Manifest {
        Manifest {
            sha256: "ab".repeat(32),
            name: "shop-42.tar.gz".to_string(),
            size,
            piece_size,
            pieces: vec!["cd".repeat(32); pieces],
            created_at: 1_700_000_000,
            signature: String::new(),
        }
    }

    #[test]
    fn the_last_piece_is_the_remainder() {
        let cut = manifest(10, 4, 3);
        assert_eq!(cut.piece_len(0), Some(4));
        assert_eq!(cut.piece_len(2), Some(2));
        assert_eq!(cut.piece_len(3), None);
    }

    #[test]
    fn the_signed_bytes_change_with_every_field_but_the_signature() {
        let base = manifest(10, 4, 3);
        let mut signed = base.clone();
        signed.signature = "00".repeat(64);
        assert_eq!(base.signed_bytes(), signed.signed_bytes());
        let mut renamed = base.clone();
        renamed.name = "other".to_string();
        assert_ne!(base.signed_bytes(), renamed.signed_bytes());
        let mut piece = base.clone();
        piece.pieces[1] = "ef".repeat(32);
        assert_ne!(base.signed_bytes(), piece.signed_bytes());
    }

    #[test]
    fn task_states_and_kinds_read_back() {
        for state in [
            TaskState::Pending,
            TaskState::Sent,
            TaskState::Started,
            TaskState::Succeeded,
            TaskState::Failed,
        ] {
            assert_eq!(TaskState::parse(state.as_str()), Some(state));
        }
        assert_eq!(TaskKind::parse("rollback"), Some(TaskKind::Rollback));
        assert_eq!(TaskKind::parse("restart"), None);
    }

    #[test]
    fn shipped_versions_that_would_leave_the_versions_folder_are_refused() {
        assert!(check_shipped_version("2.4.1-rc1+build7").is_ok());
        for bad in [
            "",
            ".",
            "..",
            "../etc",
            "a/b",
            ".hidden",
            "a b",
            "caf\u{e9}",
            &"x".repeat(129),
        ] {
            assert!(check_shipped_version(bad).is_err(), "{bad:?}");
        }
    }
}
