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

pub fn find_prometheus() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("VIGIL_PROMETHEUS") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("prometheus"))
        .find(|candidate| candidate.is_file())
}

pub fn prometheus_or_skip(test: &str) -> Option<PathBuf> {
    let found = find_prometheus();
    if found.is_none() {
        assert!(
            std::env::var_os("VIGIL_REQUIRE_PROMETHEUS").is_none(),
            "VIGIL_REQUIRE_PROMETHEUS is set but no prometheus binary was found"
        );
        eprintln!("\n*** SKIPPED: {test}: prometheus not installed (apt-get install prometheus, or set VIGIL_PROMETHEUS) ***\n");
    }
    found
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
