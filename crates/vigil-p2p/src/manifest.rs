//! Manifests: the piece size from the file size, the digests, and the server's Ed25519 key
//! that signs them.

use std::io::{Read, Write};
use std::path::Path;

use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use vigil_core::agent::Manifest;
use vigil_core::text::hex;

use crate::bitfield::decode_hex;
use crate::P2pError;

/// The smallest piece: 256 KiB.
pub const MIN_PIECE_SIZE: u32 = 256 * 1024;
/// The largest piece: 16 MiB.
pub const MAX_PIECE_SIZE: u32 = 16 * 1024 * 1024;
/// How many pieces a file is cut into, about (between this and twice this, when the bounds
/// of the piece size allow).
pub const TARGET_PIECES: u64 = 1_000;

/// Bytes per piece for a file of `size` bytes: a power of two between 256 KiB and 16 MiB,
/// aiming at about 1,000 pieces.
pub fn piece_size_for(size: u64) -> u32 {
    let per_piece = size / TARGET_PIECES;
    if per_piece <= u64::from(MIN_PIECE_SIZE) {
        return MIN_PIECE_SIZE;
    }
    if per_piece >= u64::from(MAX_PIECE_SIZE) {
        return MAX_PIECE_SIZE;
    }
    // The largest power of two at most `per_piece`: between 1,000 and 2,000 pieces.
    let largest_power = 1u64 << (63 - per_piece.leading_zeros());
    u32::try_from(largest_power).unwrap_or(MAX_PIECE_SIZE)
}

/// The server's signing key (Ed25519), kept as a PKCS#8 file.
pub struct ManifestKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for ManifestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManifestKey")
            .field("public_key", &self.public_key_hex())
            .finish_non_exhaustive()
    }
}

impl ManifestKey {
    /// Reads the key at `path`, or makes one and writes it there (mode 0600).
    pub fn load_or_create(path: &Path) -> Result<ManifestKey, P2pError> {
        match std::fs::read(path) {
            Ok(document) => {
                let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&document).map_err(|_| {
                    P2pError::Manifest(format!(
                        "the key file {} is not a pkcs#8 ed25519 key",
                        path.display()
                    ))
                })?;
                Ok(ManifestKey { pair })
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => create_key(path),
            Err(error) => Err(P2pError::Io(error)),
        }
    }

    /// A key kept in memory only (tests, benchmarks).
    pub fn generate() -> Result<ManifestKey, P2pError> {
        let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| P2pError::Manifest("could not generate a key".to_string()))?;
        let pair = Ed25519KeyPair::from_pkcs8(document.as_ref())
            .map_err(|_| P2pError::Manifest("could not read the generated key".to_string()))?;
        Ok(ManifestKey { pair })
    }

    pub fn public_key_hex(&self) -> String {
        hex(self.pair.public_key().as_ref())
    }

    /// Sets `manifest.signature`.
    pub fn sign(&self, manifest: &mut Manifest) {
        let signature = self.pair.sign(&manifest.signed_bytes());
        manifest.signature = hex(signature.as_ref());
    }
}

fn create_key(path: &Path) -> Result<ManifestKey, P2pError> {
    use std::os::unix::fs::OpenOptionsExt;
    let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map_err(|_| P2pError::Manifest("could not generate a key".to_string()))?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // create_new: two servers starting at once never overwrite each other's key.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(document.as_ref())?;
    file.sync_all()?;
    let pair = Ed25519KeyPair::from_pkcs8(document.as_ref())
        .map_err(|_| P2pError::Manifest("could not read the generated key".to_string()))?;
    tracing::info!(path = %path.display(), "artifact signing key created");
    Ok(ManifestKey { pair })
}

/// Reads the file at `path` once: its SHA-256, each piece's BLAKE3; signed by `key`.
pub fn build_manifest(
    path: &Path,
    name: &str,
    created_at: i64,
    key: &ManifestKey,
) -> Result<Manifest, P2pError> {
    let mut file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    let piece_size = piece_size_for(size);
    let mut whole = ring::digest::Context::new(&ring::digest::SHA256);
    let mut pieces = Vec::new();
    let mut buffer = vec![0u8; piece_size as usize];
    let mut read_total = 0u64;
    loop {
        let filled = read_full(&mut file, &mut buffer)?;
        if filled == 0 {
            break;
        }
        let piece = &buffer[..filled];
        whole.update(piece);
        pieces.push(blake3::hash(piece).to_hex().to_string());
        read_total += filled as u64;
        if filled < buffer.len() {
            break;
        }
    }
    if read_total != size {
        return Err(P2pError::Manifest(format!(
            "the file changed while it was read: {read_total} bytes of {size}"
        )));
    }
    let mut manifest = Manifest {
        sha256: hex(whole.finish().as_ref()),
        name: name.to_string(),
        size,
        piece_size,
        pieces,
        created_at,
        signature: String::new(),
    };
    key.sign(&mut manifest);
    Ok(manifest)
}

/// Fills `buffer` unless the end comes first; the bytes read.
fn read_full(file: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        let read = file.read(&mut buffer[filled..])?;
        if read == 0 {
            break;
        }
        filled += read;
    }
    Ok(filled)
}

/// Whether `text` is the lowercase hex of a 32-byte digest.
pub fn is_digest_hex(text: &str) -> bool {
    text.len() == 64 && decode_hex(text).is_some()
}

