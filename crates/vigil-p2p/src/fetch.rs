//! Fetching an artifact: announce to the tracker, fetch the rarest missing pieces from a few
//! peers, verify each, and fall back to the origin.
//!
//! Every byte of the file lies in exactly one piece and every piece is checked against its
//! BLAKE3 digest in the signed manifest before it is written, so a file whose pieces all
//! passed is the file the server signed: the whole file is not read again.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;
use vigil_core::agent::{Announce, ArtifactProgress, Manifest, Swarm};

use crate::bitfield::Bitfield;
use crate::limit::take;
use crate::manifest::verify_piece;
use crate::peer::{manifest_path, part_path, whole_path, wire, write_file_atomically, PeerNode};
use crate::P2pError;

/// The server's side of a fetch, as the fetching peer reaches it (over HTTP for an agent,
/// in-process in the benchmark). Blocking calls: [`fetch`] makes them off the async workers.
pub trait Coordinator: Send + Sync + 'static {
    fn announce(&self, artifact: &str, announce: &Announce) -> Result<Swarm, P2pError>;
    /// Piece `index` from the origin; None when the origin is busy.
    fn origin_piece(&self, artifact: &str, index: u32) -> Result<Option<Vec<u8>>, P2pError>;
}

/// What to fetch and whom to ask.
pub struct Fetch {
    /// Already checked against the server's key ([`crate::manifest::verify_manifest`]).
    pub manifest: Manifest,
    /// This peer's host name, as it announces itself.
    pub host: String,
    pub coordinator: Arc<dyn Coordinator>,
    /// Called as pieces arrive.
    pub progress: Option<Arc<dyn Fn(ArtifactProgress) + Send + Sync>>,
}

impl std::fmt::Debug for Fetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetch")
            .field("artifact", &self.manifest.sha256)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// Peers asked at once (the parents), one piece each at a time.
pub const PARENTS: usize = 8;
/// A connection to a peer that takes longer is given up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A peer's answer that stalls this long between two reads is given up.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A fetch that gains no piece for this long fails.
const STALL_TIMEOUT: Duration = Duration::from_secs(300);
/// After the origin said it is busy, ask again after about this long.
const ORIGIN_BUSY_WAIT: Duration = Duration::from_millis(100);
const ORIGIN_ERROR_WAIT: Duration = Duration::from_secs(1);
/// The tracker's interval is kept within these bounds.
const MIN_ANNOUNCE: Duration = Duration::from_millis(100);
const MAX_ANNOUNCE: Duration = Duration::from_secs(30);
/// Once this few pieces are missing (a hundredth of the artifact, at least one, at most this),
/// a piece already asked of one parent may be asked of another.
pub const ENDGAME_PIECES: u32 = 8;
/// When no peer sent a piece for this long, the origin serves any wanted piece, even one some
/// peer claims (peers that are always busy, or slow, never starve a fetch).
const PEERS_STARVED_AFTER: Duration = Duration::from_secs(2);
/// A peer that answered busy is asked again after about this long.
const PEER_BUSY_WAIT: Duration = Duration::from_millis(40);
/// A peer that failed this many times in a row is dropped until the tracker hands it out again.
const MAX_PEER_FAILURES: u32 = 3;
/// The scheduler looks again at least this often.
const TICK: Duration = Duration::from_millis(50);

