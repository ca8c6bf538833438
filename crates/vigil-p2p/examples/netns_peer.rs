//! One process of the tier-2 distribution benchmark (`examples/netns_bench.sh`), which runs each
//! in a network namespace of its own, the links rate-limited by `tc`:
//!
//! - `netns_peer origin LISTEN FILE MANIFEST_OUT`: cuts FILE into pieces, writes its manifest,
//!   and serves the tracker and the origin over TCP on LISTEN until killed;
//! - `netns_peer peer COORDINATOR LISTEN HOST MANIFEST DIR START_AT`: listens, waits for
//!   START_AT (Unix seconds, so that every peer starts at once however long launching them
//!   took), fetches the artifact from the swarm and the origin, prints the seconds it took,
//!   and keeps serving for a grace time;
//! - `netns_peer egress COORDINATOR`: prints the origin's egress in bytes.
//!
//! The coordinator's protocol: a JSON request on one line; the answer a status byte (0 ok,
//! 1 busy, 2 error), a u32 length and that many bytes (JSON, or a piece).
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use vigil_core::agent::{Announce, Manifest, Swarm};
use vigil_p2p::fetch::{fetch, Coordinator, Fetch};
use vigil_p2p::local::LocalCoordinator;
use vigil_p2p::manifest::{build_manifest, ManifestKey};
use vigil_p2p::peer::{Limits, PeerNode};
use vigil_p2p::tracker::TrackerSettings;
use vigil_p2p::P2pError;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Request {
    Announce {
        artifact: String,
        announce: Announce,
    },
    Piece {
        artifact: String,
        index: u32,
    },
    Egress,
}

const OK: u8 = 0;
const BUSY: u8 = 1;
const FAILED: u8 = 2;

fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    // One worker each: 33 of these processes share the machine's cores.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let outcome = match arguments.first().map(String::as_str) {
        Some("origin") if arguments.len() == 4 => runtime.block_on(origin(&arguments[1..])),
        Some("peer") if arguments.len() == 7 => runtime.block_on(peer(&arguments[1..])),
        Some("egress") if arguments.len() == 2 => egress(&arguments[1]),
        _ => Err("usage: netns_peer origin LISTEN FILE MANIFEST_OUT | peer COORDINATOR LISTEN HOST MANIFEST DIR START_AT | egress COORDINATOR".to_string()),
    };
    if let Err(error) = outcome {
        eprintln!("netns_peer: {error}");
        std::process::exit(1);
    }
}

async fn origin(arguments: &[String]) -> Result<(), String> {
    let listen: SocketAddr = arguments[0].parse().map_err(|_| "listen: not ip:port")?;
    let file = PathBuf::from(&arguments[1]);
    let key = ManifestKey::generate().map_err(|error| error.to_string())?;
    let manifest =
        build_manifest(&file, "artifact.bin", 0, &key).map_err(|error| error.to_string())?;
    let manifest_json = serde_json::to_vec(&manifest).map_err(|error| error.to_string())?;
    std::fs::write(&arguments[2], manifest_json).map_err(|error| error.to_string())?;
    let coordinator = Arc::new(LocalCoordinator::new(
        manifest,
        file,
        // As the server's.
        TrackerSettings::default(),
        4,
        None,
    ));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| error.to_string())?;
    println!("origin listening on {listen}");
    // The origin's egress each second, to see whether it is kept busy.
    let watched = Arc::clone(&coordinator);
    tokio::spawn(async move {
        let started = Instant::now();
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        loop {
            ticks.tick().await;
            println!(
                "egress {:.1} s {} bytes",
                started.elapsed().as_secs_f64(),
                watched.origin_bytes()
            );
        }
    });
    loop {
        let (stream, _) = listener.accept().await.map_err(|error| error.to_string())?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve(stream, Arc::clone(&coordinator)));
    }
}

async fn serve(stream: tokio::net::TcpStream, coordinator: Arc<LocalCoordinator>) {
    let (reader, mut writer) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(reader).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(request) = serde_json::from_str::<Request>(&line) else {
            return;
        };
        let serving = Arc::clone(&coordinator);
        let answered = tokio::task::spawn_blocking(move || answer(&serving, request)).await;
        let (status, body) = answered.unwrap_or((FAILED, b"task failed".to_vec()));
        let mut head = vec![status];
        head.extend_from_slice(&(body.len() as u32).to_be_bytes());
        if writer.write_all(&head).await.is_err() || writer.write_all(&body).await.is_err() {
            return;
        }
    }
}

fn answer(coordinator: &LocalCoordinator, request: Request) -> (u8, Vec<u8>) {
    match request {
        Request::Announce { artifact, announce } => {
            match coordinator.announce(&artifact, &announce) {
                Ok(swarm) => (OK, serde_json::to_vec(&swarm).unwrap_or_default()),
                Err(error) => (FAILED, error.to_string().into_bytes()),
            }
        }
        Request::Piece { artifact, index } => match coordinator.origin_piece(&artifact, index) {
            Ok(Some(bytes)) => (OK, bytes),
            Ok(None) => (BUSY, Vec::new()),
            Err(error) => (FAILED, error.to_string().into_bytes()),
        },
        Request::Egress => (OK, coordinator.origin_bytes().to_string().into_bytes()),
    }
}

