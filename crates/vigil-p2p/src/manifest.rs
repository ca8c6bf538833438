//! Manifests: the piece size from the file size, the digests, and the server's Ed25519 key
//! that signs them.

use std::path::Path;

use vigil_core::agent::Manifest;

use crate::P2pError;

/// Bytes per piece for a file of `size` bytes: a power of two between 256 KiB and 16 MiB,
/// aiming at about 1,000 pieces.
pub fn piece_size_for(size: u64) -> u32 {
    todo!("{size}")
}

/// The server's signing key (Ed25519), kept as a PKCS#8 file.
#[derive(Debug)]
pub struct ManifestKey {
    _private: (),
}

impl ManifestKey {
    /// Reads the key at `path`, or makes one and writes it there (mode 0600).
    pub fn load_or_create(path: &Path) -> Result<ManifestKey, P2pError> {
        todo!("{}", path.display())
    }
    pub fn public_key_hex(&self) -> String {
        todo!()
    }
    /// Sets `manifest.signature`.
    pub fn sign(&self, manifest: &mut Manifest) {
        todo!("{}", manifest.sha256)
    }
}

/// Reads the file at `path` once: its SHA-256, each piece's BLAKE3; signed by `key`.
pub fn build_manifest(
    path: &Path,
    name: &str,
    created_at: i64,
    key: &ManifestKey,
) -> Result<Manifest, P2pError> {
    todo!("{} {name} {created_at} {key:?}", path.display())
}

/// Checks the manifest's signature with the server's public key (hex) and its shape (piece
/// count and sizes agree with the file size).
pub fn verify_manifest(manifest: &Manifest, public_key_hex: &str) -> Result<(), P2pError> {
    todo!("{} {public_key_hex}", manifest.sha256)
}

/// Whether `bytes` is piece `index` of the manifest (length and BLAKE3).
pub fn verify_piece(manifest: &Manifest, index: u32, bytes: &[u8]) -> bool {
    todo!("{} {index} {}", manifest.sha256, bytes.len())
}
