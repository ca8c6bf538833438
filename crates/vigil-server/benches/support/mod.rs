//! What the benchmarks that drive a whole server share: a server in this process on a loopback
//! port with a SQLite store in a temporary directory and a test clock, a JSON client call, and
//! command-line numbers.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use vigil_core::release::Role;
use vigil_core::ManualClock;
use vigil_server::{start, ServerConfig};
use vigil_web::AppState;

/// A running server and what a benchmark needs of it.
pub struct BenchServer {
    pub base: String,
    pub address: SocketAddr,
    pub state: AppState,
    pub clock: Arc<ManualClock>,
    /// Keeps the store's directory until the benchmark ends.
    _dir: vigil_store::testing::TempDir,
}

/// Starts a server at clock time `now` with a token per `(name, role)`; returns the server and
/// the tokens' secrets in the same order. The server runs until the process ends.
pub fn start_server(label: &str, now: i64, tokens: &[(&str, Role)]) -> (BenchServer, Vec<String>) {
    let dir = vigil_store::testing::TempDir::new(label).unwrap();
    let database = dir.path().join("vigil.db").display().to_string();
    let store = vigil_store::open(&database).unwrap();
    let secrets = tokens
        .iter()
        .map(|(name, role)| {
            let secret = vigil_web::new_token().unwrap();
            store
                .create_token(name, *role, &vigil_web::hash_token(&secret), 0)
                .unwrap();
            secret
        })
        .collect();
    let clock = Arc::new(ManualClock::new(now));
    let server_clock: Arc<dyn vigil_core::Clock> = clock.clone();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let config = ServerConfig {
                listen: "127.0.0.1:0".to_string(),
                ..ServerConfig::default()
            };
            let started = start(&config, store, server_clock).await.unwrap();
            sender
                .send((started.address, started.state.clone()))
                .unwrap();
            started.run(std::future::pending()).await.unwrap();
        });
    });
    let (address, state) = receiver.recv().unwrap();
    let server = BenchServer {
        base: format!("http://{address}"),
        address,
        state,
        clock,
        _dir: dir,
    };
    (server, secrets)
}

/// Posts JSON with a bearer token; panics unless the answer is a success, returns its JSON.
pub fn post(
    agent: &ureq::Agent,
    url: &str,
    token: &str,
    body: &serde_json::Value,
) -> serde_json::Value {
    let mut response = agent
        .post(url)
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(body.to_string().as_bytes())
        .unwrap();
    let status = response.status();
    let text = response.body_mut().read_to_string().unwrap();
    assert!(status.is_success(), "{url}: {status} {text}");
    serde_json::from_str(&text).unwrap()
}

/// The number after `--NAME` on the command line, or `default`.
pub fn number_argument(name: &str, default: usize) -> usize {
    let arguments: Vec<String> = std::env::args().collect();
    let flag = format!("--{name}");
    arguments
        .iter()
        .position(|argument| *argument == flag)
        .and_then(|position| arguments.get(position + 1))
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}