/// The coordinator over TCP: announces on one connection and origin pieces on another, each
/// one call at a time (as an agent's HTTP client does not hold an announce behind a piece).
struct TcpCoordinator {
    addr: SocketAddr,
    announces: Mutex<Option<TcpStream>>,
    pieces: Mutex<Option<TcpStream>>,
}

impl TcpCoordinator {
    fn call(&self, request: &Request) -> Result<(u8, Vec<u8>), P2pError> {
        let connection = match request {
            Request::Piece { .. } => &self.pieces,
            _ => &self.announces,
        };
        let mut held = connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if held.is_none() {
            let stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(3))?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(Duration::from_secs(30)))?;
            *held = Some(stream);
        }
        let Some(stream) = held.as_mut() else {
            return Err(P2pError::Coordinator("no connection".to_string()));
        };
        let outcome = exchange(stream, request);
        if outcome.is_err() {
            *held = None;
        }
        outcome
    }
}

fn exchange(stream: &mut TcpStream, request: &Request) -> Result<(u8, Vec<u8>), P2pError> {
    let mut line =
        serde_json::to_vec(request).map_err(|error| P2pError::Coordinator(error.to_string()))?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut head = [0u8; 5];
    stream.read_exact(&mut head)?;
    let length = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body)?;
    Ok((head[0], body))
}

impl Coordinator for TcpCoordinator {
    fn announce(&self, artifact: &str, announce: &Announce) -> Result<Swarm, P2pError> {
        let request = Request::Announce {
            artifact: artifact.to_string(),
            announce: announce.clone(),
        };
        match self.call(&request)? {
            (OK, body) => serde_json::from_slice(&body)
                .map_err(|error| P2pError::Coordinator(error.to_string())),
            (_, body) => Err(P2pError::Coordinator(
                String::from_utf8_lossy(&body).to_string(),
            )),
        }
    }

    fn origin_piece(&self, artifact: &str, index: u32) -> Result<Option<Vec<u8>>, P2pError> {
        let request = Request::Piece {
            artifact: artifact.to_string(),
            index,
        };
        match self.call(&request)? {
            (OK, body) => Ok(Some(body)),
            (BUSY, _) => Ok(None),
            (_, body) => Err(P2pError::Coordinator(
                String::from_utf8_lossy(&body).to_string(),
            )),
        }
    }
}

async fn peer(arguments: &[String]) -> Result<(), String> {
    let coordinator_addr: SocketAddr = arguments[0]
        .parse()
        .map_err(|_| "coordinator: not ip:port")?;
    let listen: SocketAddr = arguments[1].parse().map_err(|_| "listen: not ip:port")?;
    let host = arguments[2].clone();
    let manifest_json = std::fs::read(&arguments[3]).map_err(|error| error.to_string())?;
    let manifest: Manifest =
        serde_json::from_slice(&manifest_json).map_err(|error| error.to_string())?;
    let dir = PathBuf::from(&arguments[4]);
    let start_at: f64 = arguments[5]
        .parse()
        .map_err(|_| "start_at: not unix seconds")?;
    let node = PeerNode::start(listen, dir, Limits::default())
        .await
        .map_err(|error| error.to_string())?;
    let now = unix_seconds();
    if start_at > now {
        tokio::time::sleep(Duration::from_secs_f64(start_at - now)).await;
    }
    let started = Instant::now();
    let request = Fetch {
        manifest,
        host: host.clone(),
        coordinator: Arc::new(TcpCoordinator {
            addr: coordinator_addr,
            announces: Mutex::new(None),
            pieces: Mutex::new(None),
        }),
        progress: None,
    };
    // Pieces held and MiB uploaded each second, to see whether every link is kept busy.
    let watched = Arc::clone(&node);
    let artifact = request.manifest.sha256.clone();
    let timeline = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        loop {
            ticks.tick().await;
            let held = watched.have(&artifact).map_or(0, |have| have.count());
            println!(
                "progress {:.0} s {held} pieces {} MiB up",
                started.elapsed().as_secs_f64(),
                watched.uploaded_bytes() >> 20
            );
        }
    });
    let path = fetch(&node, request)
        .await
        .map_err(|error| error.to_string())?;
    let finished_at = unix_seconds();
    println!(
        "{host} verified {} in {:.2} s, at {finished_at:.3}",
        path.display(),
        started.elapsed().as_secs_f64()
    );
    // Keep serving the others a while.
    tokio::time::sleep(Duration::from_secs(30)).await;
    timeline.abort();
    node.shutdown();
    Ok(())
}

fn egress(coordinator: &str) -> Result<(), String> {
    let addr: SocketAddr = coordinator
        .parse()
        .map_err(|_| "coordinator: not ip:port")?;
    let mut stream = TcpStream::connect(addr).map_err(|error| error.to_string())?;
    let (_, body) = exchange(&mut stream, &Request::Egress).map_err(|error| error.to_string())?;
    println!("{}", String::from_utf8_lossy(&body));
    Ok(())
}

fn unix_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_secs_f64())
        .unwrap_or_default()
}
