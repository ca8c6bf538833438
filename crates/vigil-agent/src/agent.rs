//! The agent's loop: three tokio tasks sharing one state.
//!
//! - **collect**: every `metrics_interval_seconds` a [`Probe`] sample, every second the
//!   [`LogSource`]'s new lines grouped into events; each becomes a batch in the [`Outbox`]
//!   (and a file in the state directory's `outbox/`, until the server takes it) with its
//!   idempotency key; then the log files' positions are saved, for a restarted agent to go on
//!   from.
//! - **send**: the oldest batch to the server's ingest route until it is taken, with
//!   [`Backoff`] after a failure; a batch refused for its content is dropped (logged), anything
//!   else is sent again, with the same key.
//! - **control**: registers, then polls every `poll_seconds` with the reports not yet
//!   acknowledged and the downloads' progress; registers again when the server forgot the
//!   host; fetches the artifacts it is told to; runs the tasks in order, one at a time, each
//!   id once (see [`crate::tasks`]), on a blocking thread while the polls go on.
//!
//! Every HTTP call runs on a blocking thread with its timeout; nothing waits without one.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::json;
use tokio::sync::{watch, Notify, OnceCell};
use tokio::task::JoinHandle;
use vigil_core::agent::{AgentHello, AgentOrders, AgentPoll, ArtifactProgress, HostTask, TaskKind};
use vigil_core::Clock;
use vigil_p2p::fetch::Fetch;
use vigil_p2p::peer::{Limits, PeerNode};

use crate::artifacts::{
    is_artifact_id, named_copy, trusted_key, verified_manifest, HttpCoordinator,
};
use crate::client::{Client, ClientError};
use crate::events::{LogEvent, StreamJoiners};
use crate::outbox::{fnv1a, Backoff, Batch, BatchKind, Outbox};
use crate::state::{LogPositions, StateDir};
use crate::tail::FilePosition;
use crate::tasks::{run_task, Ledger};
use crate::{AgentConfig, Deployer, LogSource, MetricSample, Probe};

/// Events in one log batch at most.
const MAX_EVENTS_PER_BATCH: usize = 1000;
/// Fetch attempts of an artifact before a deploy task needing it fails.
const FETCH_ATTEMPTS: u32 = 3;
/// Reports in one poll at most (the oldest first; the rest go with the next polls).
const MAX_REPORTS_PER_POLL: usize = 256;
/// Artifacts whose progress one poll carries at most: those being fetched first.
const MAX_ARTIFACTS_PER_POLL: usize = 16;
/// Artifacts remembered as fetched at most; one forgotten is fetched again when needed (its
/// pieces are still on disk).
const MAX_READY_ARTIFACTS: usize = 64;

/// The three parts through which the agent reaches its host.
pub struct HostParts {
    pub probe: Box<dyn Probe>,
    pub logs: Box<dyn LogSource>,
    pub deployer: Box<dyn Deployer>,
}

impl std::fmt::Debug for HostParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostParts").finish_non_exhaustive()
    }
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("state directory {}: {error}", path.display())]
    State {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("an agent task ended abnormally: {0}")]
    Task(String),
}

/// Downloads of artifacts.
#[derive(Debug, Default)]
struct Downloads {
    progress: BTreeMap<String, ArtifactProgress>,
    ready: BTreeMap<String, PathBuf>,
    fetching: BTreeSet<String>,
    /// Failed attempts, the last reason, and when to try again (Unix seconds).
    failures: BTreeMap<String, (u32, String, i64)>,
}

impl Downloads {
    /// The progress a poll carries: downloads under way first, then the artifacts held.
    fn reported(&self) -> Vec<ArtifactProgress> {
        let (mut under_way, held): (Vec<ArtifactProgress>, Vec<ArtifactProgress>) = self
            .progress
            .values()
            .cloned()
            .partition(|progress| !progress.verified);
        under_way.extend(held);
        under_way.truncate(MAX_ARTIFACTS_PER_POLL);
        under_way
    }

