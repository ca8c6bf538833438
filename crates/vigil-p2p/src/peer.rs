//! A peer: serves the verified pieces it holds to other peers over TCP, within its upload
//! limit.
//!
//! The wire protocol ([`wire`]) is a request and its answer, repeated on one connection:
//! the asker sends `VP`, an operation byte (1: a piece), the artifact id's length (one byte)
//! and the id, and the piece index (u32, big-endian); the peer answers a status byte (0: the
//! piece follows, 1: it does not hold that piece, 2: it does not know the artifact, 3: every
//! upload slot is taken, ask another peer or later), its
//! bitfield of the artifact (u32 length, then the packed bits), and the piece (u32 length,
//! then the bytes; empty unless the status is 0).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use vigil_core::agent::Manifest;

use crate::bitfield::Bitfield;
use crate::limit::{Slots, TokenBucket};
use crate::manifest::{is_digest_hex, verify_piece};
use crate::origin::read_at;

/// Token-bucket limits of a peer, bytes per second; None is unlimited.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub up_bytes_per_second: Option<u64>,
    pub down_bytes_per_second: Option<u64>,
}

/// Pieces sent at once; a request beyond them is answered busy at once, so that askers turn to
/// other peers instead of sharing one peer's upload many ways (a peer that just got a rare
/// piece would otherwise be asked for it by the whole swarm while the others sit idle).
pub const UPLOAD_SLOTS: usize = 4;

/// Bytes of the pieces that arrived last, kept in memory to serve on without reading them back:
/// the swarm asks most for the pieces that are newest, hence rarest.
pub const RECENT_PIECE_BYTES: usize = 32 * 1024 * 1024;

/// The send buffer of each connection a peer serves. The kernel's own grows to megabytes, which
/// would let a peer take every request at once and queue them all on its link, each answer
/// then waiting behind the others; a buffer about one piece long keeps an upload slot taken
/// until most of its answer has left.
const SEND_BUFFER_BYTES: u32 = 256 * 1024;

/// How long a connection may sit idle before the peer closes it.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes written between two takes from the upload bucket.
pub(crate) const CHUNK: usize = 16 * 1024;

/// A running peer: its listener and the pieces it holds under `dir`.
#[derive(Debug)]
pub struct PeerNode {
    addr: SocketAddr,
    dir: PathBuf,
    upload: Option<TokenBucket>,
    download: Option<TokenBucket>,
    held: Mutex<HashMap<String, Held>>,
    stop: watch::Sender<bool>,
    uploaded_bytes: AtomicU64,
    uploads: Slots,
    recent: Mutex<RecentPieces>,
}

/// The pieces that arrived last, oldest first, within [`RECENT_PIECE_BYTES`].
#[derive(Debug, Default)]
struct RecentPieces {
    pieces: std::collections::VecDeque<(String, u32, Arc<Vec<u8>>)>,
    bytes: usize,
}

impl RecentPieces {
    fn insert(&mut self, artifact: &str, index: u32, piece: Arc<Vec<u8>>) {
        self.bytes += piece.len();
        self.pieces.push_back((artifact.to_string(), index, piece));
        while self.bytes > RECENT_PIECE_BYTES {
            let Some((_, _, oldest)) = self.pieces.pop_front() else {
                break;
            };
            self.bytes -= oldest.len();
        }
    }

    fn get(&self, artifact: &str, index: u32) -> Option<Arc<Vec<u8>>> {
        self.pieces
            .iter()
            .rev()
            .find(|(held_artifact, held_index, _)| {
                *held_index == index && held_artifact == artifact
            })
            .map(|(_, _, piece)| Arc::clone(piece))
    }

    fn forget(&mut self, artifact: &str) {
        self.pieces
            .retain(|(held_artifact, _, _)| held_artifact != artifact);
        self.bytes = self.pieces.iter().map(|(_, _, piece)| piece.len()).sum();
    }
}

/// An artifact this peer holds some of.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub(crate) manifest: Arc<Manifest>,
    /// Verified pieces only.
    pub(crate) have: Bitfield,
    /// The data file: `<id>.part` until the whole file is verified, `<id>` after.
    pub(crate) path: PathBuf,
    pub(crate) verified: bool,
}

