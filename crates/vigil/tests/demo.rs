//! `vigil demo`, the README's first command, run as a newcomer runs it: the binary tells its
//! story through to a paused release whose evidence the API then shows, and run again on the
//! same folder it says why it cannot instead of failing halfway.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use support::{call, free_port, vigil, Dir, Server};

/// Longest the story may take at `--speed 2` (it takes about 1.5 minutes).
const STORY_DEADLINE: Duration = Duration::from_secs(360);

#[test]
fn the_demo_completes_a_healthy_release_pauses_the_faulty_one_and_refuses_its_own_folder_again() {
    let dir = Dir::new("demo");
    let port = free_port();
    let mut child = vigil()
        .args([
            "demo",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--speed",
            "2",
            "--dir",
        ])
        .arg(&dir.0)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let demo = Server(child);
    let (lines_sender, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            println!("demo: {line}");
            if lines_sender.send(line).is_err() {
                return;
            }
        }
    });

    let mut told = Vec::new();
    #[allow(clippy::disallowed_methods)] // the demo runs on the wall clock
    let deadline = std::time::Instant::now() + STORY_DEADLINE;
    loop {
        #[allow(clippy::disallowed_methods)]
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = match lines.recv_timeout(left) {
            Ok(line) => line,
            Err(error) => panic!("the demo did not reach a paused release ({error}): {told:#?}"),
        };
        let over = line.contains("first paused release") || line.contains("story stopped");
        told.push(line);
        if over {
            break;
        }
    }
    let said = |words: &str| told.iter().position(|line| line.contains(words));
    let token = told
        .iter()
        .find_map(|line| line.trim().strip_prefix("token: "))
        .unwrap_or_else(|| panic!("no token printed: {told:#?}"))
        .to_string();
    let succeeded = said("shop-2: succeeded").unwrap_or_else(|| panic!("{told:#?}"));
    let paused = said("first paused release: shop-3").unwrap_or_else(|| panic!("{told:#?}"));
    assert!(succeeded < paused, "{told:#?}");

    // What the line says, the API holds: the faulty release is paused, with its reason, and its
    // first batch only went out.
    let (status, release) = call(port, "GET", "/api/v1/releases/shop-3", &token, None);
    assert_eq!(status, 200, "{release}");
    assert_eq!(release["state"], "paused", "{release}");
    assert!(
        !release["reason"].as_str().unwrap_or_default().is_empty(),
        "{release}"
    );
    let (status, healthy) = call(port, "GET", "/api/v1/releases/shop-2", &token, None);
    assert_eq!(status, 200, "{healthy}");
    assert_eq!(healthy["state"], "succeeded", "{healthy}");
    drop(demo);

    let again = vigil()
        .args(["demo", "--listen", "127.0.0.1:0", "--dir"])
        .arg(&dir.0)
        .output()
        .unwrap();
    assert!(!again.status.success());
    let complaint = String::from_utf8_lossy(&again.stderr);
    assert!(
        complaint.contains("already holds a demo's store"),
        "{complaint}"
    );
}
