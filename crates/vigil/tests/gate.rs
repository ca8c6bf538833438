//! `vigil gate` against a running `vigil serve`: exit 0 for a release that passed, 1 for one that
//! was paused (printing why); and a first start without a token says how to make one.
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
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let response = agent
        .post(&format!("http://127.0.0.1:{port}/api/v1/releases/import"))
        .header("Authorization", &format!("Bearer {token}"))
        .send(&bundle[..])
        .unwrap();
    assert_eq!(response.status(), 201);
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
    assert_ne!(unknown.status.code(), Some(0));
}
