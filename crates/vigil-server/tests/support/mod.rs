//! A Vigil server started in-process on a loopback port, with a SQLite store in a temporary
//! directory and a manual clock, and a small HTTP client for the tests.
#![allow(dead_code, clippy::unwrap_used)]

pub mod openapi;
pub mod prometheus;
pub mod webdriver;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use vigil_core::release::Role;
use vigil_core::ManualClock;
use vigil_server::{start, ServerConfig};
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
    pub operator: String,
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
        // A server on PostgreSQL keeps its artifacts in the working directory by default: a
        // test's go in a directory of its own, removed with it.
        let kept_dir = match dir {
            None if config.artifact_dir.is_empty() => {
                let artifacts = TempDir::new("artifacts");
                config.artifact_dir = artifacts.0.join("vigil-artifacts").display().to_string();
                Some(artifacts)
            }
            given => given,
        };
        let clock = Arc::new(ManualClock::new(now));
        let store = vigil_store::open(database).unwrap();
        let tokens: Vec<String> = [Role::Admin, Role::Ingest, Role::Viewer, Role::Operator]
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
            operator: tokens[3].clone(),
            shutdown: Some(shutdown),
            thread: Some(thread),
            _dir: kept_dir,
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

    /// Sends `samples` to the JSON ingestion route with the ingest token; panics unless taken.
    pub fn ingest_samples(&self, samples: Vec<serde_json::Value>) {
        let body = serde_json::json!({ "samples": samples });
        let (status, answer) = self.post("/api/v1/ingest/samples", &self.ingest, &body);
        assert_eq!(status, 200, "{answer}");
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
        ("DELETE", _) => agent
            .delete(&url)
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

/// What a page request answered: status, the `Location` and `Set-Cookie` headers, the body.
#[derive(Debug)]
pub struct PageAnswer {
    pub status: u16,
    pub location: Option<String>,
    pub set_cookie: Option<String>,
    pub body: String,
}

/// A client of the pages as a browser would be: it keeps the session cookie, sends its
/// server's origin with forms, and does not follow redirects (the tests look at them).
pub struct PageClient {
    pub base: String,
    pub cookie: Option<String>,
    agent: ureq::Agent,
}

impl PageClient {
    pub fn new(base: &str) -> PageClient {
        PageClient {
            base: base.to_string(),
            cookie: None,
            agent: ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(60)))
                .http_status_as_error(false)
                .max_redirects(0)
                .build()
                .into(),
        }
    }

    fn answer(mut response: ureq::http::Response<ureq::Body>) -> PageAnswer {
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_string)
        };
        let location = header("location");
        let set_cookie = header("set-cookie");
        PageAnswer {
            status: response.status().as_u16(),
            location,
            set_cookie,
            body: response.body_mut().read_to_string().unwrap_or_default(),
        }
    }

    pub fn get(&self, path: &str) -> PageAnswer {
        let mut request = self.agent.get(&format!("{}{path}", self.base));
        if let Some(cookie) = &self.cookie {
            request = request.header("Cookie", cookie);
        }
        PageClient::answer(request.call().unwrap())
    }

    /// Posts a form as if from `origin` (the server's own base for a form of its pages).
    pub fn post_form_from(&self, origin: &str, path: &str, fields: &[(&str, &str)]) -> PageAnswer {
        let body = fields
            .iter()
            .map(|(name, value)| format!("{}={}", form_encode(name), form_encode(value)))
            .collect::<Vec<_>>()
            .join("&");
        let mut request = self
            .agent
            .post(&format!("{}{path}", self.base))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Origin", origin);
        if let Some(cookie) = &self.cookie {
            request = request.header("Cookie", cookie);
        }
        PageClient::answer(request.send(body.as_bytes()).unwrap())
    }

    pub fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> PageAnswer {
        let origin = self.base.clone();
        self.post_form_from(&origin, path, fields)
    }

    /// Signs in with `token` and keeps the session cookie; returns the sign-in answer.
    pub fn sign_in(&mut self, token: &str) -> PageAnswer {
        let answer = self.post_form("/signin", &[("token", token), ("next", "/releases")]);
        if let Some(set_cookie) = &answer.set_cookie {
            let pair = set_cookie.split(';').next().unwrap().to_string();
            self.cookie = Some(pair);
        }
        answer
    }
}