    /// Notes `artifact` fetched at `path`, forgetting the first others past the bound.
    fn fetched(&mut self, artifact: String, path: PathBuf) {
        if let Some(progress) = self.progress.get_mut(&artifact) {
            progress.pieces_held = progress.pieces;
            progress.verified = true;
        }
        self.failures.remove(&artifact);
        self.ready.insert(artifact, path);
        while self.ready.len() > MAX_READY_ARTIFACTS {
            let Some((forgotten, _)) = self.ready.pop_first() else {
                break;
            };
            self.progress.remove(&forgotten);
        }
    }
}

/// What the agent's tasks share.
struct Shared {
    config: AgentConfig,
    clock: Arc<dyn Clock>,
    client: Client,
    ledger: Ledger,
    outbox: Mutex<Outbox>,
    downloads: Mutex<Downloads>,
    node: OnceCell<Arc<PeerNode>>,
    /// A batch was queued.
    wake_sender: Notify,
    /// A task ended or a download finished: poll now.
    wake_poll: Notify,
    /// What the server knows of the host changed (its version, its peer address).
    hello_changed: AtomicBool,
    /// Keys: `agent-<host hash>-<start>-<pid>-<sequence>`.
    key_prefix: String,
    sequence: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    fn next_key(&self, kind: BatchKind) -> String {
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        format!("{}-{}-{sequence}", self.key_prefix, kind.as_str())
    }

    fn enqueue(&self, kind: BatchKind, body: serde_json::Value) {
        let batch = Batch {
            kind,
            key: body["key"].as_str().unwrap_or_default().to_owned(),
            body: body.to_string().into_bytes(),
        };
        lock(&self.outbox).push(batch);
        self.wake_sender.notify_one();
    }

    /// Log events into batches of at most [`MAX_EVENTS_PER_BATCH`].
    fn enqueue_events(&self, events: &[LogEvent]) {
        for chunk in events.chunks(MAX_EVENTS_PER_BATCH) {
            let key = self.next_key(BatchKind::Logs);
            self.enqueue(BatchKind::Logs, logs_body(&self.config, chunk, &key));
        }
    }

    fn hello(&self) -> AgentHello {
        AgentHello {
            host: self.config.host.clone(),
            app: self.config.app.clone(),
            labels: self.config.labels.clone(),
            version: self.ledger.state().current_version(),
            peer_addr: self.node.get().map(|node| node.addr().to_string()),
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    /// The peer node, started at the first download (its address then goes to the server).
    async fn peer_node(&self) -> Result<Arc<PeerNode>, String> {
        let node = self
            .node
            .get_or_try_init(|| async {
                let dir = self.ledger.state().pieces_dir();
                let listen = self.config.peer_listen;
                let server = self.config.server.clone();
                let advertised = tokio::task::spawn_blocking(move || advertised_peer_ip(listen, &server))
                    .await
                    .map_err(|error| format!("cannot tell the peer address: {error}"))??;
                let node = PeerNode::start_advertising(listen, advertised, dir, Limits::default())
                    .await
                    .map_err(|error| format!("cannot serve peers on {listen}: {error}"))?;
                tracing::info!(host = %self.config.host, peer_addr = %node.addr(), "peer node started");
                self.hello_changed.store(true, Ordering::SeqCst);
                Ok::<_, String>(node)
            })
            .await?;
        Ok(Arc::clone(node))
    }
}

/// The address the other hosts reach this host's peer node at: `listen`'s own when it names
/// one, else (listening on every interface) the address this host's traffic to `server` leaves
/// from, found by connecting a UDP socket, which sends nothing.
pub fn advertised_peer_ip(
    listen: std::net::SocketAddr,
    server: &str,
) -> Result<std::net::IpAddr, String> {
    use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
    if !listen.ip().is_unspecified() {
        return Ok(listen.ip());
    }
    let (host, port) = server_host_port(server)
        .ok_or_else(|| format!("cannot read the server's host in {server:?}"))?;
    let server_addr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|error| format!("cannot resolve the server's host {host}: {error}"))?
        .find(|addr| addr.is_ipv4() == listen.is_ipv4())
        .ok_or_else(|| {
            format!(
                "the server's host {host} has no address of the peer listener's family ({listen})"
            )
        })?;
    let unbound = SocketAddr::new(listen.ip(), 0);
    let socket = UdpSocket::bind(unbound)
        .and_then(|socket| socket.connect(server_addr).map(|()| socket))
        .map_err(|error| format!("cannot find the route to the server {server_addr}: {error}"))?;
    let local = socket
        .local_addr()
        .map_err(|error| format!("cannot find the route to the server {server_addr}: {error}"))?;
    Ok(local.ip())
}

/// The host and port of an `http://` or `https://` URL (the scheme's port when it names none).
fn server_host_port(url: &str) -> Option<(String, u16)> {
    let (rest, default_port) = if let Some(rest) = url.strip_prefix("https://") {
        (rest, 443)
    } else {
        (url.strip_prefix("http://")?, 80)
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(port) => port.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((host.to_owned(), port));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().ok()?),
        None => (authority, default_port),
    };
    if host.is_empty() {
        return None;
    }
    Some((host.to_owned(), port))
}