impl PeerNode {
    /// Binds `listen` and serves the pieces held under `dir` (kept across restarts: pieces
    /// found there are verified again before they are served). Peers are told `listen`'s own
    /// address, which must then name one (see [`PeerNode::start_advertising`]).
    pub async fn start(
        listen: SocketAddr,
        dir: PathBuf,
        limits: Limits,
    ) -> std::io::Result<Arc<PeerNode>> {
        PeerNode::start_advertising(listen, listen.ip(), dir, limits).await
    }

    /// As [`PeerNode::start`], the address announced to peers being `advertised_ip` with the
    /// bound port: a node listening on every interface (`0.0.0.0`) is reached at one of them.
    /// An unspecified `advertised_ip` is refused: no peer could connect to it.
    pub async fn start_advertising(
        listen: SocketAddr,
        advertised_ip: std::net::IpAddr,
        dir: PathBuf,
        limits: Limits,
    ) -> std::io::Result<Arc<PeerNode>> {
        if advertised_ip.is_unspecified() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("peers cannot connect to {advertised_ip}: name the address they reach this host at"),
            ));
        }
        let scan_dir = dir.clone();
        let held = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&scan_dir)?;
            load_held(&scan_dir)
        })
        .await
        .map_err(std::io::Error::other)??;
        let listener = listen_with_small_send_buffer(listen)?;
        let addr = SocketAddr::new(advertised_ip, listener.local_addr()?.port());
        let (stop, stopped) = watch::channel(false);
        let node = Arc::new(PeerNode {
            addr,
            dir,
            upload: limits.up_bytes_per_second.map(TokenBucket::new),
            download: limits.down_bytes_per_second.map(TokenBucket::new),
            held: Mutex::new(held),
            stop,
            uploaded_bytes: AtomicU64::new(0),
            uploads: Slots::new(UPLOAD_SLOTS),
            recent: Mutex::new(RecentPieces::default()),
        });
        tracing::debug!(addr = %addr, "peer listening");
        tokio::spawn(accept_loop(Arc::clone(&node), listener, stopped));
        Ok(node)
    }

    /// The address peers reach this node at (the advertised one).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops serving; pieces stay on disk.
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
    }

    pub fn is_stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Bytes of pieces sent to other peers.
    pub fn uploaded_bytes(&self) -> u64 {
        self.uploaded_bytes.load(Ordering::Relaxed)
    }

    /// The verified pieces held of `artifact`, if any.
    pub fn have(&self, artifact: &str) -> Option<Bitfield> {
        self.lock_held().get(artifact).map(|held| held.have.clone())
    }

    pub(crate) fn download_bucket(&self) -> Option<&TokenBucket> {
        self.download.as_ref()
    }

    pub(crate) fn stopped_signal(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    fn lock_held(&self) -> MutexGuard<'_, HashMap<String, Held>> {
        crate::lock(&self.held)
    }

    pub(crate) fn held(&self, artifact: &str) -> Option<Held> {
        self.lock_held().get(artifact).cloned()
    }

    /// Starts holding `manifest`'s artifact (nothing yet) unless it does already.
    pub(crate) fn hold(&self, manifest: &Manifest, path: PathBuf) -> Held {
        self.lock_held()
            .entry(manifest.sha256.clone())
            .or_insert_with(|| Held {
                manifest: Arc::new(manifest.clone()),
                have: Bitfield::new(manifest.piece_count()),
                path,
                verified: false,
            })
            .clone()
    }

    /// Piece `index` was verified and written: it may be served.
    pub(crate) fn add_piece(&self, artifact: &str, index: u32, piece: Arc<Vec<u8>>) {
        crate::lock(&self.recent).insert(artifact, index, piece);
        if let Some(held) = self.lock_held().get_mut(artifact) {
            held.have.set(index);
        }
    }

    /// The whole file was verified and now lives at `path`.
    pub(crate) fn complete(&self, artifact: &str, path: PathBuf) {
        if let Some(held) = self.lock_held().get_mut(artifact) {
            held.path = path;
            held.verified = true;
        }
    }

    /// Forgets `artifact` (its whole file failed its check).
    pub(crate) fn forget(&self, artifact: &str) {
        crate::lock(&self.recent).forget(artifact);
        self.lock_held().remove(artifact);
    }
}

/// A listener whose accepted connections inherit [`SEND_BUFFER_BYTES`].
fn listen_with_small_send_buffer(listen: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if listen.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_send_buffer_size(SEND_BUFFER_BYTES)?;
    socket.bind(listen)?;
    socket.listen(1024)
}