/// `application/x-www-form-urlencoded` encoding of one name or value.
pub fn form_encode(text: &str) -> String {
    let mut encoded = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                encoded.push(char::from(byte))
            }
            b' ' => encoded.push('+'),
            _ => encoded.push_str(&format!("%{byte:02X}")),
        }
    }
    encoded
}

/// The value of the first `<input name="NAME" value="...">` in a page.
pub fn input_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_string())
}

/// The first example bundle whose replay pauses on a metric finding against reference hosts,
/// with its replay.
pub fn paused_example() -> (PathBuf, vigil_core::Bundle, vigil_analysis::ReplayOutcome) {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(examples_dir().join("releases"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    paths.sort();
    for path in paths {
        let bundle = vigil_core::Bundle::read(&path).unwrap();
        let outcome = vigil_analysis::replay(&bundle, &vigil_analysis::Settings::default());
        let metric_first = outcome.findings.first().is_some_and(|finding| {
            matches!(finding.signal, vigil_core::Signal::Metric { .. })
                && finding.baseline == "reference"
        });
        if outcome.paused_at.is_some() && metric_first {
            return (path, bundle, outcome);
        }
    }
    panic!("no example bundle pauses on a metric finding against reference hosts");
}

/// A server with the first pausing example imported, its clock just after the bundle's end.
pub fn server_with_paused_release() -> (TestServer, vigil_core::Bundle) {
    let (path, bundle, _) = paused_example();
    let end = bundle.time_of(bundle.points - 1);
    let server = TestServer::start(end + 60);
    let (status, answer) = server.post_bytes(
        "/api/v1/releases/import",
        &server.admin,
        std::fs::read(&path).unwrap(),
    );
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["state"], "paused", "{answer}");
    (server, bundle)
}

/// Calls `ask` every half second, keeping the server's clock on real time, until `done`
/// holds for its answer; panics with the last answer after `seconds`.
pub fn wait_until<T: std::fmt::Debug>(
    server: &TestServer,
    seconds: u64,
    mut ask: impl FnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    use vigil_core::Clock;
    let mut last = None;
    for _ in 0..seconds * 2 {
        server.clock.set(vigil_core::SystemClock.now());
        let answer = ask();
        if done(&answer) {
            return answer;
        }
        last = Some(answer);
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("gave up waiting; last answer: {last:#?}");
}

/// The example that replays healthy with every signal passing at its end: imported, it is a
/// healthy release whose scorecard passes every row.
pub const HEALTHY_EXAMPLE: &str = "pub0087";

/// Imports example `id` into `server` (as an admin); returns its bundle.
pub fn import_example(server: &TestServer, id: &str) -> vigil_core::Bundle {
    let path = examples_dir().join(format!("releases/{id}.json.gz"));
    let (status, answer) = server.post_bytes(
        "/api/v1/releases/import",
        &server.admin,
        std::fs::read(&path).unwrap(),
    );
    assert_eq!(status, 201, "{answer}");
    vigil_core::Bundle::read(&path).unwrap()
}

/// The texts of the signal cells (`th`) of a page's scorecard tables, in order, tags removed.
pub fn scorecard_signals(html: &str) -> Vec<String> {
    let mut signals = Vec::new();
    let Some(start) = html.find("id=\"scorecard\"") else {
        return signals;
    };
    let section = &html[start..];
    let section = &section[..section.find("</section>").unwrap_or(section.len())];
    for piece in section.split("<th scope=\"row\">").skip(1) {
        let cell = &piece[..piece.find("</th>").unwrap_or(piece.len())];
        let mut text = String::new();
        let mut in_tag = false;
        for character in cell.chars() {
            match character {
                '<' => in_tag = true,
                '>' => in_tag = false,
                _ if !in_tag => text.push(character),
                _ => {}
            }
        }
        signals.push(text);
    }
    signals
}
