//! Whole swarms in one process: peers fetch one artifact from each other and the origin; a
//! peer that lies is blocked; peers that vanish mid-transfer leave the others to finish.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use vigil_core::agent::{Announce, Manifest};
use vigil_p2p::bitfield::Bitfield;
use vigil_p2p::fetch::{fetch, Coordinator, Fetch};
use vigil_p2p::local::LocalCoordinator;
use vigil_p2p::manifest::{build_manifest, verify_manifest, ManifestKey};
use vigil_p2p::peer::{wire, Limits, PeerNode, UPLOAD_SLOTS};
use vigil_p2p::testing::{fresh_dir, pseudo_random_bytes};
use vigil_p2p::tracker::TrackerSettings;

const MB: u64 = 1_000_000;

struct Origin {
    bytes: Vec<u8>,
    manifest: Manifest,
    coordinator: Arc<LocalCoordinator>,
}

fn origin(dir: &Path, size: usize, origin_limit: Option<u64>) -> Origin {
    let bytes = pseudo_random_bytes(size, size as u64);
    let path = dir.join("artifact.bin");
    std::fs::write(&path, &bytes).unwrap();
    let key = ManifestKey::generate().unwrap();
    let manifest = build_manifest(&path, "artifact.bin", 1_700_000_000, &key).unwrap();
    verify_manifest(&manifest, &key.public_key_hex()).unwrap();
    let settings = TrackerSettings {
        announce_interval_ms: 250,
        ..TrackerSettings::default()
    };
    let coordinator = Arc::new(LocalCoordinator::new(
        manifest.clone(),
        path,
        settings,
        4,
        origin_limit,
    ));
    Origin {
        bytes,
        manifest,
        coordinator,
    }
}

async fn start_peers(dir: &Path, count: usize, limits: Limits) -> Vec<Arc<PeerNode>> {
    let mut nodes = Vec::new();
    for index in 0..count {
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let node = PeerNode::start(listen, dir.join(format!("peer-{index}")), limits)
            .await
            .unwrap();
        nodes.push(node);
    }
    nodes
}

fn request(origin: &Origin, host: String) -> Fetch {
    Fetch {
        manifest: origin.manifest.clone(),
        host,
        coordinator: Arc::clone(&origin.coordinator) as Arc<dyn Coordinator>,
        progress: None,
    }
}

fn spawn_fetches(
    origin: &Origin,
    nodes: &[Arc<PeerNode>],
) -> Vec<tokio::task::JoinHandle<Result<PathBuf, vigil_p2p::P2pError>>> {
    nodes
        .iter()
        .enumerate()
        .map(|(index, node)| {
            let node = Arc::clone(node);
            let fetch_request = request(origin, format!("host-{index}"));
            tokio::spawn(async move { fetch(&node, fetch_request).await })
        })
        .collect()
}

/// Waits `within` for a fetch, and checks that the file it returns is the origin's.
async fn identical_copy(
    origin: &Origin,
    handle: tokio::task::JoinHandle<Result<PathBuf, vigil_p2p::P2pError>>,
    within: Duration,
    who: &str,
) -> PathBuf {
    let path = tokio::time::timeout(within, handle)
        .await
        .unwrap_or_else(|_| panic!("{who} did not finish"))
        .unwrap()
        .unwrap_or_else(|error| panic!("{who}: {error}"));
    assert!(
        std::fs::read(&path).unwrap() == origin.bytes,
        "{who}'s copy differs"
    );
    path
}