/// Runs the agent until `shutdown` completes; a task running then is let finish.
pub async fn run(
    config: AgentConfig,
    parts: HostParts,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let state_error = |error| AgentError::State {
        path: config.state_dir.clone(),
        error,
    };
    let state = StateDir::open(&config.state_dir).map_err(state_error)?;
    let outbox =
        Outbox::open_spool(&state.outbox_dir(), config.queue_bytes).map_err(state_error)?;
    let ledger = Ledger::open(state, clock.now()).map_err(state_error)?;
    let client = Client::new(
        &config.server,
        &config.token,
        Duration::from_secs(config.request_timeout_seconds.max(1)),
    );
    let key_prefix = format!(
        "agent-{:016x}-{}-{}",
        fnv1a(&config.host),
        clock.now(),
        std::process::id()
    );
    let shared = Arc::new(Shared {
        config,
        clock,
        client,
        ledger,
        outbox: Mutex::new(outbox),
        downloads: Mutex::new(Downloads::default()),
        node: OnceCell::new(),
        wake_sender: Notify::new(),
        wake_poll: Notify::new(),
        hello_changed: AtomicBool::new(false),
        key_prefix,
        sequence: AtomicU64::new(0),
    });
    tracing::info!(
        host = %shared.config.host,
        app = %shared.config.app,
        server = %shared.config.server,
        "agent started"
    );
    let (stop, stopped) = watch::channel(false);
    let collector = tokio::spawn(collect_loop(
        Arc::clone(&shared),
        parts.probe,
        parts.logs,
        stopped.clone(),
    ));
    let sender = tokio::spawn(send_loop(Arc::clone(&shared), stopped.clone()));
    let control = tokio::spawn(control_loop(Arc::clone(&shared), parts.deployer, stopped));
    shutdown.await;
    let _ = stop.send(true);
    let mut problems = Vec::new();
    for (name, handle) in [
        ("collect", collector),
        ("send", sender),
        ("control", control),
    ] {
        if let Err(error) = handle.await {
            problems.push(format!("{name}: {error}"));
        }
    }
    if let Some(node) = shared.node.get() {
        node.shutdown();
    }
    tracing::info!(host = %shared.config.host, queued = lock(&shared.outbox).len(), "agent stopped");
    if problems.is_empty() {
        Ok(())
    } else {
        Err(AgentError::Task(problems.join("; ")))
    }
}

