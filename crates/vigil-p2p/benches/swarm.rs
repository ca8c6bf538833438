//! Tier 1 of the distribution benchmark: 16 peers in one process, each limited to 10 MB/s up
//! and down by token buckets, the origin limited to 10 MB/s too, fetch a 64 MiB artifact.
//! Prints the time until the last verified copy against the fluid lower bound
//! max(S/B_origin, S/d, N·S/(B_origin + Σu)), and the origin's egress over S, for three runs
//! and their median. `cargo bench -p vigil-p2p --bench swarm`
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use vigil_p2p::fetch::{fetch, Coordinator, Fetch};
use vigil_p2p::local::LocalCoordinator;
use vigil_p2p::manifest::{build_manifest, ManifestKey};
use vigil_p2p::peer::{Limits, PeerNode};
use vigil_p2p::testing::{fresh_dir, pseudo_random_bytes};
use vigil_p2p::tracker::TrackerSettings;

const PEERS: usize = 16;
const SIZE: usize = 64 * 1024 * 1024;
const RATE: u64 = 10_000_000;
const ORIGIN_RATE: u64 = 10_000_000;
const ORIGIN_READERS: usize = 4;
const RUNS: usize = 3;

struct Figures {
    last_seconds: f64,
    first_seconds: f64,
    origin_egress: f64,
}

async fn run_once(run: usize) -> Figures {
    let dir = fresh_dir(&format!("bench-{run}"));
    let path = dir.join("artifact.bin");
    let bytes = pseudo_random_bytes(SIZE, run as u64 + 7);
    std::fs::write(&path, &bytes).unwrap();
    drop(bytes);
    let key = ManifestKey::generate().unwrap();
    let manifest = build_manifest(&path, "artifact.bin", 0, &key).unwrap();
    // As the server's.
    let settings = TrackerSettings::default();
    let coordinator = Arc::new(LocalCoordinator::new(
        manifest.clone(),
        path,
        settings,
        ORIGIN_READERS,
        Some(ORIGIN_RATE),
    ));
    let limits = Limits {
        up_bytes_per_second: Some(RATE),
        down_bytes_per_second: Some(RATE),
    };
    let mut nodes = Vec::new();
    for index in 0..PEERS {
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        nodes.push(
            PeerNode::start(listen, dir.join(format!("peer-{index}")), limits)
                .await
                .unwrap(),
        );
    }
    let started = Instant::now();
    let mut handles = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        let node = Arc::clone(node);
        let request = Fetch {
            manifest: manifest.clone(),
            host: format!("host-{index}"),
            coordinator: Arc::clone(&coordinator) as Arc<dyn Coordinator>,
            progress: None,
        };
        handles.push(tokio::spawn(async move {
            let path = fetch(&node, request).await;
            (path, started.elapsed().as_secs_f64())
        }));
    }
    let mut finishes = Vec::new();
    for handle in handles {
        let (path, seconds) = handle.await.unwrap();
        path.unwrap();
        finishes.push(seconds);
    }
    for node in &nodes {
        node.shutdown();
    }
    let _ = std::fs::remove_dir_all(&dir);
    finishes.sort_by(f64::total_cmp);
    Figures {
        last_seconds: finishes[finishes.len() - 1],
        first_seconds: finishes[0],
        origin_egress: coordinator.origin_bytes() as f64 / SIZE as f64,
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let size = SIZE as f64;
    let bound = (size / ORIGIN_RATE as f64)
        .max(size / RATE as f64)
        .max(PEERS as f64 * size / (ORIGIN_RATE as f64 + PEERS as f64 * RATE as f64));
    println!(
        "tier 1: {PEERS} peers in one process, {} MiB artifact, every peer {} MB/s up and down, origin {} MB/s with {ORIGIN_READERS} readers (token buckets)",
        SIZE >> 20,
        RATE / 1_000_000,
        ORIGIN_RATE / 1_000_000
    );
    println!("fluid lower bound max(S/B_origin, S/d, N*S/(B_origin + sum u)) = {bound:.2} s");
    let mut runs = Vec::new();
    for run in 0..RUNS {
        let figures = runtime.block_on(run_once(run));
        println!(
            "run {}: first verified copy {:.2} s, last verified copy {:.2} s, ratio {:.2} (goal <= 1.5), origin egress {:.2} x S (goal <= 1.5)",
            run + 1,
            figures.first_seconds,
            figures.last_seconds,
            figures.last_seconds / bound,
            figures.origin_egress
        );
        runs.push(figures);
    }
    runs.sort_by(|a, b| a.last_seconds.total_cmp(&b.last_seconds));
    let median = &runs[RUNS / 2];
    println!(
        "median of {RUNS}: last verified copy {:.2} s, ratio {:.2} (goal <= 1.5), origin egress {:.2} x S (goal <= 1.5)",
        median.last_seconds,
        median.last_seconds / bound,
        median.origin_egress
    );
}
