//! Vigil's host agent (`vigil agent --server URL --token T`): registers the host with the
//! server, polls for its tasks and runs them (deploy a version from its artifact, roll back to
//! the version before, which stays on disk), reports each task's start, end and result, pushes
//! the host's metrics and its log files' events, and fetches artifacts from its peers. What it
//! sent and was not acknowledged is sent again after a server restart or a network cut.
//!
//! The host is reached through three parts, so that a simulated fleet (`vigil demo`) runs the
//! same agent as a real host: a [`Probe`] (metrics; on a host, `/proc`), a [`LogSource`] (log
//! lines; on a host, tailed files) and a [`Deployer`] (on a host, a command template).
#![forbid(unsafe_code)]

pub mod agent;
pub mod artifacts;
pub mod client;
pub mod command;
pub mod events;
pub mod outbox;
pub mod procfs;
pub mod state;
pub mod tail;
pub mod tasks;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use vigil_core::agent::HostTask;

pub use agent::{run, AgentError, HostParts};
pub use command::CommandDeployer;
pub use procfs::ProcProbe;
pub use tail::{FileLogSource, FilePosition};

/// One metric sample of the host.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSample {
    /// The metric's name (`cpu_utilization`, `memory_used_ratio`, `load1`, ...).
    pub metric: String,
    pub value: f64,
}

/// The host's metrics, sampled every `metrics_interval`.
pub trait Probe: Send + 'static {
    fn sample(&mut self, now_ms: i64) -> Vec<MetricSample>;
}

/// The host's log lines since the last read (whole lines, in order; continuation lines of a
/// stack trace included, which the agent joins into one event).
pub trait LogSource: Send + 'static {
    fn read_lines(&mut self, now_ms: i64) -> Vec<String>;

    /// The same lines kept apart by stream (on a host, one per followed file, in a fixed
    /// order), so that the lines of two files are never joined into one event. By default,
    /// one stream.
    fn read_streams(&mut self, now_ms: i64) -> Vec<Vec<String>> {
        vec![self.read_lines(now_ms)]
    }

    /// Where each followed file was read to, saved so that the next run goes on from there
    /// (see [`tail`]); a source without files has none.
    fn positions(&self) -> Vec<FilePosition> {
        Vec::new()
    }
}

/// What a task does on the host. `artifact` is the verified artifact file for a deploy (None
/// for a rollback: the previous version is already on disk, under the agent's state
/// directory). Ok carries the tail of the output, Err why it failed (exit status, output tail).
pub trait Deployer: Send + 'static {
    fn deploy(&mut self, task: &HostTask, artifact: Option<&Path>) -> Result<String, String>;
    fn rollback(&mut self, task: &HostTask) -> Result<String, String>;
}

/// How an agent reaches its server and describes its host.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// `http://host:port` of `vigil serve`.
    pub server: String,
    /// An ingest token.
    pub token: String,
    pub host: String,
    pub app: String,
    pub labels: BTreeMap<String, String>,
    /// Where the agent keeps its versions, its pieces and what it has not yet had
    /// acknowledged.
    pub state_dir: PathBuf,
    /// Where it serves artifact pieces to peers (`127.0.0.1:0` picks a port).
    pub peer_listen: std::net::SocketAddr,
    /// Seconds between metric samples.
    pub metrics_interval_seconds: u64,
    /// The server's manifest key (Ed25519, hex) when pinned; None trusts the key the server
    /// gives at the first download and keeps it in the state directory.
    pub server_key: Option<String>,
    /// Most bytes of metric and log batches kept while the server does not take them; past
    /// it the oldest are dropped and counted.
    pub queue_bytes: usize,
    /// Timeout of one HTTP call, seconds.
    pub request_timeout_seconds: u64,
}

impl AgentConfig {
    /// A configuration with the defaults: no labels, peers served on `127.0.0.1:0`, metrics
    /// every 10 s, the manifest key trusted on first use, a 32 MiB queue, 30 s calls.
    pub fn new(
        server: &str,
        token: &str,
        host: &str,
        app: &str,
        state_dir: PathBuf,
    ) -> AgentConfig {
        AgentConfig {
            server: server.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            host: host.to_owned(),
            app: app.to_owned(),
            labels: BTreeMap::new(),
            state_dir,
            peer_listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_interval_seconds: 10,
            server_key: None,
            queue_bytes: 32 << 20,
            request_timeout_seconds: 30,
        }
    }
}