/// Samples and log events into the outbox.
async fn collect_loop(
    shared: Arc<Shared>,
    probe: Box<dyn Probe>,
    logs: Box<dyn LogSource>,
    mut stopped: watch::Receiver<bool>,
) {
    let probe = Arc::new(Mutex::new(probe));
    let logs = Arc::new(Mutex::new(logs));
    let mut metrics_tick = tokio::time::interval(Duration::from_secs(
        shared.config.metrics_interval_seconds.max(1),
    ));
    metrics_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut logs_tick = tokio::time::interval(Duration::from_secs(1));
    logs_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut joiners = StreamJoiners::default();
    let mut positions = PositionsSaver::default();
    loop {
        tokio::select! {
            _ = stopped.changed() => {
                // Events still open are whole now: queue them before their lines' positions
                // are saved past them.
                shared.enqueue_events(&joiners.finish());
                positions.save(&shared, lock(&logs).positions(), true);
                break;
            }
            _ = metrics_tick.tick() => {
                let now = shared.clock.now();
                let sampling = Arc::clone(&probe);
                let sampled = tokio::task::spawn_blocking(move || {
                    lock(&sampling).sample(now.saturating_mul(1000))
                })
                .await;
                match sampled {
                    Ok(samples) if !samples.is_empty() => {
                        let key = shared.next_key(BatchKind::Samples);
                        shared.enqueue(BatchKind::Samples, samples_body(&shared.config, &samples, now, &key));
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::error!(host = %shared.config.host, error = %error, "probe panicked");
                        break;
                    }
                }
            }
            _ = logs_tick.tick() => {
                let now = shared.clock.now();
                let reading = Arc::clone(&logs);
                let read = tokio::task::spawn_blocking(move || {
                    lock(&reading).read_streams(now.saturating_mul(1000))
                })
                .await;
                let streams = match read {
                    Ok(streams) => streams,
                    Err(error) => {
                        tracing::error!(host = %shared.config.host, error = %error, "log source panicked");
                        break;
                    }
                };
                shared.enqueue_events(&joiners.push_streams(&streams, now));
                // Saved after the events are queued (and spooled), so a restarted agent goes
                // on after them; the events still open are what a kill may lose.
                positions.save(&shared, lock(&logs).positions(), false);
            }
        }
    }
}

/// Saves the log files' positions when they moved, and at least every
/// [`POSITIONS_REFRESH_SECONDS`] (so that a quiet file's position stays fresh enough to be gone
/// on from, see [`crate::state::LOG_RESUME_SECONDS`]).
#[derive(Debug, Default)]
struct PositionsSaver {
    saved: Option<LogPositions>,
    /// Whether saving failed since it last worked: the first failure is logged.
    failing: bool,
}

/// Most seconds between two saves of unchanged log positions.
const POSITIONS_REFRESH_SECONDS: i64 = 60;

impl PositionsSaver {
    fn save(&mut self, shared: &Shared, files: Vec<FilePosition>, always: bool) {
        let now = shared.clock.now();
        let due = match &self.saved {
            None => !files.is_empty(),
            Some(saved) => {
                always || saved.files != files || now - saved.saved_at >= POSITIONS_REFRESH_SECONDS
            }
        };
        if !due {
            return;
        }
        let positions = LogPositions {
            saved_at: now,
            files,
        };
        match shared.ledger.state().save_log_positions(&positions) {
            Ok(()) => self.failing = false,
            Err(error) => {
                if !self.failing {
                    tracing::warn!(host = %shared.config.host, error = %error, "cannot save the log positions");
                }
                self.failing = true;
            }
        }
        self.saved = Some(positions);
    }
}

/// The JSON of `POST /api/v1/ingest/samples`, the host's labels on each sample.
pub fn samples_body(
    config: &AgentConfig,
    samples: &[MetricSample],
    time: i64,
    key: &str,
) -> serde_json::Value {
    let entries: Vec<serde_json::Value> = samples
        .iter()
        .map(|sample| {
            json!({
                "host": config.host,
                "app": config.app,
                "metric": sample.metric,
                "time": time,
                "value": sample.value,
                "labels": config.labels,
            })
        })
        .collect();
    json!({ "samples": entries, "key": key })
}

/// The JSON of `POST /api/v1/ingest/logs`: one entry per event, its lines joined by `\n`.
pub fn logs_body(config: &AgentConfig, events: &[LogEvent], key: &str) -> serde_json::Value {
    let entries: Vec<serde_json::Value> = events
        .iter()
        .map(|event| {
            json!({
                "host": config.host,
                "app": config.app,
                "time": event.at,
                "line": event.text,
            })
        })
        .collect();
    json!({ "lines": entries, "key": key })
}

