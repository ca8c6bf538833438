//! `vigil serve`: the store, the data index, the guard, the notifier, the puller, pruning and
//! the API (`vigil_web::router`), wired together and run until a shutdown signal.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Deserialize;
use vigil_core::release::{NotificationEvent, ReleaseState};
use vigil_core::telemetry::{self, event::GuardPassEnded, event::ReplicaStarted};
use vigil_core::{Clock, Stopwatch};
use vigil_guard::follow::{FollowLimits, Follower};
use vigil_guard::intake::Intake;
use vigil_guard::pull::{PullQuery, PullSource, Puller};
use vigil_guard::retention::{prune, Retention};
use vigil_guard::{DataIndex, Guard, GuardConfig, ReplicaIdentity, Route};
use vigil_ingest::prometheus::{PrometheusClient, PrometheusOptions, RangeQuery};
use vigil_ingest::remote_write::RemoteWriteOptions;
use vigil_notify::{Notifier, NotifyConfig};
use vigil_store::{ReleaseFilter, Store, TimedStore};

use vigil_executor::ExecutorSettings;
use vigil_web::{AppState, IngestOptions, Limits};

/// Everything `vigil serve` can be told, from flags and an optional JSON config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: String,
    pub database: String,
    /// Base of the links to releases in notifications.
    pub public_url: String,
    pub notifications: NotifyConfig,
    /// Recent data kept for every host (in memory and in the store) whether or not a release
    /// uses it, in seconds: enough for the baseline of a release created now.
    pub recent_seconds: i64,
    /// How long data of finished releases is kept, in seconds.
    pub retention_seconds: i64,
    /// A step is judged at the latest this long after its time.
    pub grace_seconds: i64,
    pub max_body_bytes: usize,
    /// Largest remote-write body once decompressed, in bytes.
    pub max_decoded_bytes: usize,
    /// Bytes being decoded at once across every ingestion request (see [`Limits`]).
    pub decode_budget_bytes: usize,
    /// Largest imported bundle once decompressed, in bytes.
    pub max_import_bytes: usize,
    /// Imports decompressed, parsed and replayed at once.
    pub imports_at_once: usize,
    /// How this server shares its store with other `vigil serve` replicas.
    pub replica: ReplicaSettings,
    /// An agent of a release Vigil ships, silent for longer, pauses it, in seconds.
    pub agent_timeout_seconds: i64,
    /// Where uploaded artifacts and the key that signs their manifests
    /// (`manifest-key.pk8`, mode 0600) are kept; empty: `vigil-artifacts` beside a SQLite
    /// database file, in the working directory for PostgreSQL, a new temporary directory for
    /// a database in memory.
    pub artifact_dir: String,
    /// Largest artifact an upload may carry, in bytes.
    pub max_artifact_bytes: u64,
    /// Artifact pieces the origin reads for agents at once (more wait: 503 with Retry-After).
    pub origin_readers: usize,
}

/// How a server shares one PostgreSQL store with other replicas: each observing release is
/// guarded by the one replica that holds its lease; every replica answers the API and the
/// pages and takes ingested data.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicaSettings {
    /// This replica's name, unique among the replicas of one store; empty: a random one is
    /// made up at start (see [`ReplicaSettings::resolved_id`]).
    pub id: String,
    /// A replica that has not renewed its leases for this long loses them, in seconds.
    pub lease_seconds: i64,
}

impl Default for ReplicaSettings {
    fn default() -> Self {
        ReplicaSettings {
            id: String::new(),
            lease_seconds: 15,
        }
    }
}

impl ReplicaSettings {
    /// The configured id, or a new random one (`vigil-` and 12 hex digits) when none is set.
    pub fn resolved_id(&self) -> String {
        if !self.id.is_empty() {
            return self.id.clone();
        }
        let mut random = [0u8; 6];
        // Without the system's random numbers, the process id still sets replicas of one
        // machine apart.
        if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random).is_err() {
            random[..4].copy_from_slice(&std::process::id().to_be_bytes());
        }
        format!("vigil-{}", vigil_core::text::hex(&random))
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:7070".to_string(),
            database: "./vigil.db".to_string(),
            public_url: String::new(),
            notifications: NotifyConfig::default(),
            recent_seconds: 2 * 3600,
            retention_seconds: 30 * 86_400,
            grace_seconds: 10,
            max_body_bytes: 16 * 1024 * 1024,
            max_decoded_bytes: RemoteWriteOptions::default().max_decompressed_bytes,
            decode_budget_bytes: Limits::default().decode_budget_bytes,
            max_import_bytes: Limits::default().max_import_bytes,
            imports_at_once: Limits::default().imports_at_once,
            replica: ReplicaSettings::default(),
            agent_timeout_seconds: vigil_executor::DEFAULT_AGENT_TIMEOUT_SECONDS,
            artifact_dir: String::new(),
            max_artifact_bytes: vigil_web::artifacts::DEFAULT_MAX_ARTIFACT_BYTES,
            origin_readers: vigil_web::artifacts::DEFAULT_ORIGIN_READERS,
        }
    }
}

