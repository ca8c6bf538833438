//! Artifacts through the server as agents reach it: an upload, its signed manifest and the
//! server's key, every piece through the origin, the tracker's announces, and two peers
//! fetching the artifact over HTTP from the server and each other.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::json;
use support::{agent, TempDir, TestServer};
use vigil_core::agent::{Announce, ArtifactRecord, Manifest, Swarm};
use vigil_p2p::fetch::{fetch, Coordinator, Fetch};
use vigil_p2p::manifest::{verify_manifest, verify_piece};
use vigil_p2p::peer::{Limits, PeerNode};
use vigil_p2p::P2pError;

const NOW: i64 = 1_800_000_000;

fn artifact_bytes(length: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect()
}

fn upload(server: &TestServer, token: &str, name: &str, bytes: &[u8]) -> (u16, String) {
    let mut response = agent()
        .post(&format!("{}/api/v1/artifacts?name={name}", server.base))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/octet-stream")
        .send(bytes)
        .unwrap();
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().unwrap())
}

/// (status, body bytes, Retry-After)
fn get_bytes(server: &TestServer, path: &str, token: &str) -> (u16, Vec<u8>) {
    let mut response = agent()
        .get(&format!("{}{path}", server.base))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap();
    let status = response.status().as_u16();
    let bytes = response
        .body_mut()
        .with_config()
        .limit(32 << 20)
        .read_to_vec()
        .unwrap();
    (status, bytes)
}

