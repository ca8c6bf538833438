//! Helpers of the binary's tests: a temporary directory, a database of its own on the PostgreSQL
//! server of `VIGIL_TEST_POSTGRES`, a `vigil serve` child process on a free loopback port, and a
//! small JSON client.
#![allow(dead_code, clippy::unwrap_used, clippy::print_stdout)]

use std::ffi::OsStr;
use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

pub struct Dir(pub PathBuf);

impl Dir {
    pub fn new(label: &str) -> Dir {
        let path = std::env::temp_dir().join(format!("vigil-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Dir(path)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn vigil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `vigil serve` on `database` (a SQLite path or a store URL), once it listens on `port`.
pub fn serve(database: impl AsRef<OsStr>, port: u16) -> Server {
    let child = vigil()
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database",
        ])
        .arg(database.as_ref())
        .args(artifact_dir_for(database.as_ref(), None))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(Server(child), port)
}

/// `--artifact-dir` for a server on a PostgreSQL store whose settings name no folder: one in
/// the temporary folder per database, instead of `./vigil-artifacts` in the test's working
/// directory (the crate's source folder).
fn artifact_dir_for(database: &OsStr, config: Option<&std::path::Path>) -> Vec<std::ffi::OsString> {
    let database = database.to_string_lossy();
    if !database.starts_with("postgres") {
        return Vec::new();
    }
    if let Some(config) = config {
        let settings: serde_json::Value =
            serde_json::from_slice(&std::fs::read(config).unwrap()).unwrap();
        if settings.get("artifact_dir").is_some() {
            return Vec::new();
        }
    }
    let name: String = database
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let folder = std::env::temp_dir().join(format!("vigil-artifacts-{name}"));
    vec!["--artifact-dir".into(), folder.into_os_string()]
}

/// A `vigil serve` on `database` with the settings file `config`, its log written to `log`,
/// once it listens on `port`. Proxy variables are cleared so that its notifications reach a
/// receiver on loopback directly.
pub fn serve_with_config(
    database: impl AsRef<OsStr>,
    port: u16,
    config: &std::path::Path,
    log: &std::path::Path,
) -> Server {
    let log_file = std::fs::File::create(log).unwrap();
    let mut command = vigil();
    command
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database",
        ])
        .arg(database.as_ref())
        .args(artifact_dir_for(database.as_ref(), Some(config)))
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::from(log_file));
    for proxy in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        command.env_remove(proxy);
    }
    wait_listening(Server(command.spawn().unwrap()), port)
}

fn wait_listening(mut server: Server, port: u16) -> Server {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return server;
        }
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!("vigil serve exited before listening on {port}: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("vigil serve did not start listening on {port}");
}

#[allow(clippy::disallowed_methods)] // the server runs on the wall clock; so does its feeder
pub fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

pub fn call(
    port: u16,
    method: &str,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(20)))
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("http://127.0.0.1:{port}{path}");
    let authorization = format!("Bearer {token}");
    let result = match body {
        None if method == "GET" => agent
            .get(&url)
            .header("Authorization", &authorization)
            .call(),
        None => agent
            .post(&url)
            .header("Authorization", &authorization)
            .send_empty(),
        Some(value) => agent
            .post(&url)
            .header("Authorization", &authorization)
            .header("Content-Type", "application/json")
            .send(value.to_string().as_bytes()),
    };
    let mut response = result.unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(json!({ "text": text })),
    )
}

/// Creates a token with `vigil token create` and returns it.
pub fn create_token(database: impl AsRef<OsStr>, role: &str) -> String {
    create_named_token(database, role, role)
}

/// Creates a token named `name` with `vigil token create` and returns it.
pub fn create_named_token(database: impl AsRef<OsStr>, role: &str, name: &str) -> String {
    let output = vigil()
        .args([
            "token",
            "create",
            "--role",
            role,
            "--name",
            name,
            "--database",
        ])
        .arg(database)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// Set (by CI) to fail instead of skipping when no PostgreSQL server is given.
pub const REQUIRE_POSTGRES_ENV: &str = "VIGIL_REQUIRE_POSTGRES";

/// A database of its own on the PostgreSQL server named by `VIGIL_TEST_POSTGRES` (dropped with
/// the value), or `None` after saying loudly that the test is skipped; fails instead when
/// `VIGIL_REQUIRE_POSTGRES` is set.
pub fn scratch_postgres(test: &str) -> Option<vigil_store::testing::ScratchPostgres> {
    match vigil_store::testing::ScratchPostgres::from_env("vigil_bin") {
        Ok(Some(scratch)) => Some(scratch),
        Ok(None) => {
            assert!(
                std::env::var_os(REQUIRE_POSTGRES_ENV).is_none(),
                "{REQUIRE_POSTGRES_ENV} is set but {} is not",
                vigil_store::testing::POSTGRES_TEST_ENV
            );
            // Written past the test harness's capture so that it is seen.
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED: {test} on PostgreSQL ({} not set) ***\n",
                vigil_store::testing::POSTGRES_TEST_ENV
            );
            None
        }
        Err(error) => panic!("cannot prepare a PostgreSQL test database: {error}"),
    }
}

/// `GET /api/v1/replicas` as (replica id → (live, releases)), or what was answered instead.
pub fn replicas(
    port: u16,
    token: &str,
) -> Result<std::collections::BTreeMap<String, (bool, std::collections::BTreeSet<String>)>, String>
{
    let (status, answer) = call(port, "GET", "/api/v1/replicas", token, None);
    if status != 200 {
        return Err(format!("GET /api/v1/replicas answered {status}: {answer}"));
    }
    let Some(list) = answer["replicas"].as_array() else {
        return Err(format!(
            "GET /api/v1/replicas has no \"replicas\" list: {answer}"
        ));
    };
    Ok(list
        .iter()
        .map(|replica| {
            let releases = replica["releases"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|id| id.as_str().map(str::to_string))
                .collect();
            (
                replica["id"].as_str().unwrap_or("").to_string(),
                (replica["live"] == true, releases),
            )
        })
        .collect())
}

/// Uploads `bytes` as an artifact named `name` and asserts it was created; its id.
pub fn upload_artifact(port: u16, token: &str, name: &str, bytes: &[u8]) -> String {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent
        .post(&format!(
            "http://127.0.0.1:{port}/api/v1/artifacts?name={name}"
        ))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/octet-stream")
        .send(bytes)
        .unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    assert_eq!(status, 201, "upload of {name} answered {status}: {text}");
    let record: serde_json::Value = serde_json::from_str(&text).unwrap();
    record["manifest"]["sha256"].as_str().unwrap().to_owned()
}

/// POSTs `body` and asserts it was taken (200 or 201), naming the port and the answer.
pub fn post_ok(port: u16, token: &str, path: &str, body: serde_json::Value) {
    let (status, answer) = call(port, "POST", path, token, Some(body));
    assert!(
        status == 200 || status == 201,
        "POST {path} on port {port} answered {status}: {answer}"
    );
}