/// Fetches the artifact into `node`'s directory and returns the path of the whole, verified
/// file; the pieces are served to other peers as they arrive.
pub async fn fetch(node: &Arc<PeerNode>, request: Fetch) -> Result<PathBuf, P2pError> {
    let artifact = request.manifest.sha256.clone();
    let pieces = request.manifest.piece_count();
    let dir = node.dir().to_path_buf();
    if let Some(held) = node.held(&artifact) {
        if held.verified && held.have.is_complete() {
            report(&request, held.have.count(), true);
            announce_once(node, &request, &held.have, &[]).await;
            return Ok(held.path);
        }
    }
    let data_path = prepare_files(&dir, &request.manifest).await?;
    let held = node.hold(&request.manifest, data_path.clone());
    tracing::debug!(
        artifact = %artifact,
        host = %request.host,
        pieces,
        pieces_held = held.have.count(),
        "artifact fetch started"
    );
    let file = Arc::new(std::fs::OpenOptions::new().write(true).open(&held.path)?);
    let mut run = Run::new(Arc::clone(node), request, held.have, file);
    let outcome = run.until_complete().await;
    run.tasks.abort_all();
    outcome?;
    let whole = whole_path(&dir, &artifact);
    let written = run.file.metadata()?.len();
    if written != run.request.manifest.size {
        tracing::warn!(artifact = %artifact, host = %run.request.host, written, "artifact file has the wrong length");
        node.forget(&artifact);
        return Err(P2pError::BadFile);
    }
    if held.path != whole {
        std::fs::rename(&held.path, &whole)?;
    }
    node.complete(&artifact, whole.clone());
    report(&run.request, pieces, true);
    announce_once(node, &run.request, &run.have, &run.bad_reports).await;
    tracing::info!(
        artifact = %artifact,
        host = %run.request.host,
        pieces,
        from_origin = run.from_origin,
        from_peers = run.from_peers,
        bad_pieces = run.bad_pieces,
        "artifact fetched"
    );
    Ok(whole)
}

/// Writes the manifest beside the data file and makes the data file its full length; the
/// path of the data file.
async fn prepare_files(dir: &Path, manifest: &Manifest) -> Result<PathBuf, P2pError> {
    let artifact = &manifest.sha256;
    let manifest_bytes =
        serde_json::to_vec(manifest).map_err(|error| P2pError::Manifest(error.to_string()))?;
    write_file_atomically(manifest_path(dir, artifact), manifest_bytes).await?;
    let part = part_path(dir, artifact);
    let whole = whole_path(dir, artifact);
    let size = manifest.size;
    let data_path = tokio::task::spawn_blocking(move || -> std::io::Result<PathBuf> {
        if whole.exists() {
            return Ok(whole);
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&part)?;
        if file.metadata()?.len() != size {
            file.set_len(size)?;
        }
        Ok(part)
    })
    .await
    .map_err(|error| P2pError::Io(std::io::Error::other(error)))??;
    Ok(data_path)
}

fn report(request: &Fetch, pieces_held: u32, verified: bool) {
    if let Some(progress) = &request.progress {
        progress(ArtifactProgress {
            artifact: request.manifest.sha256.clone(),
            pieces_held,
            pieces: request.manifest.piece_count(),
            verified,
        });
    }
}

async fn announce_once(node: &PeerNode, request: &Fetch, have: &Bitfield, bad: &[String]) {
    let coordinator = Arc::clone(&request.coordinator);
    let artifact = request.manifest.sha256.clone();
    let announce = announce_of(node, &request.host, have, bad);
    let answered =
        tokio::task::spawn_blocking(move || coordinator.announce(&artifact, &announce)).await;
    if let Ok(Err(error)) = answered {
        tracing::warn!(artifact = %request.manifest.sha256, error = %error, "artifact announce failed");
    }
}

fn announce_of(node: &PeerNode, host: &str, have: &Bitfield, bad: &[String]) -> Announce {
    Announce {
        host: host.to_string(),
        addr: node.addr().to_string(),
        have: have.to_hex(),
        bad_peers: bad.to_vec(),
    }
}

/// A peer this fetch may ask.
#[derive(Debug)]
struct Parent {
    addr: SocketAddr,
    have: Bitfield,
    busy: bool,
    /// It answered busy: not asked again before this.
    rest_until: Option<Instant>,
    /// An open connection, kept between requests.
    connection: Option<TcpStream>,
}

/// What a finished task brings back to the scheduler.
enum Outcome {
    Peer {
        host: String,
        index: u32,
        result: Result<PeerAnswer, std::io::Error>,
    },
    Origin {
        index: u32,
        result: Result<Option<Vec<u8>>, P2pError>,
    },
    Announce(Result<Swarm, P2pError>),
}

