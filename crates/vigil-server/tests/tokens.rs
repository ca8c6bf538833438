//! The admin API over tokens: list them (never their hashes) and revoke one; a revoked token is
//! refused at once on the server that revoked it.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::json;
use support::TestServer;

const NOW: i64 = 1_700_000_000;

fn token_named<'list>(tokens: &'list serde_json::Value, name: &str) -> &'list serde_json::Value {
    tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|token| token["name"] == name)
        .unwrap()
}

#[test]
fn admins_list_and_revoke_tokens_and_a_revoked_token_is_refused_at_once() {
    let server = TestServer::start(NOW);
    let (status, refused) = server.get("/api/v1/tokens", &server.operator);
    assert_eq!(status, 403, "{refused}");
    let (status, tokens) = server.get("/api/v1/tokens", &server.admin);
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens.as_array().unwrap().len(), 4);
    let ingest = token_named(&tokens, "ingest");
    assert_eq!(ingest["role"], "ingest");
    assert_eq!(ingest["created_at"], NOW);
    assert_eq!(ingest["revoked_at"], serde_json::Value::Null);
    assert!(ingest.get("hash").is_none(), "{ingest}");
    let ingest_id = ingest["id"].as_i64().unwrap();

    let push = || {
        server.post(
            "/api/v1/ingest/samples",
            &server.ingest,
            &json!({"samples": [{"host": "h1", "app": "shop", "metric": "cpu", "time": NOW,
                                 "value": 1.0}]}),
        )
    };
    assert_eq!(push().0, 200, "the token works and is now cached");

    let revoke_path = format!("/api/v1/tokens/{ingest_id}/revoke");
    let (status, refused) = server.post(&revoke_path, &server.operator, &json!({}));
    assert_eq!(status, 403, "{refused}");
    let (status, bad) = server.post("/api/v1/tokens/abc/revoke", &server.admin, &json!({}));
    assert_eq!(status, 400, "{bad}");
    assert!(bad["error"].as_str().unwrap().contains("id"), "{bad}");
    let (status, missing) = server.post("/api/v1/tokens/9999/revoke", &server.admin, &json!({}));
    assert_eq!(status, 404, "{missing}");
    assert!(
        missing["error"].as_str().unwrap().contains("9999"),
        "{missing}"
    );

    let (status, revoked) = server.post(&revoke_path, &server.admin, &json!({}));
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["id"], ingest_id);
    assert_eq!(revoked["revoked_at"], NOW);
    let (status, refused) = push();
    assert_eq!(status, 401, "{refused}");
    assert_eq!(refused["error"], "api token was revoked");

    server.clock.advance(60);
    let (status, again) = server.post(&revoke_path, &server.admin, &json!({}));
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["revoked_at"], NOW, "the first revocation is kept");
    let (_, tokens) = server.get("/api/v1/tokens", &server.admin);
    assert_eq!(token_named(&tokens, "ingest")["revoked_at"], NOW);
    assert_eq!(
        token_named(&tokens, "admin")["revoked_at"],
        serde_json::Value::Null
    );
}
