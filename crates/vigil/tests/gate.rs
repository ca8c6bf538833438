//! `vigil gate` against a running `vigil serve`: exit 0 for a release that passed, 1 for one that
//! was paused (printing why), 2 for one without outcome in time, 3 for a server out of reach, 4
//! for a refused request, 64 for a wrong invocation; and a first start without a token says how
//! to make one.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod support;

use std::io::Read;
use std::process::Stdio;

use support::{create_token, free_port, serve, vigil, Dir, Server};

fn import(port: u16, token: &str, name: &str) {
    let bundle = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../../examples/releases/{name}.json.gz")),
    )
    .unwrap();
    assert_eq!(post(port, token, "/api/v1/releases/import", bundle), 201);
}

/// Posts `body` to the server on `port` with `token`; the answer's status.
fn post(port: u16, token: &str, path: &str, body: Vec<u8>) -> u16 {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    agent
        .post(&format!("http://127.0.0.1:{port}{path}"))
        .header("Authorization", &format!("Bearer {token}"))
        .send(&body[..])
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn a_first_start_without_a_token_says_how_to_make_one() {
    let dir = Dir::new("first-start");
    let port = free_port();
    let mut child = vigil()
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database",
        ])
        .arg(dir.0.join("vigil.db"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut printed = String::new();
    let mut buffer = [0u8; 512];
    while !printed.contains("listening") {
        let read = stdout.read(&mut buffer).unwrap();
        assert!(read > 0, "serve ended early: {printed}");
        printed.push_str(&String::from_utf8_lossy(&buffer[..read]));
    }
    let _server = Server(child);
    assert!(
        printed.contains("vigil token create --role admin"),
        "{printed}"
    );
}

#[test]
fn the_gate_passes_a_passed_release_and_stops_a_paused_one() {
    let dir = Dir::new("gate");
    let database = dir.0.join("vigil.db");
    let token = create_token(&database, "admin");
    let port = free_port();
    let _server = serve(&database, port);
    import(port, &token, "pub0003"); // healthy: replayed to success
    import(port, &token, "pub0031"); // faulty: replayed to a pause
    let server = format!("http://127.0.0.1:{port}");
    let gate = |release: &str| {
        vigil()
            .args([
                "gate",
                release,
                "--server",
                &server,
                "--token",
                &token,
                "--timeout",
                "5",
                "--interval",
                "1",
            ])
            .output()
            .unwrap()
    };
    let passed = gate("pub0003");
    assert_eq!(
        passed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&passed.stdout)
    );
    let stopped = gate("pub0031");
    let printed = String::from_utf8_lossy(&stopped.stdout).to_string();
    assert_eq!(stopped.status.code(), Some(1), "{printed}");
    assert!(
        printed.contains("paused") && printed.contains("http.rt_ms"),
        "{printed}"
    );
    let unknown = gate("nope");
    assert_eq!(unknown.status.code(), Some(4), "a refused request");
    // A release that never ends: the server answers, the wait times out.
    let release = serde_json::json!({
        "id": "waiting", "app": "shop", "version": "2", "hosts": ["a"],
        "batches": [{"hosts": ["a"]}],
    });
    let created = post(
        port,
        &token,
        "/api/v1/releases",
        release.to_string().into_bytes(),
    );
    assert_eq!(created, 201);
    let waiting = gate("waiting");
    let printed = String::from_utf8_lossy(&waiting.stdout).to_string();
    assert_eq!(waiting.status.code(), Some(2), "{printed}");
    assert!(printed.contains("no outcome after 5 s"), "{printed}");
}

#[test]
fn a_server_without_scheme_is_refused_at_once_and_an_unreachable_one_is_not_a_timeout() {
    let port = free_port();
    let bare = vigil()
        .args(["gate", "r1", "--server", &format!("127.0.0.1:{port}")])
        .args(["--token", "t", "--timeout", "60", "--interval", "1"])
        .output()
        .unwrap();
    let complaint = String::from_utf8_lossy(&bare.stderr).to_string();
    assert_eq!(bare.status.code(), Some(64), "{complaint}");
    assert!(
        complaint.contains(&format!(
            "give the scheme, for example http://127.0.0.1:{port}"
        )),
        "{complaint}"
    );
    // Nothing listens on the port.
    let unreachable = vigil()
        .args([
            "gate",
            "r1",
            "--server",
            &format!("http://127.0.0.1:{port}"),
        ])
        .args(["--token", "t", "--timeout", "2", "--interval", "1"])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&unreachable.stdout).to_string();
    assert_eq!(unreachable.status.code(), Some(3), "{printed}");
    assert!(printed.contains("could not reach"), "{printed}");
    let help = vigil().args(["gate", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout).to_string();
    assert!(
        help.contains("2 no outcome within --timeout; 3 the server could not be reached"),
        "{help}"
    );
}