/// Where the server keeps its artifacts (see [`ServerConfig::artifact_dir`]).
pub fn artifact_dir(config: &ServerConfig, replica_name: &str) -> std::path::PathBuf {
    use std::path::{Path, PathBuf};
    if !config.artifact_dir.is_empty() {
        return PathBuf::from(&config.artifact_dir);
    }
    let database = config.database.as_str();
    if database.starts_with("postgres://") || database.starts_with("postgresql://") {
        return PathBuf::from("./vigil-artifacts");
    }
    if database == vigil_store::SQLITE_MEMORY {
        return std::env::temp_dir().join(format!(
            "vigil-artifacts-{replica_name}-{}",
            std::process::id()
        ));
    }
    let file = database.strip_prefix("sqlite:").unwrap_or(database);
    let file = file.strip_prefix("//").unwrap_or(file);
    let file = file.split('?').next().unwrap_or(file);
    match Path::new(file).parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.join("vigil-artifacts"),
        _ => PathBuf::from("./vigil-artifacts"),
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] vigil_store::StoreError),
    #[error("invalid notification settings: {0}")]
    Notify(#[from] vigil_notify::NotifyError),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid replica settings: {0}")]
    Replica(String),
    #[error("cannot open the artifact directory: {0}")]
    Artifacts(String),
}

/// A started server: its address and the state its parts share.
#[derive(Debug)]
pub struct Started {
    pub address: SocketAddr,
    pub state: AppState,
    pub notifier: Arc<Notifier>,
    pub puller: Arc<Puller>,
    /// This replica's id ([`ReplicaSettings::resolved_id`], resolved once at start).
    pub replica_id: String,
    /// Reads the data other replicas store into this replica's index.
    follower: Arc<Mutex<Follower>>,
    retention: Retention,
    listener: tokio::net::TcpListener,
    wake: Arc<tokio::sync::Notify>,
    executor: ExecutorSettings,
}

