//! Artifacts: the server's manifest key (pinned with `--server-key`, or trusted on first use
//! and kept in the state directory), the signed manifest checked with it, and the server's
//! side of a fetch over HTTP ([`HttpCoordinator`]: the tracker's announce route and the
//! origin's pieces route, a 503 being a busy origin).

use std::path::{Path, PathBuf};

use vigil_core::agent::{Announce, Manifest, Swarm};
use vigil_p2p::fetch::Coordinator;
use vigil_p2p::P2pError;

use crate::client::Client;
use crate::state::StateDir;

/// Whether `artifact` is an artifact id: a SHA-256 in lowercase hex.
pub fn is_artifact_id(artifact: &str) -> bool {
    artifact.len() == 64
        && artifact
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

/// Whether `key` looks like an Ed25519 public key in hex (32 bytes).
pub fn is_key_hex(key: &str) -> bool {
    key.len() == 64 && key.bytes().all(|byte| byte.is_ascii_hexdigit())
}

#[derive(serde::Deserialize)]
struct KeyAnswer {
    public_key: String,
}

/// The key manifests must be signed with: the pinned one, else the one kept from the first
/// contact, else the server's (`GET /api/v1/artifact-key`), kept from now on.
pub fn trusted_key(
    client: &Client,
    state: &StateDir,
    pinned: Option<&str>,
) -> Result<String, String> {
    if let Some(key) = pinned {
        return Ok(key.to_ascii_lowercase());
    }
    if let Some(key) = state.server_key() {
        return Ok(key);
    }
    let answer: KeyAnswer = client
        .get_json("/api/v1/artifact-key")
        .map_err(|error| format!("cannot read the server's manifest key: {error}"))?;
    if !is_key_hex(&answer.public_key) {
        return Err(format!(
            "the server's manifest key {:?} is not 32 bytes of hex",
            answer.public_key
        ));
    }
    let key = answer.public_key.to_ascii_lowercase();
    state
        .set_server_key(&key)
        .map_err(|error| format!("cannot keep the server's manifest key: {error}"))?;
    tracing::info!(key = %key, "server manifest key trusted on first use");
    Ok(key)
}

/// The manifest of `artifact`, its signature checked with `key` and its id matching.
pub fn verified_manifest(client: &Client, artifact: &str, key: &str) -> Result<Manifest, String> {
    if !is_artifact_id(artifact) {
        return Err(format!(
            "{artifact:?} is not an artifact id (a sha-256 in hex)"
        ));
    }
    let manifest: Manifest = client
        .get_json(&format!("/api/v1/artifacts/{artifact}/manifest"))
        .map_err(|error| format!("cannot read the manifest of {artifact}: {error}"))?;
    if manifest.sha256 != artifact {
        return Err(format!(
            "the manifest asked for {artifact} describes {}",
            manifest.sha256
        ));
    }
    vigil_p2p::manifest::verify_manifest(&manifest, key)
        .map_err(|error| format!("the manifest of {artifact} is refused: {error}"))?;
    Ok(manifest)
}

/// The artifact's upload name as a file name: its last path part, without control
/// characters, not starting with a dot; `artifact` when nothing is left.
pub fn file_name_of(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last.chars().filter(|c| !c.is_control()).collect();
    let trimmed = cleaned.trim().trim_start_matches('.');
    if trimmed.is_empty() || trimmed.len() > 255 {
        return "artifact".to_owned();
    }
    trimmed.to_owned()
}

/// The fetched file (named by its digest) under its upload name in `dir`: a hard link, or a
/// copy where links cannot be made; made once.
pub fn named_copy(whole: &Path, dir: &Path, name: &str) -> std::io::Result<PathBuf> {
    let named = dir.join(file_name_of(name));
    if named.is_file() {
        return Ok(named);
    }
    std::fs::create_dir_all(dir)?;
    let temporary = dir.join(".linking");
    let _ = std::fs::remove_file(&temporary);
    if std::fs::hard_link(whole, &temporary).is_err() {
        std::fs::copy(whole, &temporary)?;
    }
    std::fs::rename(&temporary, &named)?;
    Ok(named)
}

/// The server as tracker and origin, over HTTP.
#[derive(Debug)]
pub struct HttpCoordinator {
    client: Client,
}

impl HttpCoordinator {
    pub fn new(client: Client) -> HttpCoordinator {
        HttpCoordinator { client }
    }
}

impl Coordinator for HttpCoordinator {
    fn announce(&self, artifact: &str, announce: &Announce) -> Result<Swarm, P2pError> {
        let body = serde_json::to_vec(announce)
            .map_err(|error| P2pError::Coordinator(error.to_string()))?;
        self.client
            .post_json(&format!("/api/v1/artifacts/{artifact}/announce"), &body)
            .map_err(|error| P2pError::Coordinator(error.to_string()))
    }

    fn origin_piece(&self, artifact: &str, index: u32) -> Result<Option<Vec<u8>>, P2pError> {
        self.client
            .get_piece(&format!("/api/v1/artifacts/{artifact}/pieces/{index}"))
            .map_err(|error| P2pError::Coordinator(error.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fetched_artifact_gets_its_upload_name() {
        assert_eq!(file_name_of("shop-42.tar.gz"), "shop-42.tar.gz");
        assert_eq!(file_name_of("../../etc/passwd"), "passwd");
        assert_eq!(file_name_of("..."), "artifact");
        assert_eq!(file_name_of(".hidden"), "hidden");
        assert_eq!(file_name_of("a\nb"), "ab");
        let root = std::env::temp_dir().join(format!("vigil-agent-named-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let whole = root.join("ab".repeat(32));
        std::fs::write(&whole, b"bytes").unwrap();
        let named = named_copy(&whole, &root.join("named"), "shop-42.tar.gz").unwrap();
        assert_eq!(named, root.join("named").join("shop-42.tar.gz"));
        assert_eq!(std::fs::read(&named).unwrap(), b"bytes");
        assert_eq!(
            named_copy(&whole, &root.join("named"), "shop-42.tar.gz").unwrap(),
            named
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn artifact_ids_are_lowercase_sha256_hex() {
        assert!(is_artifact_id(&"ab".repeat(32)));
        assert!(!is_artifact_id(&"AB".repeat(32)));
        assert!(!is_artifact_id(&"ab".repeat(31)));
        assert!(!is_artifact_id("../../etc/passwd"));
        assert!(is_key_hex(&"0F".repeat(32)));
        assert!(!is_key_hex("zz"));
    }
}