pub(crate) fn manifest_path(dir: &Path, artifact: &str) -> PathBuf {
    dir.join(format!("{artifact}.manifest.json"))
}

pub(crate) fn part_path(dir: &Path, artifact: &str) -> PathBuf {
    dir.join(format!("{artifact}.part"))
}

pub(crate) fn whole_path(dir: &Path, artifact: &str) -> PathBuf {
    dir.join(artifact)
}

/// The artifacts found under `dir`, every piece verified again.
fn load_held(dir: &Path) -> std::io::Result<HashMap<String, Held>> {
    let mut held = HashMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(artifact) = name.strip_suffix(".manifest.json") else {
            continue;
        };
        if !is_digest_hex(artifact) {
            continue;
        }
        let manifest: Manifest = match std::fs::read(entry.path())
            .map_err(|error| error.to_string())
            .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|error| error.to_string()))
        {
            Ok(manifest) => manifest,
            Err(error) => {
                tracing::warn!(artifact, error = %error, "artifact manifest on disk unreadable");
                continue;
            }
        };
        if manifest.sha256 != artifact {
            continue;
        }
        let whole = whole_path(dir, artifact);
        let (path, verified) = if whole.exists() {
            (whole, true)
        } else {
            (part_path(dir, artifact), false)
        };
        let have = verify_on_disk(&manifest, &path);
        let whole_and_verified = verified && have.is_complete();
        tracing::debug!(
            artifact,
            pieces_held = have.count(),
            "artifact found on disk"
        );
        held.insert(
            artifact.to_string(),
            Held {
                manifest: Arc::new(manifest),
                have,
                path,
                verified: whole_and_verified,
            },
        );
    }
    Ok(held)
}

/// The pieces of the file at `path` that match the manifest.
fn verify_on_disk(manifest: &Manifest, path: &Path) -> Bitfield {
    let mut have = Bitfield::new(manifest.piece_count());
    for index in 0..manifest.piece_count() {
        let Some(length) = manifest.piece_len(index) else {
            continue;
        };
        let offset = u64::from(index) * u64::from(manifest.piece_size);
        if let Ok(bytes) = read_at(path, offset, length) {
            if verify_piece(manifest, index, &bytes) {
                have.set(index);
            }
        }
    }
    have
}

