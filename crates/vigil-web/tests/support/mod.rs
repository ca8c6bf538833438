//! A Vigil server started in-process on a loopback port, with a SQLite store in a temporary
//! directory and a manual clock, and a small HTTP client for the tests.
#![allow(dead_code, clippy::unwrap_used)]

pub mod prometheus;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use vigil_core::release::Role;
use vigil_core::ManualClock;
use vigil_web::server::{start, ServerConfig};
use vigil_web::AppState;

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let unique = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!(
            "vigil-test-{label}-{}-{unique}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct TestServer {
    pub base: String,
    pub clock: Arc<ManualClock>,
    pub state: AppState,
    pub admin: String,
    pub ingest: String,
    pub viewer: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: Option<TempDir>,
}

impl TestServer {
    pub fn start(now: i64) -> TestServer {
        let dir = TempDir::new("server");
        let database = dir.0.join("vigil.db").display().to_string();
        TestServer::start_with(now, &database, Some(dir), ServerConfig::default())
    }

    pub fn start_with(
        now: i64,
        database: &str,
        dir: Option<TempDir>,
        mut config: ServerConfig,
    ) -> TestServer {
        config.listen = "127.0.0.1:0".to_string();
        config.database = database.to_string();
        let clock = Arc::new(ManualClock::new(now));
        let store = vigil_store::open(database).unwrap();
        let tokens: Vec<String> = [Role::Admin, Role::Ingest, Role::Viewer]
            .into_iter()
            .map(|role| {
                let secret = vigil_web::new_token().unwrap();
                store
                    .create_token(role.as_str(), role, &vigil_web::hash_token(&secret), now)
                    .unwrap();
                secret
            })
            .collect();
        let (sender, receiver) = std::sync::mpsc::channel();
        let (shutdown, shutdown_receiver) = tokio::sync::oneshot::channel::<()>();
        let server_clock: Arc<dyn vigil_core::Clock> = clock.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let started = start(&config, store, server_clock).await.unwrap();
                sender
                    .send((started.address, started.state.clone()))
                    .unwrap();
                started
                    .run(async move {
                        let _ = shutdown_receiver.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let (address, state) = receiver.recv_timeout(Duration::from_secs(30)).unwrap();
        TestServer {
            base: format!("http://{address}"),
            clock,
            state,
            admin: tokens[0].clone(),
            ingest: tokens[1].clone(),
            viewer: tokens[2].clone(),
            shutdown: Some(shutdown),
            thread: Some(thread),
            _dir: dir,
        }
    }

    pub fn get(&self, path: &str, token: &str) -> (u16, serde_json::Value) {
        request(&self.base, "GET", path, token, None)
    }

    pub fn post(
        &self,
        path: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        self.send_json("POST", path, token, body)
    }

    pub fn put(
        &self,
        path: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        self.send_json("PUT", path, token, body)
    }

    fn send_json(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        request(
            &self.base,
            method,
            path,
            token,
            Some(body.to_string().into_bytes()),
        )
    }

    pub fn post_bytes(&self, path: &str, token: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
        request(&self.base, "POST", path, token, Some(body))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// One request; returns the status and the JSON body (or `{"text": ...}` when not JSON).
pub fn request(
    base: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Vec<u8>>,
) -> (u16, serde_json::Value) {
    let url = format!("{base}{path}");
    let agent = agent();
    let authorization = format!("Bearer {token}");
    let result = match (method, body) {
        ("GET", _) => agent
            .get(&url)
            .header("Authorization", &authorization)
            .call(),
        ("PUT", Some(bytes)) => agent
            .put(&url)
            .header("Authorization", &authorization)
            .header("Content-Type", "application/json")
            .send(&bytes[..]),
        (_, Some(bytes)) => agent
            .post(&url)
            .header("Authorization", &authorization)
            .header("Content-Type", "application/json")
            .send(&bytes[..]),
        (_, None) => agent
            .post(&url)
            .header("Authorization", &authorization)
            .send_empty(),
    };
    let mut response = result.unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let value = serde_json::from_str(&text).unwrap_or(serde_json::json!({ "text": text }));
    (status, value)
}

/// The repository's example bundles.
pub fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}