/// The outbox to the server, oldest batch first.
async fn send_loop(shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let mut backoff = Backoff::new(fnv1a(&shared.config.host));
    loop {
        let next = lock(&shared.outbox).front().cloned();
        let Some(batch) = next else {
            let stop = tokio::select! {
                _ = stopped.changed() => true,
                _ = shared.wake_sender.notified() => false,
                _ = tokio::time::sleep(Duration::from_secs(1)) => false,
            };
            if stop {
                break;
            }
            continue;
        };
        let client = shared.client.clone();
        let path = batch.kind.path();
        let body = batch.body.clone();
        let sent = tokio::task::spawn_blocking(move || client.post_accepted(path, &body)).await;
        let outcome = match sent {
            Ok(outcome) => outcome,
            Err(error) => {
                tracing::error!(host = %shared.config.host, error = %error, "agent sender failed");
                break;
            }
        };
        match outcome {
            Ok(()) => {
                lock(&shared.outbox).remove_front(&batch.key);
                if backoff.failures() > 0 {
                    tracing::info!(
                        host = %shared.config.host,
                        failures = backoff.failures(),
                        queued = lock(&shared.outbox).len(),
                        "server reachable again, resending"
                    );
                }
                backoff.reset();
            }
            Err(error) if error.is_permanent() => {
                lock(&shared.outbox).remove_front(&batch.key);
                tracing::warn!(
                    host = %shared.config.host,
                    batch_kind = batch.kind.as_str(),
                    key = %batch.key,
                    error = %error,
                    "batch refused by the server, dropped"
                );
            }
            Err(error) => {
                if backoff.failures() == 0 {
                    tracing::warn!(
                        host = %shared.config.host,
                        error = %error,
                        "cannot send to the server, batches kept to send again"
                    );
                }
                let delay = backoff.next_delay();
                tokio::select! {
                    _ = stopped.changed() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// A path segment with everything but unreserved characters percent-encoded.
fn path_segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Runs `call` on a blocking thread.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, ClientError> + Send + 'static,
) -> Result<T, ClientError> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|error| ClientError::Transport(format!("the call's thread failed: {error}")))?
}

async fn register(shared: &Arc<Shared>) -> Result<(), ClientError> {
    let hello = shared.hello();
    let body =
        serde_json::to_vec(&hello).map_err(|error| ClientError::Answer(error.to_string()))?;
    let client = shared.client.clone();
    blocking(move || client.post_accepted("/api/v1/agents", &body)).await?;
    tracing::info!(
        host = %hello.host,
        app = %hello.app,
        version = hello.version.as_deref().unwrap_or(""),
        "agent registered"
    );
    Ok(())
}

/// One poll: the reports not yet acknowledged and the downloads; forgets what was
/// acknowledged.
async fn poll(shared: &Arc<Shared>) -> Result<AgentOrders, ClientError> {
    let mut sent = shared.ledger.reports();
    sent.truncate(MAX_REPORTS_PER_POLL);
    let artifacts = lock(&shared.downloads).reported();
    let request = AgentPoll {
        reports: sent.clone(),
        artifacts,
    };
    let body =
        serde_json::to_vec(&request).map_err(|error| ClientError::Answer(error.to_string()))?;
    let client = shared.client.clone();
    let path = format!("/api/v1/agents/{}/poll", path_segment(&shared.config.host));
    let orders: AgentOrders = blocking(move || client.post_json(&path, &body)).await?;
    let acknowledging = Arc::clone(shared);
    let acknowledged = orders.acknowledged.clone();
    let saved =
        tokio::task::spawn_blocking(move || acknowledging.ledger.acknowledge(&sent, &acknowledged))
            .await;
    match saved {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::error!(host = %shared.config.host, error = %error, "cannot write the task ledger")
        }
        Err(error) => {
            tracing::error!(host = %shared.config.host, error = %error, "cannot write the task ledger")
        }
    }
    Ok(orders)
}

/// Registration, polls, downloads and tasks.
async fn control_loop(
    shared: Arc<Shared>,
    deployer: Box<dyn Deployer>,
    mut stopped: watch::Receiver<bool>,
) {
    let deployer = Arc::new(Mutex::new(deployer));
    let mut registered = false;
    let mut backoff = Backoff::new(fnv1a(&shared.config.host).rotate_left(17));
    let mut unknown = Backoff::new(fnv1a(&shared.config.host).rotate_left(29));
    let mut job: Option<JoinHandle<()>> = None;
    loop {
        if shared.hello_changed.swap(false, Ordering::SeqCst) {
            registered = false;
        }
        let pause = if registered {
            match poll(&shared).await {
                Ok(orders) if !orders.registered => {
                    // Registering again at once; a server that keeps forgetting the host is
                    // asked less and less often.
                    tracing::info!(host = %shared.config.host, "server does not know the host, registering again");
                    registered = false;
                    backoff.reset();
                    unknown.next_delay()
                }
                Ok(orders) => {
                    backoff.reset();
                    unknown.reset();
                    let poll_every =
                        Duration::from_secs(u64::from(orders.poll_seconds.clamp(1, 60)));
                    for artifact in &orders.fetch {
                        start_fetch(&shared, artifact);
                    }
                    if job.as_ref().is_none_or(JoinHandle::is_finished) {
                        job = next_job(&shared, &deployer, &orders.tasks);
                    }
                    if job.is_some() {
                        poll_every.min(Duration::from_secs(1))
                    } else {
                        poll_every
                    }
                }
                Err(error) => {
                    if backoff.failures() == 0 {
                        tracing::warn!(host = %shared.config.host, error = %error, "poll failed, retrying");
                    }
                    backoff.next_delay()
                }
            }
        } else {
            match register(&shared).await {
                Ok(()) => {
                    registered = true;
                    backoff.reset();
                    continue;
                }
                Err(error) => {
                    if backoff.failures() == 0 {
                        tracing::warn!(host = %shared.config.host, error = %error, "registration failed, retrying");
                    }
                    backoff.next_delay()
                }
            }
        };
        tokio::select! {
            _ = stopped.changed() => break,
            _ = shared.wake_poll.notified() => {}
            _ = tokio::time::sleep(pause) => {}
        }
    }
    if let Some(running) = job {
        if !running.is_finished() {
            tracing::info!(host = %shared.config.host, "waiting for the running task to end");
        }
        let _ = running.await;
    }
}

/// The first task not yet run, started on a blocking thread when what it needs is there
/// (a deploy's artifact fetched and verified); None when there is nothing to start now.
fn next_job(
    shared: &Arc<Shared>,
    deployer: &Arc<Mutex<Box<dyn Deployer>>>,
    tasks: &[HostTask],
) -> Option<JoinHandle<()>> {
    let task = tasks
        .iter()
        .filter(|task| task.host == shared.config.host)
        .find(|task| !shared.ledger.has_run(task.id))?
        .clone();
    let mut artifact = None;
    let mut refusal = None;
    if let (TaskKind::Deploy, Some(id)) = (task.kind, &task.artifact) {
        match artifact_need(shared, id) {
            Need::Ready(path) => artifact = Some(path),
            Need::Refuse(reason) => refusal = Some(reason),
            Need::Fetch => {
                start_fetch(shared, id);
                return None;
            }
        }
    }
    let shared = Arc::clone(shared);
    let deployer = Arc::clone(deployer);
    Some(tokio::spawn(async move {
        let running = Arc::clone(&shared);
        let ran = tokio::task::spawn_blocking(move || {
            let mut held = lock(&deployer);
            match refusal {
                Some(reason) => {
                    let mut refusing = Refusing(reason);
                    run_task(
                        &running.ledger,
                        &mut refusing,
                        &task,
                        None,
                        running.clock.as_ref(),
                    )
                }
                None => run_task(
                    &running.ledger,
                    held.as_mut(),
                    &task,
                    artifact.as_deref(),
                    running.clock.as_ref(),
                ),
            }
        })
        .await;
        match ran {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                tracing::error!(host = %shared.config.host, error = %error, "task not run")
            }
            Err(error) => {
                tracing::error!(host = %shared.config.host, error = %error, "task runner panicked")
            }
        }
        shared.hello_changed.store(true, Ordering::SeqCst);
        shared.wake_poll.notify_one();
    }))
}