/// Opens the store, fills the data index from it and binds the listener.
pub async fn start(
    config: &ServerConfig,
    opened_store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
) -> Result<Started, ServeError> {
    // Leases are renewed every second: a shorter lease would lapse between renewals.
    if config.replica.lease_seconds < 2 {
        return Err(ServeError::Replica(format!(
            "replica.lease_seconds must be at least 2, not {}",
            config.replica.lease_seconds
        )));
    }
    // One name for this replica in its chunks, leases, outbox claims and metrics.
    let replica_name = replica_id(config);
    // Every store call is timed for `vigil_store_seconds`.
    let store: Arc<dyn Store> = Arc::new(TimedStore::new(opened_store));
    let notifier =
        Arc::new(Notifier::new(config.notifications.clone())?.for_replica(&replica_name));
    let routes: Vec<Route> = notifier
        .channels()
        .iter()
        .map(|channel| Route {
            channel: channel.name.clone(),
            events: [
                NotificationEvent::Paused,
                NotificationEvent::Recommendation,
                NotificationEvent::Resumed,
                NotificationEvent::RolledBack,
            ]
            .into_iter()
            .filter(|event| channel.wants(*event))
            .collect(),
        })
        .collect();
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|source| ServeError::Listen {
            address: config.listen.clone(),
            source,
        })?;
    let address = listener.local_addr()?;
    let public_url = if config.public_url.is_empty() {
        format!("http://{address}")
    } else {
        config.public_url.clone()
    };
    let index = Arc::new(RwLock::new(DataIndex::new()));
    let wake = Arc::new(tokio::sync::Notify::new());
    let wake_guard = Arc::clone(&wake);
    let mut ingest_options = IngestOptions::default();
    ingest_options.remote_write.max_decompressed_bytes = config.max_decoded_bytes;
    let intake = Arc::new(
        Intake::new(
            Arc::clone(&store),
            Arc::clone(&index),
            Arc::new(move || wake_guard.notify_one()),
            ingest_options.remote_write.clone(),
        )
        .with_origin(&replica_name),
    );
    let puller = Arc::new(Puller::new(
        Arc::clone(&store),
        Arc::clone(&intake),
        Arc::clone(&clock),
        Arc::new(fetch_from_prometheus),
        config.recent_seconds,
    ));
    let replica = ReplicaIdentity {
        id: replica_name.clone(),
        address: public_url.clone(),
        lease_seconds: config.replica.lease_seconds,
    };
    tracing::info!(replica = %replica.id, replica_address = %replica.address, lease_seconds = replica.lease_seconds, "replica starting");
    // The guard judges a query rule failing when its pull fails, and only the releases whose
    // lease this replica holds.
    let guard = Arc::new(
        Guard::new(
            Arc::clone(&store),
            Arc::clone(&index),
            Arc::clone(&clock),
            GuardConfig {
                public_url,
                routes,
                grace_seconds: config.grace_seconds,
            },
        )
        .with_pull_failures(puller.failures())
        .with_replica(replica),
    );

    let now = clock.now();
    // Listed among the replicas from the start, before its guard's first lease round.
    let heartbeat_store = Arc::clone(&store);
    let heartbeat_guard = Arc::clone(&guard);
    tokio::task::spawn_blocking(move || {
        let replica = heartbeat_guard.replica();
        heartbeat_store.replica_seen(&replica.id, &replica.address, now, now)
    })
    .await
    .map_err(|error| std::io::Error::other(error.to_string()))??;
    let recent_seconds = config.recent_seconds;
    let window_store = Arc::clone(&store);
    let load_from = tokio::task::spawn_blocking(move || {
        earliest_needed(window_store.as_ref(), now, recent_seconds)
    })
    .await
    .map_err(|error| std::io::Error::other(error.to_string()))??;
    let loading_intake = Arc::clone(&intake);
    let loading_clock = Arc::clone(&clock);
    let (follower, loaded) = tokio::task::spawn_blocking(move || {
        Follower::load(
            loading_intake,
            loading_clock,
            FollowLimits::default(),
            load_from * 1000,
            i64::MAX,
        )
    })
    .await
    .map_err(|error| std::io::Error::other(error.to_string()))??;
    tracing::info!(
        chunks = loaded,
        from = load_from,
        replica = %replica_name,
        "data index filled from the store"
    );

    // The executor's pauses notify on the guard's routes.
    let executor_guard_config = guard.config().clone();
    let mut state = AppState::new(
        store,
        guard,
        intake,
        clock,
        Limits {
            max_body_bytes: config.max_body_bytes,
            max_import_bytes: config.max_import_bytes,
            imports_at_once: config.imports_at_once,
            decode_budget_bytes: config.decode_budget_bytes,
            ..Limits::default()
        },
        ingest_options,
    );
    state.pull_failures = puller.failures();
    state.agent_timeout_seconds = config.agent_timeout_seconds;
    let artifacts_dir = artifact_dir(config, &replica_name);
    let max_artifact_bytes = config.max_artifact_bytes;
    let origin_readers = config.origin_readers;
    let artifacts = tokio::task::spawn_blocking(move || {
        vigil_web::artifacts::Artifacts::open(
            artifacts_dir,
            max_artifact_bytes,
            origin_readers,
            vigil_p2p::tracker::TrackerSettings::default(),
        )
    })
    .await
    .map_err(|error| std::io::Error::other(error.to_string()))?
    .map_err(|error| ServeError::Artifacts(error.to_string()))?;
    tracing::info!(
        path = %artifacts.dir().display(),
        public_key = %artifacts.public_key_hex(),
        "artifact directory opened"
    );
    state.artifacts = Some(Arc::new(artifacts));
    ReplicaStarted {
        replica: &replica_name,
        lease_seconds: config.replica.lease_seconds,
    }
    .emit();
    Ok(Started {
        address,
        state,
        notifier,
        puller,
        replica_id: replica_name.clone(),
        follower: Arc::new(Mutex::new(follower)),
        retention: Retention {
            recent_seconds: config.recent_seconds,
            finished_seconds: config.retention_seconds,
        },
        listener,
        wake,
        executor: ExecutorSettings {
            agent_timeout_seconds: config.agent_timeout_seconds,
            replica: replica_name,
            guard: executor_guard_config,
        },
    })
}

