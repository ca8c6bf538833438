//! `vigil demo`: the server on an embedded store, a simulated fleet of agents in the same
//! process (each the real agent loop over HTTP on loopback, with simulated metrics, logs and
//! deploys), and a story told through the API: a healthy release that completes, then a faulty
//! one that Vigil pauses. It prints the pages' address and a token to sign in with, and keeps
//! serving until Ctrl-C.

pub mod fleet;
mod noise;
mod scenario;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use vigil_core::release::Role;
use vigil_core::Clock;
use vigil_server::{start, ServerConfig};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address the pages and the API listen on.
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: String,
    /// Simulated hosts (3 to 64).
    #[arg(long, default_value_t = 8)]
    hosts: usize,
    /// How much faster than the default timing the story runs (0.25 to 4): baseline and
    /// observation times are divided by it.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Where the store and the agents' state live [default: a new temporary folder].
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Default seconds of baseline before the first release, and of each batch's observation.
const BASELINE_SECONDS: f64 = 60.0;
const OBSERVE_SECONDS: f64 = 20.0;

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    if !(3..=64).contains(&args.hosts) {
        bail!("--hosts must be between 3 and 64, not {}", args.hosts);
    }
    if !(0.25..=4.0).contains(&args.speed) {
        bail!("--speed must be between 0.25 and 4, not {}", args.speed);
    }
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("vigil-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the demo folder {}", dir.display()))?;
    let database_file = dir.join("vigil.db");
    if database_file.exists() {
        // The story's release ids and the agents' installed versions are those of the run
        // before: its releases would be refused as existing ones.
        bail!(
            "the demo folder {} already holds a demo's store: pass a new --dir, or remove that folder",
            dir.display()
        );
    }
    crate::logging::init_with_default(tracing::Level::WARN);
    let database = database_file.display().to_string();
    let store =
        vigil_store::open(&database).with_context(|| format!("cannot open store {database}"))?;
    let clock: Arc<dyn Clock> = Arc::new(vigil_core::SystemClock);
    let admin_token = create_token(store.as_ref(), "demo-admin", Role::Admin, clock.as_ref())?;
    let ingest_token = create_token(store.as_ref(), "demo-fleet", Role::Ingest, clock.as_ref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let demo = Demo {
        args,
        dir,
        database,
        admin_token,
        ingest_token,
        clock,
    };
    let ran = runtime.block_on(demo.run(Arc::clone(&store)));
    // Agents' blocking calls end on their own timeouts; do not wait for them.
    runtime.shutdown_timeout(Duration::from_secs(2));
    drop(store);
    ran
}

fn create_token(
    store: &dyn vigil_store::Store,
    name: &str,
    role: Role,
    clock: &dyn Clock,
) -> anyhow::Result<String> {
    let secret = vigil_web::new_token().map_err(|error| anyhow::anyhow!("{error}"))?;
    store.create_token(name, role, &vigil_web::hash_token(&secret), clock.now())?;
    Ok(secret)
}

#[derive(Debug)]
struct Demo {
    args: DemoArgs,
    dir: PathBuf,
    database: String,
    admin_token: String,
    ingest_token: String,
    clock: Arc<dyn Clock>,
}

impl Demo {
    async fn run(self, store: Arc<dyn vigil_store::Store>) -> anyhow::Result<()> {
        let started_at = self.clock.now();
        let config = ServerConfig {
            listen: self.args.listen.clone(),
            database: self.database.clone(),
            ..ServerConfig::default()
        };
        let server = start(&config, store, Arc::clone(&self.clock)).await?;
        let address = server.address;
        let base_url = format!("http://{address}");
        crate::say(&format!(
            "vigil demo: pages at {base_url}/ (sign in at {base_url}/signin with the admin token below)\n  token: {}\n  store and agents' state: {}",
            self.admin_token,
            self.dir.display()
        ));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let serving = tokio::spawn(server.run(until_stopped(stopped.clone())));

        let restart = Duration::from_millis((2000.0 / self.args.speed) as u64);
        let mut hosts = Vec::new();
        for index in 1..=self.args.hosts {
            let name = format!("web-{index}");
            let host = fleet::SimHost::new(&name, Arc::clone(&self.clock), restart);
            let mut config = vigil_agent::AgentConfig::new(
                &base_url,
                &self.ingest_token,
                &name,
                scenario::APP,
                self.dir.join("agents").join(&name),
            );
            config.labels = BTreeMap::from([
                ("role".to_string(), "web".to_string()),
                (
                    "zone".to_string(),
                    if index % 2 == 0 { "b" } else { "a" }.to_string(),
                ),
            ]);
            config.metrics_interval_seconds = 1;
            launch_agent(
                config,
                &host,
                index as u64,
                Arc::clone(&self.clock),
                stopped.clone(),
            );
            hosts.push(host);
        }
        crate::say(&format!(
            "simulated fleet: {} hosts of app {} (web-1 .. web-{}), each a real agent on loopback",
            self.args.hosts,
            scenario::APP,
            self.args.hosts
        ));

        let story = scenario::Story {
            base_url: base_url.clone(),
            admin_token: self.admin_token.clone(),
            hosts: self.args.hosts,
            baseline_seconds: (BASELINE_SECONDS / self.args.speed).round().max(30.0) as i64,
            observe_seconds: (OBSERVE_SECONDS / self.args.speed).round().max(6.0) as i64,
            clock: Arc::clone(&self.clock),
            started_at,
        };
        let mut told = tokio::task::spawn_blocking(move || scenario::run(&story));
        let mut story_over = false;
        loop {
            tokio::select! {
                interrupted = tokio::signal::ctrl_c() => {
                    interrupted.context("cannot wait for Ctrl-C")?;
                    break;
                }
                outcome = &mut told, if !story_over => {
                    story_over = true;
                    match outcome {
                        Ok(Ok(())) => crate::say("the demo keeps serving its pages and the fleet: Ctrl-C to stop"),
                        Ok(Err(error)) => crate::say(&format!("the demo's story stopped: {error:#}; the server keeps serving: Ctrl-C to stop")),
                        Err(error) => crate::say(&format!("the demo's story stopped: {error}")),
                    }
                }
            }
        }
        crate::say("stopping");
        let _ = stop.send(true);
        serving
            .await
            .context("the server task failed")?
            .context("the server stopped with an error")?;
        drop(hosts);
        Ok(())
    }
}

async fn until_stopped(mut stopped: tokio::sync::watch::Receiver<bool>) {
    while !*stopped.borrow() {
        if stopped.changed().await.is_err() {
            return;
        }
    }
}

/// Runs one simulated host's agent: the real agent loop, with the host's simulated parts.
fn launch_agent(
    config: vigil_agent::AgentConfig,
    host: &fleet::SimHost,
    seed: u64,
    clock: Arc<dyn Clock>,
    stopped: tokio::sync::watch::Receiver<bool>,
) {
    let (probe, logs, deployer) = host.parts(seed);
    let parts = vigil_agent::HostParts {
        probe: Box::new(probe),
        logs: Box::new(logs),
        deployer: Box::new(deployer),
    };
    let name = host.name.clone();
    tokio::spawn(async move {
        if let Err(error) = vigil_agent::run(config, parts, clock, until_stopped(stopped)).await {
            tracing::error!(host = %name, error = %error, "simulated agent stopped");
        }
    });
}