struct PeerAnswer {
    response: wire::Response,
    connection: TcpStream,
}

struct Run {
    node: Arc<PeerNode>,
    request: Fetch,
    file: Arc<std::fs::File>,
    have: Bitfield,
    /// Requests out per piece, to a peer or the origin (two at most: the endgame's second).
    requests_out: Vec<u8>,
    parents: HashMap<String, Parent>,
    /// How many of `parents` hold each piece, kept as their bitfields change.
    holders: Vec<u32>,
    /// Consecutive failures per peer, kept when a peer is dropped and handed out again.
    failures: HashMap<String, (u32, Instant)>,
    blocked: BTreeSet<String>,
    bad_reports: Vec<String>,
    tasks: JoinSet<Outcome>,
    origin_busy: bool,
    origin_next: Instant,
    announcing: bool,
    announce_next: Instant,
    announce_interval: Duration,
    last_gain: Instant,
    last_peer_gain: Instant,
    random: u64,
    from_origin: u32,
    from_peers: u32,
    bad_pieces: u32,
}

impl Run {
    fn new(node: Arc<PeerNode>, request: Fetch, have: Bitfield, file: Arc<std::fs::File>) -> Run {
        let now = Instant::now();
        let seed = request
            .host
            .bytes()
            .fold(0x9e37_79b9_7f4a_7c15u64, |state, byte| {
                (state ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
            })
            ^ u64::from(node.addr().port());
        let pieces = have.len();
        Run {
            node,
            request,
            file,
            have,
            requests_out: vec![0; pieces as usize],
            parents: HashMap::new(),
            holders: vec![0; pieces as usize],
            failures: HashMap::new(),
            blocked: BTreeSet::new(),
            bad_reports: Vec::new(),
            tasks: JoinSet::new(),
            origin_busy: false,
            origin_next: now,
            announcing: false,
            announce_next: now,
            announce_interval: Duration::from_secs(1),
            last_gain: now,
            last_peer_gain: now,
            random: seed | 1,
            from_origin: 0,
            from_peers: 0,
            bad_pieces: 0,
        }
    }

    fn artifact(&self) -> &str {
        &self.request.manifest.sha256
    }

    fn next_random(&mut self) -> u64 {
        xorshift(&mut self.random)
    }

    async fn until_complete(&mut self) -> Result<(), P2pError> {
        let mut stopped = self.node.stopped_signal();
        loop {
            if *stopped.borrow() {
                return Err(P2pError::Coordinator("the peer was shut down".to_string()));
            }
            if self.have.is_complete() {
                return Ok(());
            }
            let now = Instant::now();
            if now.saturating_duration_since(self.last_gain) > STALL_TIMEOUT {
                return Err(P2pError::Coordinator(format!(
                    "no peer nor the origin sent a piece for {} s",
                    STALL_TIMEOUT.as_secs()
                )));
            }
            if !self.announcing && now >= self.announce_next {
                self.start_announce();
            }
            self.schedule_peers(now);
            self.schedule_origin(now);
            let outcome = tokio::select! {
                joined = self.tasks.join_next(), if !self.tasks.is_empty() => joined,
                _ = tokio::time::sleep(TICK) => None,
                _ = stopped.changed() => None,
            };
            if let Some(Ok(outcome)) = outcome {
                self.handle(outcome).await?;
            }
        }
    }

    fn start_announce(&mut self) {
        self.announcing = true;
        let coordinator = Arc::clone(&self.request.coordinator);
        let artifact = self.artifact().to_string();
        let announce = announce_of(
            &self.node,
            &self.request.host,
            &self.have,
            &self.bad_reports,
        );
        self.tasks.spawn(async move {
            let answered =
                tokio::task::spawn_blocking(move || coordinator.announce(&artifact, &announce))
                    .await;
            Outcome::Announce(answered.unwrap_or_else(|error| {
                Err(P2pError::Coordinator(format!(
                    "announce task failed: {error}"
                )))
            }))
        });
    }

    /// Whether `host` may be asked now (not blocked, not waiting after a failure).
    fn usable(&self, host: &str, now: Instant) -> bool {
        if self.blocked.contains(host) {
            return false;
        }
        match self.failures.get(host) {
            Some((_, retry_at)) => now >= *retry_at,
            None => true,
        }
    }

    fn wanted(&self, index: u32) -> bool {
        !self.have.has(index) && self.requests_out[index as usize] == 0
    }

    fn request_sent(&mut self, index: u32) {
        self.requests_out[index as usize] += 1;
    }

    fn request_answered(&mut self, index: u32) {
        let out = &mut self.requests_out[index as usize];
        *out = out.saturating_sub(1);
    }

    /// Records what `host` holds now (a new parent when it was not one), keeping `holders`.
    fn set_parent_have(&mut self, host: &str, addr: SocketAddr, have: Bitfield) {
        let Some(parent) = self.parents.get_mut(host) else {
            add_holdings(&mut self.holders, &have, 1);
            self.parents.insert(
                host.to_string(),
                Parent {
                    addr,
                    have,
                    busy: false,
                    rest_until: None,
                    connection: None,
                },
            );
            return;
        };
        if parent.addr != addr {
            parent.addr = addr;
            parent.connection = None;
        }
        add_holdings(&mut self.holders, &parent.have, -1);
        add_holdings(&mut self.holders, &have, 1);
        parent.have = have;
    }

    fn remove_parent(&mut self, host: &str) {
        if let Some(parent) = self.parents.remove(host) {
            add_holdings(&mut self.holders, &parent.have, -1);
        }
    }

    /// Asks idle parents for the rarest wanted pieces they hold, up to [`PARENTS`] requests
    /// at once, each to a different parent.
    fn schedule_peers(&mut self, now: Instant) {
        let busy = self.parents.values().filter(|parent| parent.busy).count();
        if busy >= PARENTS {
            return;
        }
        let idle: Vec<(&String, &Bitfield)> = self
            .parents
            .iter()
            .filter(|(host, parent)| {
                !parent.busy
                    && parent.rest_until.is_none_or(|until| now >= until)
                    && self.usable(host, now)
            })
            .map(|(host, parent)| (host, &parent.have))
            .collect();
        if idle.is_empty() {
            return;
        }
        let mut random = self.random;
        // In the endgame a piece already asked of one parent may be asked of a second, so that
        // the last pieces do not wait on one slow answer.
        let endgame_pieces = ENDGAME_PIECES.min(self.have.len() / 100).max(1);
        let endgame = self.have.len() - self.have.count() <= endgame_pieces;
        let most_out = if endgame { 1 } else { 0 };
        let askable = |index: u32| {
            self.holders[index as usize] > 0
                && !self.have.has(index)
                && self.requests_out[index as usize] <= most_out
        };
        // Pieces nobody was asked for first, then the rarest; ties broken at random, so that
        // fetchers spread over different pieces.
        let mut candidates: Vec<(u8, u32, u64, u32)> = (0..self.have.len())
            .filter(|index| askable(*index))
            .map(|index| {
                (
                    self.requests_out[index as usize],
                    self.holders[index as usize],
                    xorshift(&mut random),
                    index,
                )
            })
            .collect();
        candidates.sort_unstable();
        let mut slots = PARENTS - busy;
        let mut asked = vec![false; idle.len()];
        let mut picks: Vec<(String, u32)> = Vec::new();
        let mut able: Vec<usize> = Vec::new();
        for (_, _, _, index) in candidates {
            if slots == 0 || picks.len() == idle.len() {
                break;
            }
            able.clear();
            able.extend(
                (0..idle.len())
                    .filter(|position| !asked[*position] && idle[*position].1.has(index)),
            );
            if able.is_empty() {
                continue;
            }
            let chosen = able[(xorshift(&mut random) % able.len() as u64) as usize];
            asked[chosen] = true;
            picks.push((idle[chosen].0.clone(), index));
            slots -= 1;
        }
        self.random = random;
        for (host, index) in picks {
            self.ask_peer(host, index);
        }
    }

    fn ask_peer(&mut self, host: String, index: u32) {
        let Some(parent) = self.parents.get_mut(&host) else {
            return;
        };
        parent.busy = true;
        let addr = parent.addr;
        let connection = parent.connection.take();
        self.request_sent(index);
        let node = Arc::clone(&self.node);
        let request = wire::Request {
            artifact: self.request.manifest.sha256.clone(),
            index,
        };
        let max_piece = self.request.manifest.piece_size;
        self.tasks.spawn(async move {
            let result = ask(&node, addr, connection, &request, max_piece).await;
            Outcome::Peer {
                host,
                index,
                result,
            }
        });
    }

    /// Asks the origin for a wanted piece no parent holds (any wanted piece once the peers
    /// have sent nothing for [`PEERS_STARVED_AFTER`]), one at a time.
    fn schedule_origin(&mut self, now: Instant) {
        if self.origin_busy || now < self.origin_next {
            return;
        }
        let starved = now.saturating_duration_since(self.last_peer_gain) > PEERS_STARVED_AFTER;
        let orphans: Vec<u32> = (0..self.have.len())
            .filter(|index| (starved || self.holders[*index as usize] == 0) && self.wanted(*index))
            .collect();
        if orphans.is_empty() {
            return;
        }
        let index = orphans[(self.next_random() % orphans.len() as u64) as usize];
        self.origin_busy = true;
        self.request_sent(index);
        let coordinator = Arc::clone(&self.request.coordinator);
        let artifact = self.artifact().to_string();
        let node = Arc::clone(&self.node);
        let length = self.request.manifest.piece_len(index).unwrap_or(0) as usize;
        self.tasks.spawn(async move {
            let answered =
                tokio::task::spawn_blocking(move || coordinator.origin_piece(&artifact, index))
                    .await;
            let result = answered.unwrap_or_else(|error| {
                Err(P2pError::Coordinator(format!(
                    "origin task failed: {error}"
                )))
            });
            if let Ok(Some(_)) = &result {
                take(node.download_bucket(), length).await;
            }
            Outcome::Origin { index, result }
        });
    }

    async fn handle(&mut self, outcome: Outcome) -> Result<(), P2pError> {
        let now = Instant::now();
        match outcome {
            Outcome::Announce(answered) => {
                self.announcing = false;
                match answered {
                    Ok(swarm) => self.take_swarm(swarm),
                    Err(error) => tracing::warn!(
                        artifact = %self.artifact(),
                        host = %self.request.host,
                        error = %error,
                        "artifact announce failed"
                    ),
                }
                self.announce_next = now + self.announce_interval;
            }
            Outcome::Origin { index, result } => {
                self.origin_busy = false;
                self.request_answered(index);
                match result {
                    Ok(Some(bytes)) => {
                        if !verify_piece(&self.request.manifest, index, &bytes) {
                            tracing::warn!(artifact = %self.artifact(), piece = index, "origin piece failed its digest");
                            return Err(P2pError::BadPiece { index });
                        }
                        self.from_origin += 1;
                        self.keep(index, bytes).await?;
                    }
                    Ok(None) => {
                        let jitter = Duration::from_millis(self.next_random() % 100);
                        self.origin_next = now + ORIGIN_BUSY_WAIT + jitter;
                    }
                    Err(error) => {
                        tracing::warn!(artifact = %self.artifact(), piece = index, error = %error, "origin piece failed");
                        self.origin_next = now + ORIGIN_ERROR_WAIT;
                    }
                }
            }
            Outcome::Peer {
                host,
                index,
                result,
            } => {
                self.request_answered(index);
                if let Some(parent) = self.parents.get_mut(&host) {
                    parent.busy = false;
                }
                match result {
                    Ok(answer) => self.take_answer(&host, index, answer).await?,
                    Err(error) => self.peer_failed(&host, &error, now),
                }
            }
        }
        Ok(())
    }

    fn take_swarm(&mut self, swarm: Swarm) {
        self.announce_interval =
            Duration::from_millis(u64::from(swarm.interval_ms)).clamp(MIN_ANNOUNCE, MAX_ANNOUNCE);
        let pieces = self.have.len();
        for peer in swarm.peers {
            if peer.host == self.request.host || self.blocked.contains(&peer.host) {
                continue;
            }
            let Ok(addr) = peer.addr.parse::<SocketAddr>() else {
                continue;
            };
            if addr == self.node.addr() {
                continue;
            }
            let Some(have) = Bitfield::from_hex(&peer.have, pieces) else {
                continue;
            };
            self.set_parent_have(&peer.host, addr, have);
        }
    }

    async fn take_answer(
        &mut self,
        host: &str,
        index: u32,
        answer: PeerAnswer,
    ) -> Result<(), P2pError> {
        let pieces = self.have.len();
        let PeerAnswer {
            response,
            connection,
        } = answer;
        if let Some(parent) = self.parents.get_mut(host) {
            parent.connection = Some(connection);
            let addr = parent.addr;
            if let Some(have) = Bitfield::from_bytes(&response.have, pieces) {
                self.set_parent_have(host, addr, have);
            }
        }
        match response.status {
            wire::PIECE => {
                if self.have.has(index) {
                    // The endgame's second answer.
                    return Ok(());
                }
                if !verify_piece(&self.request.manifest, index, &response.piece) {
                    self.block(host, index);
                    return Ok(());
                }
                self.failures.remove(host);
                self.from_peers += 1;
                self.last_peer_gain = Instant::now();
                self.keep(index, response.piece).await
            }
            wire::BUSY => {
                let rest = PEER_BUSY_WAIT + Duration::from_millis(self.next_random() % 40);
                if let Some(parent) = self.parents.get_mut(host) {
                    parent.rest_until = Some(Instant::now() + rest);
                }
                Ok(())
            }
            wire::NOT_HELD => {
                if let Some(parent) = self.parents.get_mut(host) {
                    if parent.have.has(index) {
                        parent.have.clear(index);
                        self.holders[index as usize] -= 1;
                    }
                }
                Ok(())
            }
            _ => {
                self.remove_parent(host);
                Ok(())
            }
        }
    }

    /// A peer sent a piece that failed its digest: never asked again, and reported.
    fn block(&mut self, host: &str, index: u32) {
        self.bad_pieces += 1;
        self.remove_parent(host);
        if self.blocked.insert(host.to_string()) {
            self.bad_reports.push(host.to_string());
        }
        tracing::warn!(
            artifact = %self.artifact(),
            host = %self.request.host,
            peer = %host,
            piece = index,
            "peer sent a bad piece and is blocked"
        );
        // Tell the tracker now.
        self.announce_next = Instant::now();
    }

    fn peer_failed(&mut self, host: &str, error: &std::io::Error, now: Instant) {
        let failures = self.failures.get(host).map_or(0, |(count, _)| *count) + 1;
        let backoff = Duration::from_millis(250u64 << failures.min(6));
        self.failures
            .insert(host.to_string(), (failures, now + backoff));
        tracing::debug!(
            artifact = %self.artifact(),
            peer = %host,
            failures,
            error = %error,
            "peer request failed"
        );
        if failures >= MAX_PEER_FAILURES {
            self.remove_parent(host);
        } else if let Some(parent) = self.parents.get_mut(host) {
            parent.connection = None;
        }
    }

    /// Writes a verified piece and serves it from now on.
    async fn keep(&mut self, index: u32, bytes: Vec<u8>) -> Result<(), P2pError> {
        if self.have.has(index) {
            return Ok(());
        }
        let file = Arc::clone(&self.file);
        let offset = u64::from(index) * u64::from(self.request.manifest.piece_size);
        let piece = Arc::new(bytes);
        let written = Arc::clone(&piece);
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            file.write_all_at(&written, offset)
        })
        .await
        .map_err(|error| P2pError::Io(std::io::Error::other(error)))??;
        self.have.set(index);
        self.node.add_piece(self.artifact(), index, piece);
        self.last_gain = Instant::now();
        report(&self.request, self.have.count(), false);
        Ok(())
    }
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Adds `sign` to the holder count of every piece `have` holds.
fn add_holdings(holders: &mut [u32], have: &Bitfield, sign: i32) {
    for (byte_index, byte) in have.as_bytes().iter().enumerate() {
        let mut bits = *byte;
        while bits != 0 {
            let bit = bits.leading_zeros() as usize;
            bits &= !(0x80u8 >> bit);
            if let Some(count) = holders.get_mut(byte_index * 8 + bit) {
                *count = count.saturating_add_signed(sign);
            }
        }
    }
}