/// What a deploy task's artifact needs before the task runs.
enum Need {
    Ready(PathBuf),
    /// Fetching failed too often: the task fails with this reason.
    Refuse(String),
    Fetch,
}

fn artifact_need(shared: &Shared, artifact: &str) -> Need {
    let downloads = lock(&shared.downloads);
    if let Some(path) = downloads.ready.get(artifact) {
        return Need::Ready(path.clone());
    }
    match downloads.failures.get(artifact) {
        Some((attempts, reason, _)) if *attempts >= FETCH_ATTEMPTS => Need::Refuse(format!(
            "artifact {artifact} could not be fetched ({attempts} attempts): {reason}"
        )),
        _ => Need::Fetch,
    }
}

/// A deployer that fails every step with one reason: a deploy whose artifact cannot be had.
struct Refusing(String);

impl Deployer for Refusing {
    fn deploy(
        &mut self,
        _task: &HostTask,
        _artifact: Option<&std::path::Path>,
    ) -> Result<String, String> {
        Err(self.0.clone())
    }
    fn rollback(&mut self, _task: &HostTask) -> Result<String, String> {
        Err(self.0.clone())
    }
}

/// Starts fetching `artifact` unless it is held, being fetched, or waiting to be tried again.
fn start_fetch(shared: &Arc<Shared>, artifact: &str) {
    let now = shared.clock.now();
    {
        let mut downloads = lock(&shared.downloads);
        let waiting = downloads
            .failures
            .get(artifact)
            .is_some_and(|(_, _, retry_at)| now < *retry_at);
        if downloads.ready.contains_key(artifact)
            || downloads.fetching.contains(artifact)
            || waiting
        {
            return;
        }
        downloads.fetching.insert(artifact.to_owned());
    }
    let fetching = Arc::clone(shared);
    let id = artifact.to_owned();
    tokio::spawn(async move {
        let fetched = fetch_artifact(&fetching, &id).await;
        let now = fetching.clock.now();
        {
            let mut downloads = lock(&fetching.downloads);
            downloads.fetching.remove(&id);
            match fetched {
                Ok(path) => {
                    tracing::info!(host = %fetching.config.host, artifact = %id, "artifact fetched");
                    downloads.fetched(id, path);
                }
                Err(reason) => {
                    let attempts = downloads.failures.get(&id).map_or(0, |failure| failure.0) + 1;
                    let wait = 5i64.saturating_mul(1 << attempts.min(6)).min(300);
                    tracing::warn!(
                        host = %fetching.config.host,
                        artifact = %id,
                        attempts,
                        reason = %reason,
                        "artifact fetch failed"
                    );
                    downloads
                        .failures
                        .insert(id, (attempts, reason, now + wait));
                }
            }
        }
        fetching.wake_poll.notify_one();
    });
}