async fn accept_loop(
    node: Arc<PeerNode>,
    listener: TcpListener,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.wait_for(|stop| *stop) => break,
        };
        match accepted {
            Ok((stream, remote)) => {
                let _ = stream.set_nodelay(true);
                let connection_stopped = node.stopped_signal();
                tokio::spawn(serve_connection(
                    Arc::clone(&node),
                    stream,
                    remote,
                    connection_stopped,
                ));
            }
            Err(error) => {
                tracing::warn!(error = %error, "peer accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    tracing::debug!(addr = %node.addr, "peer stopped");
}

async fn serve_connection(
    node: Arc<PeerNode>,
    mut stream: TcpStream,
    remote: SocketAddr,
    mut stopped: watch::Receiver<bool>,
) {
    tokio::select! {
        result = serve_requests(&node, &mut stream) => {
            if let Err(error) = result {
                tracing::debug!(peer = %remote, error = %error, "peer connection ended");
            }
        }
        _ = stopped.wait_for(|stop| *stop) => {}
    }
}

async fn serve_requests(node: &PeerNode, stream: &mut TcpStream) -> std::io::Result<()> {
    loop {
        let request = match tokio::time::timeout(IDLE_TIMEOUT, wire::read_request(stream)).await {
            Err(_) => return Ok(()),
            Ok(Ok(None)) => return Ok(()),
            Ok(Ok(Some(request))) => request,
            Ok(Err(error)) => return Err(error),
        };
        let slot = node.uploads.try_take();
        let answer = match &slot {
            Some(_) => answer_request(node, &request).await,
            None => busy_answer(node, &request),
        };
        wire::write_response(
            stream,
            answer.status,
            answer.have.as_deref(),
            &answer.piece,
            node.upload.as_ref(),
        )
        .await?;
        drop(slot);
        if answer.status == wire::PIECE {
            node.uploaded_bytes
                .fetch_add(answer.piece.len() as u64, Ordering::Relaxed);
        }
    }
}

/// Every upload slot is taken: the asker learns what this peer holds, and asks elsewhere.
fn busy_answer(node: &PeerNode, request: &wire::Request) -> Answer {
    Answer {
        status: wire::BUSY,
        have: node
            .held(&request.artifact)
            .map(|held| held.have.as_bytes().to_vec()),
        piece: Arc::default(),
    }
}

struct Answer {
    status: u8,
    have: Option<Vec<u8>>,
    piece: Arc<Vec<u8>>,
}

async fn answer_request(node: &PeerNode, request: &wire::Request) -> Answer {
    let Some(held) = node.held(&request.artifact) else {
        return Answer {
            status: wire::UNKNOWN_ARTIFACT,
            have: None,
            piece: Arc::default(),
        };
    };
    let not_held = |have: &Bitfield| Answer {
        status: wire::NOT_HELD,
        have: Some(have.as_bytes().to_vec()),
        piece: Arc::default(),
    };
    if !held.have.has(request.index) {
        return not_held(&held.have);
    }
    let Some(length) = held.manifest.piece_len(request.index) else {
        return not_held(&held.have);
    };
    let offset = u64::from(request.index) * u64::from(held.manifest.piece_size);
    let index = request.index;
    if let Some(piece) = crate::lock(&node.recent).get(&request.artifact, index) {
        return Answer {
            status: wire::PIECE,
            have: Some(held.have.as_bytes().to_vec()),
            piece,
        };
    }
    let first_path = held.path.clone();
    // Every held piece was checked against the manifest when it arrived (or when it was found
    // on disk at start); the asker checks it again, and blocks a peer that sends it damaged.
    let mut read = read_piece(first_path.clone(), offset, length).await;
    if matches!(read, Ok(Err(_))) {
        let moved = node
            .held(&request.artifact)
            .map(|now| now.path)
            .filter(|path| *path != first_path);
        if let Some(moved) = moved {
            // The file was renamed to its final name while this answer was read.
            read = read_piece(moved, offset, length).await;
        }
    }
    match read {
        Ok(Ok(bytes)) => Answer {
            status: wire::PIECE,
            have: Some(held.have.as_bytes().to_vec()),
            piece: Arc::new(bytes),
        },
        Ok(Err(error)) => {
            tracing::debug!(artifact = %request.artifact, piece = index, error = %error, "held piece unreadable");
            not_held(&held.have)
        }
        Err(_) => not_held(&held.have),
    }
}

async fn read_piece(
    path: PathBuf,
    offset: u64,
    length: u32,
) -> Result<std::io::Result<Vec<u8>>, tokio::task::JoinError> {
    tokio::task::spawn_blocking(move || read_at(&path, offset, length)).await
}

/// The peers' wire protocol (see the module's documentation), for peers and tests alike.
pub mod wire {
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    use crate::limit::TokenBucket;

    use super::CHUNK;

    pub const MAGIC: &[u8; 2] = b"VP";
    pub const OP_PIECE: u8 = 1;
    /// Status: the piece follows.
    pub const PIECE: u8 = 0;
    /// Status: the peer does not hold the piece.
    pub const NOT_HELD: u8 = 1;
    /// Status: the peer does not know the artifact.
    pub const UNKNOWN_ARTIFACT: u8 = 2;
    /// Status: every upload slot of the peer is taken.
    pub const BUSY: u8 = 3;
    /// The largest piece and bitfield a peer accepts in an answer.
    pub const MAX_PIECE_BYTES: u32 = crate::manifest::MAX_PIECE_SIZE;
    pub const MAX_BITFIELD_BYTES: u32 = 1 << 20;

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Request {
        pub artifact: String,
        pub index: u32,
    }

    /// The next request, or None when the asker closed the connection between requests.
    pub async fn read_request<R: AsyncRead + Unpin>(
        stream: &mut R,
    ) -> std::io::Result<Option<Request>> {
        let mut head = [0u8; 4];
        match stream.read_exact(&mut head).await {
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(error) => return Err(error),
        }
        if &head[..2] != MAGIC || head[2] != OP_PIECE || head[3] == 0 || head[3] > 64 {
            return Err(invalid("a request that is not a piece request"));
        }
        let mut id = vec![0u8; usize::from(head[3])];
        stream.read_exact(&mut id).await?;
        let index = stream.read_u32().await?;
        let artifact =
            String::from_utf8(id).map_err(|_| invalid("an artifact id that is not text"))?;
        Ok(Some(Request { artifact, index }))
    }

    pub async fn write_request<W: AsyncWrite + Unpin>(
        stream: &mut W,
        request: &Request,
    ) -> std::io::Result<()> {
        let id = request.artifact.as_bytes();
        let id_length =
            u8::try_from(id.len()).map_err(|_| invalid("an artifact id over 255 bytes"))?;
        let mut bytes = Vec::with_capacity(8 + id.len());
        bytes.extend_from_slice(MAGIC);
        bytes.push(OP_PIECE);
        bytes.push(id_length);
        bytes.extend_from_slice(id);
        bytes.extend_from_slice(&request.index.to_be_bytes());
        stream.write_all(&bytes).await?;
        stream.flush().await
    }

    /// Writes an answer, the piece in chunks taken from `upload` when there is one.
    pub async fn write_response<W: AsyncWrite + Unpin>(
        stream: &mut W,
        status: u8,
        have: Option<&[u8]>,
        piece: &[u8],
        upload: Option<&TokenBucket>,
    ) -> std::io::Result<()> {
        let have = have.unwrap_or_default();
        let mut head = Vec::with_capacity(9 + have.len());
        head.push(status);
        head.extend_from_slice(&(have.len() as u32).to_be_bytes());
        head.extend_from_slice(have);
        head.extend_from_slice(&(piece.len() as u32).to_be_bytes());
        stream.write_all(&head).await?;
        match upload {
            // Unlimited: the whole piece in one call, the kernel cuts it.
            None => stream.write_all(piece).await?,
            Some(bucket) => {
                for chunk in piece.chunks(CHUNK) {
                    bucket.take(chunk.len()).await;
                    stream.write_all(chunk).await?;
                }
            }
        }
        stream.flush().await
    }

    #[derive(Debug)]
    pub struct Response {
        pub status: u8,
        pub have: Vec<u8>,
        pub piece: Vec<u8>,
    }

    /// Reads an answer, the piece in chunks taken from `download`; a piece longer than
    /// `max_piece` is refused before it is read.
    pub async fn read_response<R: AsyncRead + Unpin>(
        stream: &mut R,
        max_piece: u32,
        download: Option<&TokenBucket>,
    ) -> std::io::Result<Response> {
        let status = stream.read_u8().await?;
        if status > BUSY {
            return Err(invalid("an unknown status"));
        }
        let have_length = stream.read_u32().await?;
        if have_length > MAX_BITFIELD_BYTES {
            return Err(invalid("a bitfield over its bound"));
        }
        let mut have = vec![0u8; have_length as usize];
        stream.read_exact(&mut have).await?;
        let piece_length = stream.read_u32().await?;
        if piece_length > max_piece.min(MAX_PIECE_BYTES) || (status != PIECE && piece_length > 0) {
            return Err(invalid("a piece of the wrong length"));
        }
        let mut piece = vec![0u8; piece_length as usize];
        match download {
            None => {
                stream.read_exact(&mut piece).await?;
            }
            Some(bucket) => {
                for chunk in piece.chunks_mut(CHUNK) {
                    bucket.take(chunk.len()).await;
                    stream.read_exact(chunk).await?;
                }
            }
        }
        Ok(Response {
            status,
            have,
            piece,
        })
    }

    fn invalid(what: &str) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("peer sent {what}"))
    }
}