/// One piece request to a peer, on `connection` if it is still open, else on a new one.
async fn ask(
    node: &PeerNode,
    addr: SocketAddr,
    connection: Option<TcpStream>,
    request: &wire::Request,
    max_piece: u32,
) -> Result<PeerAnswer, std::io::Error> {
    let mut connection = match connection {
        Some(connection) => connection,
        None => {
            let connected = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
                .await
                .map_err(|_| timed_out("connecting"))??;
            let _ = connected.set_nodelay(true);
            connected
        }
    };
    tokio::time::timeout(READ_TIMEOUT, wire::write_request(&mut connection, request))
        .await
        .map_err(|_| timed_out("sending a request"))??;
    let response = read_with_stall_timeout(&mut connection, max_piece, node).await?;
    Ok(PeerAnswer {
        response,
        connection,
    })
}

/// Reads an answer; gives up when no byte arrives for [`READ_TIMEOUT`] (a peer that vanished
/// without closing its connection).
async fn read_with_stall_timeout(
    connection: &mut TcpStream,
    max_piece: u32,
    node: &PeerNode,
) -> Result<wire::Response, std::io::Error> {
    let mut watched = StallGuard::new(connection, READ_TIMEOUT);
    wire::read_response(&mut watched, max_piece, node.download_bucket()).await
}