/// The manifest (its signature checked), then the pieces from peers and the origin.
async fn fetch_artifact(shared: &Arc<Shared>, artifact: &str) -> Result<PathBuf, String> {
    if !is_artifact_id(artifact) {
        return Err(format!("{artifact:?} is not an artifact id"));
    }
    let client = shared.client.clone();
    let state = shared.ledger.state().clone();
    let pinned = shared.config.server_key.clone();
    let id = artifact.to_owned();
    let manifest = tokio::task::spawn_blocking(move || {
        let key = trusted_key(&client, &state, pinned.as_deref())?;
        verified_manifest(&client, &id, &key)
    })
    .await
    .map_err(|error| format!("the manifest's thread failed: {error}"))??;
    lock(&shared.downloads).progress.insert(
        artifact.to_owned(),
        ArtifactProgress {
            artifact: artifact.to_owned(),
            pieces_held: 0,
            pieces: manifest.piece_count(),
            verified: false,
        },
    );
    let node = shared.peer_node().await?;
    let reporting = Arc::downgrade(shared);
    let progress: Arc<dyn Fn(ArtifactProgress) + Send + Sync> = Arc::new(move |progress| {
        if let Some(shared) = reporting.upgrade() {
            lock(&shared.downloads)
                .progress
                .insert(progress.artifact.clone(), progress);
        }
    });
    let upload_name = manifest.name.clone();
    let request = Fetch {
        manifest,
        host: shared.config.host.clone(),
        coordinator: Arc::new(HttpCoordinator::new(shared.client.clone())),
        progress: Some(progress),
    };
    let whole = vigil_p2p::fetch::fetch(&node, request)
        .await
        .map_err(|error| error.to_string())?;
    let named_dir = shared
        .ledger
        .state()
        .root()
        .join("artifacts")
        .join(artifact);
    tokio::task::spawn_blocking(move || named_copy(&whole, &named_dir, &upload_name))
        .await
        .map_err(|error| format!("the artifact's thread failed: {error}"))?
        .map_err(|error| format!("cannot name the fetched artifact: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_url_gives_its_host_and_port() {
        for (url, expected) in [
            ("http://10.0.0.5:7070", Some(("10.0.0.5", 7070))),
            ("http://vigil.internal/", Some(("vigil.internal", 80))),
            (
                "https://vigil.internal/base?x=1",
                Some(("vigil.internal", 443)),
            ),
            ("http://user:secret@vigil:81/", Some(("vigil", 81))),
            ("http://[fd00::5]:7070/", Some(("fd00::5", 7070))),
            ("http://[fd00::5]", Some(("fd00::5", 80))),
            ("ftp://vigil", None),
            ("http://:80", None),
            ("http://vigil:port", None),
            ("http://[fd00::5]x", None),
        ] {
            let found = server_host_port(url);
            let expected = expected.map(|(host, port)| (host.to_owned(), port));
            assert_eq!(found, expected, "{url}");
        }
    }

    #[test]
    fn a_peer_listening_on_every_interface_is_advertised_at_the_address_toward_the_server() {
        let every: std::net::SocketAddr = "0.0.0.0:7071".parse().unwrap();
        assert_eq!(
            advertised_peer_ip(every, "http://127.0.0.1:7070").unwrap(),
            std::net::IpAddr::from([127, 0, 0, 1])
        );
        // A named listen address is advertised as it is, the server not consulted.
        let named: std::net::SocketAddr = "10.1.2.3:7071".parse().unwrap();
        assert_eq!(advertised_peer_ip(named, "not a url").unwrap(), named.ip());
        let error = advertised_peer_ip(every, "not a url").unwrap_err();
        assert!(error.contains("server's host"), "{error}");
    }

    fn config() -> AgentConfig {
        let mut config = AgentConfig::new(
            "http://127.0.0.1:1",
            "t",
            "web-1",
            "shop",
            PathBuf::from("x"),
        );
        config.labels.insert("zone".into(), "b".into());
        config
    }

    #[test]
    fn bodies_follow_the_ingest_routes_json() {
        let samples = [MetricSample {
            metric: "load1".into(),
            value: 0.5,
        }];
        let body = samples_body(&config(), &samples, 1_700_000_000, "k1");
        let parsed = vigil_ingest::json::parse_samples(
            body.to_string().as_bytes(),
            &vigil_ingest::json::JsonOptions::default(),
        )
        .unwrap();
        assert_eq!(parsed.key.as_deref(), Some("k1"));
        assert_eq!(parsed.chunk.points.len(), 1);
        assert_eq!(parsed.chunk.host_labels.len(), 1);

        let events = [LogEvent {
            at: 1_700_000_000,
            text: "ERROR x\n\tat a.B.c(B.java:1)".into(),
            dropped_lines: 0,
        }];
        let body = logs_body(&config(), &events, "k2");
        let parsed = vigil_ingest::json::parse_log_lines(
            body.to_string().as_bytes(),
            &vigil_ingest::json::JsonOptions::default(),
        )
        .unwrap();
        assert_eq!(parsed.lines.len(), 1);
        assert_eq!(parsed.lines[0].line, "ERROR x\n\tat a.B.c(B.java:1)");
        assert_eq!(parsed.lines[0].host, "web-1");
    }

    #[test]
    fn host_names_are_escaped_in_paths() {
        assert_eq!(path_segment("web-1.b"), "web-1.b");
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
    }
}