#[test]
fn an_uploaded_artifact_is_signed_served_piece_by_piece_and_tracked() {
    let server = TestServer::start(NOW);
    let bytes = artifact_bytes(700_000);
    let (status, body) = upload(&server, &server.admin, "shop-42.tar.gz", &bytes);
    assert_eq!(status, 201, "{body}");
    let record: ArtifactRecord = serde_json::from_str(&body).unwrap();
    let id = record.manifest.sha256.clone();
    assert_eq!(record.created_by, "admin");
    assert_eq!(record.manifest.size, 700_000);
    assert_eq!(record.manifest.pieces.len(), 3);

    // The same bytes again: the record kept the first time.
    let (status, again) = upload(&server, &server.admin, "renamed.tar.gz", &bytes);
    assert_eq!(status, 200, "{again}");
    let again: ArtifactRecord = serde_json::from_str(&again).unwrap();
    assert_eq!(again, record);
    // Only admins upload; a name is needed. (Small bodies: a refusal answers before the body
    // is read, and a large one would meet a closed connection.)
    let (status, _) = upload(&server, &server.ingest, "x", &bytes[..1024]);
    assert_eq!(status, 403);
    let (status, refused) = upload(&server, &server.admin, "", &bytes[..1024]);
    assert_eq!(status, 400);
    assert!(refused.contains("name"), "{refused}");

    // An agent checks the manifest with the server's key.
    let (status, manifest) =
        server.get(&format!("/api/v1/artifacts/{id}/manifest"), &server.ingest);
    assert_eq!(status, 200, "{manifest}");
    let manifest: Manifest = serde_json::from_value(manifest).unwrap();
    assert_eq!(manifest, record.manifest);
    let (status, key) = server.get("/api/v1/artifact-key", &server.ingest);
    assert_eq!(status, 200);
    let public_key = key["public_key"].as_str().unwrap();
    verify_manifest(&manifest, public_key).unwrap();
    let mut forged = manifest.clone();
    forged.name = "evil.tar.gz".to_string();
    assert!(verify_manifest(&forged, public_key).is_err());

    // Every piece through the origin, verified, makes the whole file.
    let mut whole = Vec::new();
    for index in 0..manifest.piece_count() {
        let (status, piece) = get_bytes(
            &server,
            &format!("/api/v1/artifacts/{id}/pieces/{index}"),
            &server.ingest,
        );
        assert_eq!(status, 200);
        assert!(verify_piece(&manifest, index, &piece));
        whole.extend_from_slice(&piece);
    }
    assert!(whole == bytes);
    let (status, _) = get_bytes(
        &server,
        &format!("/api/v1/artifacts/{id}/pieces/3"),
        &server.ingest,
    );
    assert_eq!(status, 404);
    let (status, _) = get_bytes(
        &server,
        &format!("/api/v1/artifacts/{id}/pieces/x"),
        &server.ingest,
    );
    assert_eq!(status, 400);
    let unknown = "0".repeat(64);
    let (status, _) = server.get(
        &format!("/api/v1/artifacts/{unknown}/manifest"),
        &server.ingest,
    );
    assert_eq!(status, 404);

    // The tracker: a host holding pieces is handed to one that holds none; a bad bitfield is
    // refused naming the field; a peer reported bad is handed out no more.
    let announce = format!("/api/v1/artifacts/{id}/announce");
    let (status, _) = server.post(
        &announce,
        &server.ingest,
        &json!({"host": "web-1", "addr": "127.0.0.1:7001", "have": "e0"}),
    );
    assert_eq!(status, 200);
    let (status, swarm) = server.post(
        &announce,
        &server.ingest,
        &json!({"host": "web-2", "addr": "127.0.0.1:7002", "have": "00"}),
    );
    assert_eq!(status, 200, "{swarm}");
    let swarm: Swarm = serde_json::from_value(swarm).unwrap();
    assert_eq!(swarm.peers.len(), 1);
    assert_eq!(swarm.peers[0].host, "web-1");
    let (status, refused) = server.post(
        &announce,
        &server.ingest,
        &json!({"host": "web-2", "addr": "127.0.0.1:7002", "have": "ff"}),
    );
    assert_eq!(status, 400);
    assert!(
        refused["error"].as_str().unwrap().starts_with("have:"),
        "{refused}"
    );
    let (status, refused) = server.post(
        &announce,
        &server.ingest,
        &json!({"host": "web-2", "addr": "nowhere", "have": "00"}),
    );
    assert_eq!(status, 400, "{refused}");
    let (status, swarm) = server.post(
        &announce,
        &server.ingest,
        &json!({"host": "web-2", "addr": "127.0.0.1:7002", "have": "00", "bad_peers": ["web-1"]}),
    );
    assert_eq!(status, 200);
    assert_eq!(swarm["peers"], json!([]));
    let (status, _) = server.post(
        &announce,
        &server.viewer,
        &json!({"host": "web-3", "addr": "127.0.0.1:7003", "have": "00"}),
    );
    assert_eq!(status, 403);

    let progress = vigil_web::artifacts::artifact_progress(&server.state, &id);
    let held: Vec<(String, u32)> = progress
        .iter()
        .map(|host| (host.host.clone(), host.pieces_held))
        .collect();
    assert_eq!(
        held,
        vec![("web-1".to_string(), 3), ("web-2".to_string(), 0)]
    );
    let (status, list) = server.get("/api/v1/artifacts", &server.viewer);
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(server
        .state
        .artifacts
        .as_ref()
        .unwrap()
        .dir()
        .join(&id)
        .exists());
}