/// Waits a minute for each fetch, checking each returns the origin's file.
async fn every_copy_identical(
    origin: &Origin,
    fetches: Vec<tokio::task::JoinHandle<Result<PathBuf, vigil_p2p::P2pError>>>,
) {
    for (index, handle) in fetches.into_iter().enumerate() {
        identical_copy(
            origin,
            handle,
            Duration::from_secs(60),
            &format!("peer {index}"),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_listening_on_every_interface_are_announced_at_the_address_they_advertise() {
    let dir = fresh_dir("swarm-advertised");
    let size = 2 * 1024 * 1024 + 99;
    // A slow origin: the peers' own pieces go between them.
    let origin = origin(&dir, size, Some(2 * MB));
    let every_interface: SocketAddr = "0.0.0.0:0".parse().unwrap();
    // Told nothing better, peers could not connect to 0.0.0.0: refused.
    let refused = PeerNode::start(every_interface, dir.join("unreachable"), Limits::default())
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("0.0.0.0"), "{refused}");
    let loopback = "127.0.0.1".parse().unwrap();
    let mut nodes = Vec::new();
    for index in 0..4 {
        let node = PeerNode::start_advertising(
            every_interface,
            loopback,
            dir.join(format!("peer-{index}")),
            Limits::default(),
        )
        .await
        .unwrap();
        assert_eq!(node.addr().ip(), loopback);
        assert_ne!(node.addr().port(), 0);
        nodes.push(node);
    }
    let fetches = spawn_fetches(&origin, &nodes);
    every_copy_identical(&origin, fetches).await;
    // The pieces went between peers at the advertised addresses, not all from the origin.
    let uploaded: u64 = nodes.iter().map(|node| node.uploaded_bytes()).sum();
    assert!(uploaded > 0, "no peer served a piece");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_peers_fetch_one_artifact_and_all_hold_the_identical_file() {
    let dir = fresh_dir("swarm-eight");
    let size = 8 * 1024 * 1024 + 12_345;
    let origin = origin(&dir, size, Some(8 * MB));
    let limits = Limits {
        up_bytes_per_second: Some(20 * MB),
        down_bytes_per_second: Some(20 * MB),
    };
    let nodes = start_peers(&dir, 8, limits).await;
    let fetches = spawn_fetches(&origin, &nodes);
    for (index, handle) in fetches.into_iter().enumerate() {
        let path = identical_copy(
            &origin,
            handle,
            Duration::from_secs(60),
            &format!("peer {index}"),
        )
        .await;
        assert_eq!(path, nodes[index].dir().join(&origin.manifest.sha256));
    }
    let uploaded: u64 = nodes.iter().map(|node| node.uploaded_bytes()).sum();
    let origin_bytes = origin.coordinator.origin_bytes();
    // Eight copies left the swarm, and at most each peer's last piece twice (the endgame asks
    // it of a second parent): most of them from the peers, not the origin.
    let sent = uploaded + origin_bytes;
    let piece_size = u64::from(origin.manifest.piece_size);
    assert!(
        (8 * size as u64..=8 * size as u64 + 8 * piece_size).contains(&sent),
        "the swarm sent {sent} bytes for 8 copies of {size}"
    );
    assert!(
        origin_bytes < 4 * size as u64,
        "the origin sent {origin_bytes} bytes of {} copies' worth",
        8 * size
    );
    let progress = origin
        .coordinator
        .tracker()
        .progress(&origin.manifest.sha256);
    assert_eq!(progress.len(), 8);
    assert!(progress
        .iter()
        .all(|host| host.pieces_held == origin.manifest.piece_count()));
    assert!(origin.coordinator.bad_reports().is_empty());
    for node in &nodes {
        node.shutdown();
    }
    // A peer restarted on its directory holds the whole file again and serves it.
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let restarted = PeerNode::start(listen, nodes[0].dir().to_path_buf(), Limits::default())
        .await
        .unwrap();
    let held = restarted.have(&origin.manifest.sha256).unwrap();
    assert!(held.is_complete());
    let path = fetch(&restarted, request(&origin, "host-0".to_string()))
        .await
        .unwrap();
    assert!(std::fs::read(path).unwrap() == origin.bytes);
    let _ = std::fs::remove_dir_all(&dir);
}

/// How a fake peer answers a request for a piece: a status and the bytes, or never (the
/// connection is kept open and not read again).
type FakeAnswer = Box<dyn Fn(u32) -> Option<(u8, Vec<u8>)> + Send + Sync>;

/// A peer that claims every piece, announces itself to the tracker as `host`, and answers each
/// request as `answer` says. Counts the requests it got.
async fn start_fake_peer(origin: &Origin, host: &str, answer: FakeAnswer) -> Arc<AtomicU32> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let pieces = origin.manifest.piece_count();
    origin
        .coordinator
        .announce(
            &origin.manifest.sha256,
            &Announce {
                host: host.to_string(),
                addr: addr.to_string(),
                have: Bitfield::full(pieces).to_hex(),
                bad_peers: Vec::new(),
            },
        )
        .unwrap();
    let asked = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&asked);
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            let answer = Arc::clone(&answer);
            tokio::spawn(async move {
                let full = Bitfield::full(pieces);
                while let Ok(Some(request)) = wire::read_request(&mut stream).await {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let Some((status, piece)) = answer(request.index) else {
                        std::future::pending::<()>().await;
                        return;
                    };
                    let written = wire::write_response(
                        &mut stream,
                        status,
                        Some(full.as_bytes()),
                        &piece,
                        None,
                    )
                    .await;
                    if written.is_err() {
                        return;
                    }
                }
            });
        }
    });
    asked
}