/// Checks the manifest's signature with the server's public key (hex) and its shape (piece
/// count and sizes agree with the file size).
pub fn verify_manifest(manifest: &Manifest, public_key_hex: &str) -> Result<(), P2pError> {
    let shape_error = |what: &str| Err(P2pError::Manifest(what.to_string()));
    if !is_digest_hex(&manifest.sha256) {
        return shape_error("sha256 is not 64 lowercase hex digits");
    }
    if !manifest.piece_size.is_power_of_two()
        || manifest.piece_size < MIN_PIECE_SIZE
        || manifest.piece_size > MAX_PIECE_SIZE
    {
        return shape_error("piece_size is not a power of two between 256 KiB and 16 MiB");
    }
    let expected_pieces = manifest.size.div_ceil(u64::from(manifest.piece_size));
    if manifest.pieces.len() as u64 != expected_pieces {
        return Err(P2pError::Manifest(format!(
            "pieces holds {} digests where size and piece_size make {expected_pieces}",
            manifest.pieces.len()
        )));
    }
    if let Some(position) = manifest
        .pieces
        .iter()
        .position(|piece| !is_digest_hex(piece))
    {
        return Err(P2pError::Manifest(format!(
            "pieces[{position}] is not 64 lowercase hex digits"
        )));
    }
    let Some(public_key) = decode_hex(public_key_hex).filter(|key| key.len() == 32) else {
        return shape_error("the public key is not 64 lowercase hex digits");
    };
    let Some(signature) = decode_hex(&manifest.signature).filter(|sig| sig.len() == 64) else {
        return shape_error("signature is not 128 lowercase hex digits");
    };
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(&manifest.signed_bytes(), &signature)
        .map_err(|_| {
            P2pError::Manifest("the signature does not match the server's key".to_string())
        })
}

/// Whether `bytes` is piece `index` of the manifest (length and BLAKE3).
pub fn verify_piece(manifest: &Manifest, index: u32, bytes: &[u8]) -> bool {
    let Some(length) = manifest.piece_len(index) else {
        return false;
    };
    if bytes.len() != length as usize {
        return false;
    }
    let Some(expected) = manifest.pieces.get(index as usize) else {
        return false;
    };
    let Some(expected_bytes) = decode_hex(expected) else {
        return false;
    };
    let Ok(expected_hash) = <[u8; 32]>::try_from(expected_bytes.as_slice()) else {
        return false;
    };
    // blake3::Hash compares in constant time.
    blake3::hash(bytes) == blake3::Hash::from(expected_hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{fresh_dir, pseudo_random_bytes};

    #[test]
    fn piece_sizes_are_powers_of_two_aiming_at_a_thousand_pieces() {
        assert_eq!(piece_size_for(0), MIN_PIECE_SIZE);
        assert_eq!(piece_size_for(10), MIN_PIECE_SIZE);
        assert_eq!(piece_size_for(64 << 20), MIN_PIECE_SIZE);
        assert_eq!(piece_size_for(1 << 40), MAX_PIECE_SIZE);
        for size in [300u64 << 20, 1 << 30, 3 << 30, 7_777_777_777] {
            let piece = piece_size_for(size);
            assert!(piece.is_power_of_two());
            let count = size.div_ceil(u64::from(piece));
            assert!((1_000..2_000).contains(&count), "{size}: {count} pieces");
        }
    }

    #[test]
    fn a_built_manifest_verifies_and_every_tamper_fails() {
        let dir = fresh_dir("manifest-tamper");
        let path = dir.join("shop.tar.gz");
        let bytes = pseudo_random_bytes(600 * 1024 + 17, 3);
        std::fs::write(&path, &bytes).unwrap();
        let key = ManifestKey::load_or_create(&dir.join("key.pk8")).unwrap();
        let manifest = build_manifest(&path, "shop.tar.gz", 1_700_000_000, &key).unwrap();
        assert_eq!(manifest.size, bytes.len() as u64);
        assert_eq!(manifest.pieces.len(), 3);
        let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
        assert_eq!(manifest.sha256, hex(digest.as_ref()));
        verify_manifest(&manifest, &key.public_key_hex()).unwrap();

        let mut renamed = manifest.clone();
        renamed.name = "evil.tar.gz".to_string();
        assert!(verify_manifest(&renamed, &key.public_key_hex()).is_err());
        let mut piece_swapped = manifest.clone();
        piece_swapped.pieces[1] = blake3::hash(b"evil").to_hex().to_string();
        assert!(verify_manifest(&piece_swapped, &key.public_key_hex()).is_err());
        let mut resized = manifest.clone();
        resized.size += 1;
        assert!(verify_manifest(&resized, &key.public_key_hex()).is_err());
        let other_key = ManifestKey::generate().unwrap();
        assert!(verify_manifest(&manifest, &other_key.public_key_hex()).is_err());

        let piece_size = manifest.piece_size as usize;
        assert!(verify_piece(&manifest, 0, &bytes[..piece_size]));
        assert!(verify_piece(&manifest, 2, &bytes[2 * piece_size..]));
        let mut corrupted = bytes[piece_size..2 * piece_size].to_vec();
        corrupted[100] ^= 1;
        assert!(!verify_piece(&manifest, 1, &corrupted));
        assert!(
            !verify_piece(&manifest, 1, &bytes[..piece_size]),
            "piece 0 for 1"
        );
        assert!(!verify_piece(&manifest, 3, &bytes[..10]), "past the end");
    }

    #[test]
    fn the_key_file_is_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = fresh_dir("manifest-key");
        let path = dir.join("keys").join("manifest.pk8");
        let first = ManifestKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = ManifestKey::load_or_create(&path).unwrap();
        assert_eq!(first.public_key_hex(), again.public_key_hex());
        std::fs::write(&path, b"not a key").unwrap();
        assert!(ManifestKey::load_or_create(&path).is_err());
    }
}