fn timed_out(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("peer timed out {what}"),
    )
}

/// A reader that fails when it waits longer than its limit for the next bytes.
struct StallGuard<'a> {
    inner: &'a mut TcpStream,
    limit: Duration,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// Whether the deadline counts the current wait (the time the caller spends between reads,
    /// such as waiting on the download limit, is not counted).
    armed: bool,
}

impl<'a> StallGuard<'a> {
    fn new(inner: &'a mut TcpStream, limit: Duration) -> StallGuard<'a> {
        StallGuard {
            inner,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
            armed: false,
        }
    }
}

impl tokio::io::AsyncRead for StallGuard<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
        buffer: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::future::Future;
        let this = &mut *self;
        if !this.armed {
            let deadline = Instant::now() + this.limit;
            this.deadline.as_mut().reset(deadline);
            this.armed = true;
        }
        match std::pin::Pin::new(&mut *this.inner).poll_read(context, buffer) {
            std::task::Poll::Ready(result) => {
                this.armed = false;
                std::task::Poll::Ready(result)
            }
            std::task::Poll::Pending => match this.deadline.as_mut().poll(context) {
                std::task::Poll::Ready(()) => {
                    std::task::Poll::Ready(Err(timed_out("sending a piece")))
                }
                std::task::Poll::Pending => std::task::Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_counts_follow_bitfields_added_and_taken_away() {
        let mut holders = vec![0u32; 11];
        let mut first = Bitfield::new(11);
        for index in [0, 7, 8, 10] {
            first.set(index);
        }
        let mut second = Bitfield::new(11);
        for index in [7, 9, 10] {
            second.set(index);
        }
        add_holdings(&mut holders, &first, 1);
        add_holdings(&mut holders, &second, 1);
        assert_eq!(holders, vec![1, 0, 0, 0, 0, 0, 0, 2, 1, 1, 2]);
        add_holdings(&mut holders, &first, -1);
        assert_eq!(holders, vec![0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 1]);
        // Never below zero, whatever the order of updates.
        add_holdings(&mut holders, &first, -1);
        assert_eq!(holders, vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    }
}
