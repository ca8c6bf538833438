//! `vigil serve`: the live guard with its API and release pages.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use vigil_server::{start, ServerConfig};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:7070].
    #[arg(long)]
    listen: Option<String>,
    /// Store: a SQLite file path or `sqlite://PATH`, or `postgres://USER:PASS@HOST/DB`
    /// [default: ./vigil.db].
    #[arg(long)]
    database: Option<String>,
    /// A JSON file with further settings (notifications, retention, public URL).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Base URL of this server in links sent to people.
    #[arg(long)]
    public_url: Option<String>,
    /// Folder of the uploaded artifacts and the manifest signing key [default: `vigil-artifacts`
    /// beside a SQLite file, `./vigil-artifacts` on PostgreSQL].
    #[arg(long)]
    artifact_dir: Option<PathBuf>,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read(path)
                .with_context(|| format!("cannot read config {}", path.display()))?;
            serde_json::from_slice::<ServerConfig>(&text)
                .with_context(|| format!("invalid config {}", path.display()))?
        }
        None => ServerConfig::default(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(database) = args.database {
        config.database = database;
    }
    if let Some(public_url) = args.public_url {
        config.public_url = public_url;
    }
    if let Some(artifact_dir) = args.artifact_dir {
        config.artifact_dir = artifact_dir.display().to_string();
    }
    crate::logging::init();
    // The store is opened, and later dropped, outside the async runtime: the PostgreSQL client
    // blocks on a runtime of its own, which cannot start (or end) on an async worker.
    let store = vigil_store::open(&config.database).with_context(|| {
        format!(
            "cannot open store {}",
            vigil_store::redact_password(&config.database)
        )
    })?;
    if store.tokens()?.is_empty() {
        crate::say(&format!(
            "no API token exists yet: create one with\n  vigil token create --role admin --database {}\n(the same store URL as this server's, password included)",
            vigil_store::redact_password(&config.database)
        ));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let served = runtime.block_on(serve(config, Arc::clone(&store)));
    drop(runtime);
    drop(store);
    served
}

async fn serve(config: ServerConfig, store: Arc<dyn vigil_store::Store>) -> anyhow::Result<()> {
    let clock: Arc<dyn vigil_core::Clock> = Arc::new(vigil_core::SystemClock);
    let started = start(&config, store, clock).await?;
    crate::say(&format!(
        "vigil listening on http://{} (store {}): release pages at /, API under /api/v1",
        started.address,
        vigil_store::redact_password(&config.database)
    ));
    started.run(shutdown_signal()).await?;
    Ok(())
}

pub(crate) async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