/// Answers each request with the right piece, one byte flipped.
fn lying(origin: &Origin) -> FakeAnswer {
    let bytes = origin.bytes.clone();
    let manifest = origin.manifest.clone();
    Box::new(move |index| {
        let start = index as usize * manifest.piece_size as usize;
        let length = manifest.piece_len(index).unwrap() as usize;
        let mut piece = bytes[start..start + length].to_vec();
        piece[length / 2] ^= 0x40;
        Some((wire::PIECE, piece))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_serving_corrupted_pieces_is_blocked_and_no_bad_piece_is_committed_anywhere() {
    let dir = fresh_dir("swarm-liar");
    let size = 6 * 1024 * 1024;
    let origin = origin(&dir, size, Some(6 * MB));
    let liar_answers = start_fake_peer(&origin, "liar", lying(&origin)).await;
    let limits = Limits {
        up_bytes_per_second: Some(20 * MB),
        down_bytes_per_second: Some(20 * MB),
    };
    let nodes = start_peers(&dir, 6, limits).await;
    let fetches = spawn_fetches(&origin, &nodes);

    // While the transfer runs, every piece any honest peer serves is the origin's.
    let watched_nodes = nodes.clone();
    let watched_bytes = origin.bytes.clone();
    let watched_manifest = origin.manifest.clone();
    let watcher = tokio::spawn(async move {
        let mut checks = 0u32;
        for _ in 0..400 {
            for node in &watched_nodes {
                let Some(have) = node.have(&watched_manifest.sha256) else {
                    continue;
                };
                let Some(index) = (0..have.len()).rev().find(|index| have.has(*index)) else {
                    continue;
                };
                let piece = ask_piece(node.addr(), &watched_manifest.sha256, index).await;
                let start = index as usize * watched_manifest.piece_size as usize;
                let expected = &watched_bytes[start..start + piece.len()];
                assert!(
                    piece == expected,
                    "an honest peer served a bad piece {index}"
                );
                checks += 1;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        checks
    });

    every_copy_identical(&origin, fetches).await;
    let checks = watcher.await.unwrap();
    assert!(checks > 0);

    // Each peer asked the liar once at most, got a bad piece, blocked and reported it.
    let answers = liar_answers.load(Ordering::SeqCst);
    assert!(answers >= 1, "nobody asked the liar");
    assert!(
        answers <= 6,
        "the liar was asked {answers} times by 6 peers"
    );
    let reports = origin.coordinator.bad_reports();
    assert!(!reports.is_empty());
    assert!(reports.iter().all(|(_, bad)| bad == "liar"), "{reports:?}");
    assert!(origin
        .coordinator
        .tracker()
        .is_blocked(&origin.manifest.sha256, "liar"));
    // The tracker hands the liar to no one any more.
    let late = Announce {
        host: "late".to_string(),
        addr: "127.0.0.1:9".to_string(),
        have: Bitfield::new(origin.manifest.piece_count()).to_hex(),
        bad_peers: Vec::new(),
    };
    let swarm = origin
        .coordinator
        .announce(&origin.manifest.sha256, &late)
        .unwrap();
    assert!(swarm.peers.iter().all(|peer| peer.host != "liar"));
    assert!(!swarm.peers.is_empty());
    for node in &nodes {
        node.shutdown();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Piece `index` from the peer at `addr`, asked again while the peer answers busy.
async fn ask_piece(addr: SocketAddr, artifact: &str, index: u32) -> Vec<u8> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = wire::Request {
        artifact: artifact.to_string(),
        index,
    };
    loop {
        wire::write_request(&mut stream, &request).await.unwrap();
        let response = wire::read_response(&mut stream, 16 << 20, None)
            .await
            .unwrap();
        if response.status == wire::BUSY {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        assert_eq!(response.status, wire::PIECE);
        return response.piece;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_piece_asked_of_a_stalled_parent_is_asked_of_another() {
    let dir = fresh_dir("swarm-endgame");
    let size = 2 * 1024 * 1024;
    let origin = origin(&dir, size, None);
    let seed = start_peers(&dir, 1, Limits::default()).await.remove(0);
    fetch(&seed, request(&origin, "seed".to_string()))
        .await
        .unwrap();
    let staller_asked = start_fake_peer(&origin, "staller", Box::new(|_| None)).await;
    let fetcher = start_peers(&dir.join("fetcher"), 1, Limits::default())
        .await
        .remove(0);
    let started = tokio::time::Instant::now();
    let path = fetch(&fetcher, request(&origin, "fetcher".to_string()))
        .await
        .unwrap();
    assert!(std::fs::read(path).unwrap() == origin.bytes);
    assert!(
        staller_asked.load(Ordering::SeqCst) >= 1,
        "the staller was never asked"
    );
    // The staller never answers: without the endgame the fetch would wait for the read
    // timeout (5 s) on the piece it holds back.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the fetch waited {:?} on a stalled parent",
        started.elapsed()
    );
    seed.shutdown();
    fetcher.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_every_upload_slot_taken_answers_busy_and_askers_go_elsewhere() {
    let dir = fresh_dir("swarm-busy");
    let size = 2 * 1024 * 1024;
    let origin = origin(&dir, size, None);
    let artifact = origin.manifest.sha256.clone();
    // A fetcher handed only a peer that claims every piece and is always busy turns to the
    // origin, and reports no one.
    start_fake_peer(
        &origin,
        "always-busy",
        Box::new(|_| Some((wire::BUSY, Vec::new()))),
    )
    .await;
    let fetcher = start_peers(&dir.join("fetcher"), 1, Limits::default())
        .await
        .remove(0);
    let path = tokio::time::timeout(
        Duration::from_secs(30),
        fetch(&fetcher, request(&origin, "fetcher".to_string())),
    )
    .await
    .expect("the fetch finished")
    .unwrap();
    assert!(std::fs::read(path).unwrap() == origin.bytes);
    assert!(origin.coordinator.bad_reports().is_empty());
    fetcher.shutdown();
    // A seed whose upload is slow enough that its slots stay taken for a while.
    let seed_limits = Limits {
        up_bytes_per_second: Some(MB / 2),
        down_bytes_per_second: None,
    };
    let seed = start_peers(&dir, 1, seed_limits).await.remove(0);
    fetch(&seed, request(&origin, "seed".to_string()))
        .await
        .unwrap();
    let mut takers = Vec::new();
    for index in 0..UPLOAD_SLOTS as u32 {
        let mut stream = tokio::net::TcpStream::connect(seed.addr()).await.unwrap();
        let request = wire::Request {
            artifact: artifact.clone(),
            index,
        };
        wire::write_request(&mut stream, &request).await.unwrap();
        takers.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut late = tokio::net::TcpStream::connect(seed.addr()).await.unwrap();
    let late_request = wire::Request {
        artifact: artifact.clone(),
        index: 5,
    };
    wire::write_request(&mut late, &late_request).await.unwrap();
    let refused = tokio::time::timeout(
        Duration::from_millis(500),
        wire::read_response(&mut late, 16 << 20, None),
    )
    .await
    .expect("a busy answer comes at once")
    .unwrap();
    assert_eq!(refused.status, wire::BUSY);
    assert!(refused.piece.is_empty());
    // The answer still tells what the peer holds.
    let have = Bitfield::from_bytes(&refused.have, origin.manifest.piece_count()).unwrap();
    assert!(have.is_complete());
    for mut taker in takers {
        let answer = wire::read_response(&mut taker, 16 << 20, None)
            .await
            .unwrap();
        assert_eq!(answer.status, wire::PIECE);
    }
    // A freed slot serves again.
    wire::write_request(&mut late, &late_request).await.unwrap();
    let served = wire::read_response(&mut late, 16 << 20, None)
        .await
        .unwrap();
    assert_eq!(served.status, wire::PIECE);
    let start = 5 * origin.manifest.piece_size as usize;
    assert!(served.piece == origin.bytes[start..start + served.piece.len()]);

    seed.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_quarter_of_the_peers_mid_transfer_still_completes_every_survivor() {
    let dir = fresh_dir("swarm-kill");
    let size = 12 * 1024 * 1024;
    let origin = origin(&dir, size, Some(4 * MB));
    let limits = Limits {
        up_bytes_per_second: Some(6 * MB),
        down_bytes_per_second: Some(6 * MB),
    };
    let nodes = start_peers(&dir, 12, limits).await;
    let fetches = spawn_fetches(&origin, &nodes);
    let pieces = origin.manifest.piece_count();
    // Mid-transfer: the swarm holds a third of its pieces, and the doomed peers serve.
    let doomed = [1usize, 5, 9];
    loop {
        let held: u32 = nodes
            .iter()
            .filter_map(|node| node.have(&origin.manifest.sha256))
            .map(|have| have.count())
            .sum();
        if held >= 12 * pieces / 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let uploaded_before: u64 = doomed
        .iter()
        .map(|index| nodes[*index].uploaded_bytes())
        .sum();
    assert!(
        uploaded_before > 0,
        "the doomed peers served nothing before the kill"
    );
    for index in doomed {
        nodes[index].shutdown();
        fetches[index].abort();
    }
    for (index, handle) in fetches.into_iter().enumerate() {
        if doomed.contains(&index) {
            continue;
        }
        identical_copy(
            &origin,
            handle,
            Duration::from_secs(90),
            &format!("survivor {index}"),
        )
        .await;
    }
    for index in doomed {
        let have = nodes[index].have(&origin.manifest.sha256).unwrap();
        assert!(
            !have.is_complete(),
            "peer {index} was killed after it finished"
        );
    }
    for node in &nodes {
        node.shutdown();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
