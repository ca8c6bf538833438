//! A real Prometheus for the tests (Debian's `prometheus` binary, or `VIGIL_PROMETHEUS`), and a
//! scrape target serving text the test makes.
//!
//! Without the binary the tests say SKIPPED loudly and pass, unless `VIGIL_REQUIRE_PROMETHEUS`
//! is set (as CI does), when they fail.
#![allow(clippy::print_stderr)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::TempDir;

/// The binary `name`: the path in `override_variable` if set, else the first on `PATH`.
pub fn find_binary(override_variable: &str, name: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(override_variable) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The Debian package `name`'s binary for `test`, or a loud SKIPPED and `None`; a failure
/// instead when `require_variable` is set (as CI does).
pub fn binary_or_skip(
    name: &str,
    override_variable: &str,
    require_variable: &str,
    test: &str,
) -> Option<PathBuf> {
    let found = find_binary(override_variable, name);
    if found.is_none() {
        assert!(
            std::env::var_os(require_variable).is_none(),
            "{require_variable} is set but no {name} binary was found"
        );
        eprintln!("\n*** SKIPPED: {test}: {name} not installed (apt-get install {name}, or set {override_variable}) ***\n");
    }
    found
}

pub fn find_prometheus() -> Option<PathBuf> {
    find_binary("VIGIL_PROMETHEUS", "prometheus")
}

pub fn prometheus_or_skip(test: &str) -> Option<PathBuf> {
    binary_or_skip(
        "prometheus",
        "VIGIL_PROMETHEUS",
        "VIGIL_REQUIRE_PROMETHEUS",
        test,
    )
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Prometheus on a loopback port with its data in a temporary directory, killed on drop.
pub struct Prometheus {
    child: Child,
    pub url: String,
    _dir: TempDir,
}

impl Prometheus {
    pub fn start(binary: &PathBuf, config: &str) -> Prometheus {
        let dir = TempDir::new("prometheus");
        let config_path = dir.0.join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.0.join("prometheus.log")).unwrap())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let prometheus = Prometheus {
            child,
            url,
            _dir: dir,
        };
        for _ in 0..200 {
            if let Ok(response) = super::agent()
                .get(&format!("{}/-/ready", prometheus.url))
                .call()
            {
                if response.status() == 200 {
                    return prometheus;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("prometheus did not become ready");
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves Prometheus' text format on a loopback port: `body(path)` for every request, one
/// request per connection. Returns the port.
pub fn serve_text(mut body: impl FnMut(&str) -> String + Send + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0u8; 4096];
            let read = stream.read(&mut buffer).unwrap_or(0);
            let request = String::from_utf8_lossy(&buffer[..read]).to_string();
            let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
            let text = body(&path);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    port
}

/// Serves each host's text at `/metrics/<host>`: `text_of(host, scrape)` with the count of that
/// host's scrapes so far (from 1). Returns the port.
pub fn serve_hosts(text_of: impl Fn(&str, u64) -> String + Send + 'static) -> u16 {
    let mut scrapes = std::collections::HashMap::<String, u64>::new();
    serve_text(move |path| {
        let host = path.trim_start_matches("/metrics/").to_string();
        let scrape = scrapes.entry(host.clone()).or_default();
        *scrape += 1;
        text_of(&host, *scrape)
    })
}

/// A Prometheus configuration scraping every second, as job `job`, each of `hosts` at
/// `/metrics/<host>` on `port`, labelled `instance: <host>`.
pub fn scrape_config(job: &str, port: u16, hosts: &[&str]) -> String {
    let mut config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: {job}\n    static_configs:\n"
    );
    for host in hosts {
        config.push_str(&format!(
            "      - targets: ['127.0.0.1:{port}']\n        labels: {{__metrics_path__: /metrics/{host}, instance: {host}}}\n"
        ));
    }
    config
}

/// Node exporter families (CPU seconds by mode, memory, load) of one host at its `scrape`-th
/// scrape.
pub fn node_exporter_text(scrape: u64) -> String {
    let n = scrape as f64;
    format!(
        "# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.\n\
         # TYPE node_cpu_seconds_total counter\n\
         node_cpu_seconds_total{{cpu=\"0\",mode=\"idle\"}} {idle}\n\
         node_cpu_seconds_total{{cpu=\"0\",mode=\"user\"}} {user}\n\
         # TYPE node_memory_MemAvailable_bytes gauge\n\
         node_memory_MemAvailable_bytes 3.0e+09\n\
         # TYPE node_memory_MemTotal_bytes gauge\n\
         node_memory_MemTotal_bytes 8.0e+09\n\
         # TYPE node_load1 gauge\n\
         node_load1 0.75\n",
        idle = 0.7 * n,
        user = 0.3 * n,
    )
}