/// This server's replica id: the configured one; else, on PostgreSQL, a random one; else (a
/// SQLite store, which one server holds) always the same, so that a server restarted after
/// being killed renews the leases it held at once instead of waiting for them to expire.
fn replica_id(config: &ServerConfig) -> String {
    let shared =
        config.database.starts_with("postgres://") || config.database.starts_with("postgresql://");
    if config.replica.id.is_empty() && !shared {
        return "local".to_string();
    }
    config.replica.resolved_id()
}

/// Start of the data the server must hold: the recent window, or the window of the oldest
/// release still being judged.
fn earliest_needed(store: &dyn Store, now: i64, recent_seconds: i64) -> Result<i64, ServeError> {
    let mut earliest = now - recent_seconds;
    let active = store.releases(&ReleaseFilter {
        states: vec![
            ReleaseState::Pending,
            ReleaseState::Deploying,
            ReleaseState::Observing,
            ReleaseState::Paused,
        ],
        ..ReleaseFilter::default()
    })?;
    for release in active {
        let Ok((window, _)) = vigil_guard::ReleaseWindow::read(&release) else {
            continue;
        };
        earliest = earliest.min(window.start);
    }
    Ok(earliest)
}

impl Started {
    /// Runs the API, the guard loop and the notifier until `shutdown` completes.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let state = self.state.clone();
        let guard_task = tokio::spawn(guard_loop(Arc::clone(&state.guard), self.wake));
        let notify_task = tokio::spawn(notify_loop(
            Arc::clone(&self.notifier),
            Arc::clone(&state.store),
            Arc::clone(&state.clock),
        ));
        let pull_task = tokio::spawn(pull_loop(Arc::clone(&self.puller)));
        let follow_task = tokio::spawn(follow_loop(Arc::clone(&self.follower)));
        let prune_task = tokio::spawn(prune_loop(
            Arc::clone(&state.store),
            Arc::clone(state.guard.index()),
            Arc::clone(&state.clock),
            self.retention,
        ));
        let executor_task = tokio::spawn(executor_loop(
            Arc::clone(&state.store),
            Arc::clone(&state.clock),
            self.executor,
        ));
        let guard = Arc::clone(&state.guard);
        let app = vigil_web::router(state);
        let served = axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
        guard_task.abort();
        notify_task.abort();
        pull_task.abort();
        follow_task.abort();
        prune_task.abort();
        executor_task.abort();
        // Stopping on purpose: the other replicas take this one's releases over at once
        // rather than when its leases expire.
        let stopping_guard = Arc::clone(&guard);
        match tokio::task::spawn_blocking(move || stopping_guard.give_back_leases()).await {
            Ok(Ok(given_back)) => {
                tracing::info!(replica = %guard.replica().id, leases = given_back, "replica gave its leases back");
            }
            Ok(Err(error)) => tracing::warn!(%error, "replica could not give its leases back"),
            Err(error) => tracing::error!(%error, "giving leases back panicked"),
        }
        served?;
        Ok(())
    }
}

/// Judges releases when data arrives (after a short pause to gather the rest of a burst) and
/// at least every second.
async fn guard_loop(guard: Arc<Guard>, wake: Arc<tokio::sync::Notify>) {
    loop {
        let woken = tokio::time::timeout(Duration::from_secs(1), wake.notified()).await;
        if woken.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let pass_guard = Arc::clone(&guard);
        let timed_pass = move || {
            let stopwatch = Stopwatch::start();
            let passed = pass_guard.pass();
            if let Ok(judged) = &passed {
                GuardPassEnded {
                    seconds: stopwatch.seconds(),
                    judged: judged.len(),
                }
                .emit();
                telemetry::guarded_share(pass_guard.releases_guarded(), pass_guard.leases_held());
            }
            passed
        };
        match tokio::task::spawn_blocking(timed_pass).await {
            Ok(Ok(judged)) => {
                for outcome in judged.iter().filter(|outcome| outcome.moved_to.is_some()) {
                    tracing::info!(release = %outcome.release_id, verdict = %outcome.verdict, at = outcome.at, "guard moved release");
                }
            }
            Ok(Err(error)) => tracing::warn!(%error, "guard pass failed"),
            Err(error) => tracing::error!(%error, "guard pass panicked"),
        }
    }
}

