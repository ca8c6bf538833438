//! `vigil agent`: the host agent. Registers the host with the server, runs the deploy and
//! rollback steps it is given, pushes the host's metrics (from `/proc`) and its log files'
//! events, and fetches artifacts from its peers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use vigil_agent::{AgentConfig, CommandDeployer, FileLogSource, HostParts, ProcProbe};

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The Vigil server's URL with its scheme, for example http://10.0.0.5:7070.
    #[arg(long, value_parser = crate::gate_cmd::server_url)]
    server: String,
    /// An ingest token [default: $VIGIL_TOKEN].
    #[arg(long)]
    token: Option<String>,
    /// The app this host runs, as releases name it.
    #[arg(long)]
    app: String,
    /// The host's name, as its metrics and logs name it [default: the machine's hostname].
    #[arg(long)]
    host: Option<String>,
    /// A label of the host, NAME=VALUE, for release selectors (repeat for several).
    #[arg(long = "label", value_parser = label)]
    labels: Vec<(String, String)>,
    /// Where the agent keeps the deployed versions, its task ledger and artifact pieces.
    #[arg(long, default_value = "./vigil-agent")]
    state_dir: PathBuf,
    /// The deploy step, run with `sh -c` after the artifact is kept in the version's
    /// directory: {artifact}, {version}, {dir} and {previous} are replaced (quoted). Without
    /// it, a deploy only keeps the artifact.
    #[arg(long)]
    deploy_command: Option<String>,
    /// Seconds a deploy step may run before it is killed and fails.
    #[arg(long, default_value_t = 600)]
    deploy_timeout: u64,
    /// A log file to follow (repeat for several); events with stack traces count as one.
    #[arg(long = "log-file")]
    log_files: Vec<PathBuf>,
    /// Where to serve artifact pieces to peers: an address they can reach, or `0.0.0.0:PORT`
    /// (every interface; peers are told the address this host reaches the server from).
    #[arg(long, default_value = "127.0.0.1:0")]
    peer_listen: SocketAddr,
    /// Seconds between two metric samples.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    metrics_interval: u64,
    /// The server's manifest key (hex), pinned; without it the key the server gives first is
    /// trusted and kept in the state directory.
    #[arg(long, value_parser = key_hex)]
    server_key: Option<String>,
}

/// `NAME=VALUE`, a Prometheus label name and a non-empty value.
fn label(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not NAME=VALUE"))?;
    if !vigil_ingest::prometheus::is_label_name(name) {
        return Err(format!(
            "{name:?} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)"
        ));
    }
    if value.is_empty() || value.len() > vigil_core::samples::MAX_HOST_LABEL_BYTES {
        return Err(format!(
            "the value of {name} must be 1 to {} bytes",
            vigil_core::samples::MAX_HOST_LABEL_BYTES
        ));
    }
    vigil_core::validate::optional_name(value)
        .map_err(|problem| format!("label {name}: {problem}"))?;
    Ok((name.to_owned(), value.to_owned()))
}

fn key_hex(text: &str) -> Result<String, String> {
    if vigil_agent::artifacts::is_key_hex(text) {
        Ok(text.to_ascii_lowercase())
    } else {
        Err("the server key must be 64 hex digits (an Ed25519 public key)".to_owned())
    }
}

/// The machine's host name.
fn hostname() -> anyhow::Result<String> {
    for source in ["/proc/sys/kernel/hostname", "/etc/hostname"] {
        if let Ok(text) = std::fs::read_to_string(source) {
            let name = text.trim();
            if !name.is_empty() {
                return Ok(name.to_owned());
            }
        }
    }
    anyhow::bail!("cannot tell this machine's host name: pass --host")
}

pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    let token = match args.token {
        Some(token) => token,
        None => {
            std::env::var("VIGIL_TOKEN").context("no token: pass --token or set VIGIL_TOKEN")?
        }
    };
    let host = match args.host {
        Some(host) => host,
        None => hostname()?,
    };
    vigil_core::validate::name(&host).map_err(|problem| anyhow::anyhow!("--host: {problem}"))?;
    vigil_core::validate::name(&args.app).map_err(|problem| anyhow::anyhow!("--app: {problem}"))?;
    if args.labels.len() > vigil_core::samples::MAX_HOST_LABELS {
        anyhow::bail!(
            "--label: at most {} labels",
            vigil_core::samples::MAX_HOST_LABELS
        );
    }
    let mut config = AgentConfig::new(&args.server, &token, &host, &args.app, args.state_dir);
    config.labels = args.labels.into_iter().collect::<BTreeMap<_, _>>();
    config.peer_listen = args.peer_listen;
    config.metrics_interval_seconds = args.metrics_interval;
    config.server_key = args.server_key;
    crate::logging::init();
    let clock: Arc<dyn vigil_core::Clock> = Arc::new(vigil_core::SystemClock);
    let state = vigil_agent::state::StateDir::open(&config.state_dir).with_context(|| {
        format!(
            "cannot open the state directory {}",
            config.state_dir.display()
        )
    })?;
    let positions = state.resumable_log_positions(clock.now());
    let parts = HostParts {
        probe: Box::new(ProcProbe::default()),
        logs: Box::new(FileLogSource::resume(args.log_files, &positions)),
        deployer: Box::new(CommandDeployer::new(
            state,
            args.deploy_command,
            Duration::from_secs(args.deploy_timeout.max(1)),
            Arc::clone(&clock),
        )),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    crate::say(&format!(
        "vigil agent for host {host} (app {}) reporting to {}",
        config.app, config.server
    ));
    runtime
        .block_on(vigil_agent::run(
            config,
            parts,
            clock,
            crate::serve_cmd::shutdown_signal(),
        ))
        .context("the agent failed")?;
    Ok(())
}