#[test]
fn an_upload_over_the_limit_is_refused_with_413_and_leaves_nothing() {
    let config = vigil_server::ServerConfig {
        max_artifact_bytes: 100_000,
        ..vigil_server::ServerConfig::default()
    };
    let dir = TempDir::new("artifact-limit");
    let database = dir.0.join("vigil.db").display().to_string();
    let artifact_dir = dir.0.join("vigil-artifacts");
    let server = TestServer::start_with(NOW, &database, Some(dir), config);
    let (status, refused) = upload(&server, &server.admin, "big.bin", &artifact_bytes(100_001));
    assert_eq!(status, 413, "{refused}");
    let (status, body) = upload(
        &server,
        &server.admin,
        "small.bin",
        &artifact_bytes(100_000),
    );
    assert_eq!(status, 201, "{body}");
    let mut files: Vec<String> = std::fs::read_dir(&artifact_dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    files.sort();
    let record: ArtifactRecord = serde_json::from_str(&body).unwrap();
    assert_eq!(
        files,
        vec![
            record.manifest.sha256.clone(),
            "manifest-key.pk8".to_string()
        ]
    );
    let (status, list) = server.get("/api/v1/artifacts", &server.viewer);
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
}

/// The server as an agent reaches it: announces and origin pieces over HTTP.
struct HttpCoordinator {
    base: String,
    token: String,
}

impl Coordinator for HttpCoordinator {
    fn announce(&self, artifact: &str, announce: &Announce) -> Result<Swarm, P2pError> {
        let mut response = agent()
            .post(&format!(
                "{}/api/v1/artifacts/{artifact}/announce",
                self.base
            ))
            .header("Authorization", &format!("Bearer {}", self.token))
            .send_json(announce)
            .map_err(|error| P2pError::Coordinator(error.to_string()))?;
        if response.status() != 200 {
            return Err(P2pError::Coordinator(format!(
                "announce answered {}",
                response.status()
            )));
        }
        response
            .body_mut()
            .read_json()
            .map_err(|error| P2pError::Coordinator(error.to_string()))
    }

    fn origin_piece(&self, artifact: &str, index: u32) -> Result<Option<Vec<u8>>, P2pError> {
        let mut response = agent()
            .get(&format!(
                "{}/api/v1/artifacts/{artifact}/pieces/{index}",
                self.base
            ))
            .header("Authorization", &format!("Bearer {}", self.token))
            .call()
            .map_err(|error| P2pError::Coordinator(error.to_string()))?;
        match response.status().as_u16() {
            200 => Ok(Some(
                response
                    .body_mut()
                    .with_config()
                    .limit(32 << 20)
                    .read_to_vec()
                    .map_err(|error| P2pError::Coordinator(error.to_string()))?,
            )),
            503 => Ok(None),
            status => Err(P2pError::Coordinator(format!("origin answered {status}"))),
        }
    }
}

#[test]
fn peers_fetch_an_uploaded_artifact_through_the_server_and_each_other() {
    let server = TestServer::start(NOW);
    let bytes = artifact_bytes(3 * 1024 * 1024 + 5);
    let (status, body) = upload(&server, &server.admin, "shop-43.tar.gz", &bytes);
    assert_eq!(status, 201, "{body}");
    let record: ArtifactRecord = serde_json::from_str(&body).unwrap();
    let (_, key) = server.get("/api/v1/artifact-key", &server.ingest);
    verify_manifest(&record.manifest, key["public_key"].as_str().unwrap()).unwrap();
    let dir = TempDir::new("artifact-peers");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let paths = runtime.block_on(async {
        let mut handles = Vec::new();
        for index in 0..3 {
            let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
            let limits = Limits {
                up_bytes_per_second: Some(20_000_000),
                down_bytes_per_second: None,
            };
            let node = PeerNode::start(listen, dir.0.join(format!("host-{index}")), limits)
                .await
                .unwrap();
            let request = Fetch {
                manifest: record.manifest.clone(),
                host: format!("host-{index}"),
                coordinator: Arc::new(HttpCoordinator {
                    base: server.base.clone(),
                    token: server.ingest.clone(),
                }),
                progress: None,
            };
            handles.push(tokio::spawn(async move {
                let path = fetch(&node, request).await;
                node.shutdown();
                path
            }));
        }
        let mut paths = Vec::new();
        for handle in handles {
            paths.push(handle.await.unwrap().unwrap());
        }
        paths
    });
    for path in paths {
        assert!(std::fs::read(path).unwrap() == bytes);
    }
    let progress = vigil_web::artifacts::artifact_progress(&server.state, &record.manifest.sha256);
    assert_eq!(progress.len(), 3);
    assert!(progress
        .iter()
        .all(|host| host.pieces_held == record.manifest.piece_count()));
}