/// One range query to an app's Prometheus server.
fn fetch_from_prometheus(
    app: &str,
    source: &PullSource,
    query: &PullQuery,
    start: i64,
    end: i64,
) -> Result<vigil_core::samples::MetricChunk, String> {
    let client = PrometheusClient::new(&source.url, PrometheusOptions::default())
        .map_err(|error| error.to_string())?;
    // A counter pulled as it is becomes a rate when assembled, as one pushed does.
    let counter = client.reads_counter(&query.query).unwrap_or_else(|error| {
        tracing::warn!(app = %app, metric = %query.metric, %error, "metric metadata unreadable: values taken as gauges");
        false
    });
    let result = client
        .query_range(&RangeQuery {
            query: query.query.clone(),
            host_label: source.host_label.clone(),
            metric: query.metric.clone(),
            app: app.to_string(),
            counter,
            start,
            end,
            step_seconds: u32::try_from(source.step_seconds).unwrap_or(30),
        })
        .map_err(|error| error.to_string())?;
    if !result.without_host.is_empty() {
        tracing::warn!(app = %app, metric = %query.metric, series = result.without_host.len(), "pulled series without the host label were left out");
    }
    Ok(result.chunk)
}

/// Ships the releases Vigil's executor runs: a round every second on a blocking thread
/// (`vigil_executor::tick`), everything read from and written to the store.
async fn executor_loop(store: Arc<dyn Store>, clock: Arc<dyn Clock>, settings: ExecutorSettings) {
    loop {
        let executing = Arc::clone(&store);
        let now = clock.now();
        let round = settings.clone();
        match tokio::task::spawn_blocking(move || {
            vigil_executor::tick(executing.as_ref(), &round, now)
        })
        .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::error!(%error, "executor round failed"),
            Err(error) => tracing::error!(%error, "executor round panicked"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Pulls the apps' Prometheus queries when their step is due.
async fn pull_loop(puller: Arc<Puller>) {
    loop {
        let pulling = Arc::clone(&puller);
        match tokio::task::spawn_blocking(move || pulling.pull_due()).await {
            Ok(report) if !report.failures.is_empty() => {
                tracing::warn!(failures = report.failures.len(), first = %report.failures[0], "some pulls failed");
            }
            Ok(_) => {}
            Err(error) => tracing::error!(%error, "pull round panicked"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Adds the data other replicas store to the index: every 500 ms, or at once while there is
/// more than one poll reads.
async fn follow_loop(follower: Arc<Mutex<Follower>>) {
    loop {
        let polling = Arc::clone(&follower);
        let polled = tokio::task::spawn_blocking(move || {
            let mut held = polling
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let added = held.poll();
            (added, held.caught_up())
        })
        .await;
        let caught_up = match polled {
            Ok((Ok(_), caught_up)) => caught_up,
            Ok((Err(error), _)) => {
                tracing::error!(%error, "following other replicas' data failed");
                true
            }
            Err(error) => {
                tracing::error!(%error, "following other replicas' data panicked");
                true
            }
        };
        if caught_up {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Prunes data no release needs any more, every ten minutes.
async fn prune_loop(
    store: Arc<dyn Store>,
    index: Arc<RwLock<DataIndex>>,
    clock: Arc<dyn Clock>,
    retention: Retention,
) {
    loop {
        tokio::time::sleep(Duration::from_secs(600)).await;
        let now = clock.now();
        let pruning_store = Arc::clone(&store);
        let pruning_index = Arc::clone(&index);
        match tokio::task::spawn_blocking(move || {
            prune(pruning_store.as_ref(), &pruning_index, now, retention)
        })
        .await
        {
            Ok(Ok(pruned)) => {
                tracing::info!(
                    chunks = pruned.chunks,
                    kept_windows = pruned.kept_windows,
                    alerts = pruned.alerts,
                    "pruned data outside release windows"
                );
            }
            Ok(Err(error)) => tracing::warn!(%error, "pruning failed"),
            Err(error) => tracing::error!(%error, "pruning panicked"),
        }
    }
}

/// Sends due notifications every few seconds.
async fn notify_loop(notifier: Arc<Notifier>, store: Arc<dyn Store>, clock: Arc<dyn Clock>) {
    loop {
        let now = clock.now();
        let sending = Arc::clone(&notifier);
        let outbox = Arc::clone(&store);
        let report =
            tokio::task::spawn_blocking(move || sending.deliver_due(outbox.as_ref(), now)).await;
        if let Err(error) = report {
            tracing::error!(%error, "notification delivery panicked");
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}