/// Writes `bytes` to `path` through a temporary file, so a crash leaves the old file or the new.
pub(crate) async fn write_file_atomically(path: PathBuf, bytes: Vec<u8>) -> std::io::Result<()> {
    tokio::task::spawn_blocking(move || {
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, &bytes)?;
        std::fs::rename(&temporary, &path)
    })
    .await
    .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_pieces_keep_the_newest_within_their_bound_and_forget_an_artifact() {
        let piece = |byte: u8| Arc::new(vec![byte; 8 * 1024 * 1024]);
        let mut recent = RecentPieces::default();
        for index in 0..5u32 {
            recent.insert("a", index, piece(index as u8));
        }
        // 5 pieces of 8 MiB against a bound of 32 MiB: the oldest one went.
        assert!(recent.get("a", 0).is_none());
        for index in 1..5u32 {
            assert_eq!(recent.get("a", index).unwrap()[0], index as u8);
        }
        assert!(recent.get("b", 1).is_none());
        assert!(recent.bytes <= RECENT_PIECE_BYTES);
        recent.insert("b", 1, piece(9));
        recent.forget("a");
        assert!(recent.get("a", 4).is_none());
        assert_eq!(recent.get("b", 1).unwrap()[0], 9);
        assert_eq!(recent.bytes, 8 * 1024 * 1024);
    }
}
