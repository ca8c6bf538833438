//! `vigil token revoke` against a running `vigil serve`: the revoked token is refused within a
//! second (the server caches a token for the rest of the second it read it in), by name or by
//! id, and names that do not tell one token are refused. On SQLite, and on PostgreSQL when
//! `VIGIL_TEST_POSTGRES` names a server.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod support;

use std::ffi::OsStr;
use std::time::Duration;

use support::{
    call, create_named_token, create_token, free_port, now_seconds, scratch_postgres, serve, vigil,
    Dir,
};

/// Runs `vigil token ARGS --database DATABASE`; its success and output.
fn token_command(database: &str, args: &[&str]) -> (bool, String) {
    let output = vigil()
        .arg("token")
        .args(args)
        .arg("--database")
        .arg(OsStr::new(database))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn revoked_tokens_stop_working_within_a_second(database: &str) {
    let admin = create_token(database, "admin");
    let alice = create_named_token(database, "viewer", "alice");
    let ci = create_named_token(database, "ingest", "ci");
    create_named_token(database, "ingest", "ci");
    let port = free_port();
    let _server = serve(database, port);
    let (status, answer) = call(port, "GET", "/api/v1/releases", &alice, None);
    assert_eq!(status, 200, "{answer}");

    let (revoked, said) = token_command(database, &["revoke", "alice"]);
    assert!(revoked, "{said}");
    assert!(said.contains("revoked token 2 (alice, viewer)"), "{said}");
    let revoked_at = now_seconds();
    let refused_after = loop {
        let (status, answer) = call(port, "GET", "/api/v1/releases", &alice, None);
        let elapsed = now_seconds() - revoked_at;
        if status == 401 {
            assert_eq!(answer["error"], "api token was revoked");
            break elapsed;
        }
        assert_eq!(status, 200, "{answer}");
        assert!(
            elapsed < 3.0,
            "the revoked token still works after {elapsed:.2} s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    println!("revoked token refused after {refused_after:.3} s");
    assert!(
        refused_after <= 1.25,
        "refused only after {refused_after:.2} s"
    );

    let (ambiguous, said) = token_command(database, &["revoke", "ci"]);
    assert!(!ambiguous, "{said}");
    assert!(
        said.contains("2 tokens are named \"ci\" (ids 3, 4)"),
        "{said}"
    );
    let (unknown, said) = token_command(database, &["revoke", "nobody"]);
    assert!(!unknown, "{said}");
    assert!(
        said.contains("no token with id or name \"nobody\""),
        "{said}"
    );
    let (by_id, said) = token_command(database, &["revoke", "3"]);
    assert!(by_id, "{said}");
    let (listed, said) = token_command(database, &["list"]);
    assert!(listed, "{said}");
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines[0], "1\tadmin\tadmin");
    assert!(
        lines[1].starts_with("2\tviewer\talice\trevoked at "),
        "{said}"
    );
    assert!(lines[2].starts_with("3\tingest\tci\trevoked at "), "{said}");
    assert_eq!(lines[3], "4\tingest\tci");
    let push = serde_json::json!({"samples": []});
    let (status, answer) = call(port, "POST", "/api/v1/ingest/samples", &ci, Some(push));
    assert_eq!(status, 401, "{answer}");
    let (status, answer) = call(port, "GET", "/api/v1/releases", &admin, None);
    assert_eq!(status, 200, "{answer}");
}

#[test]
fn a_token_revoked_with_the_cli_is_refused_by_a_running_server_on_sqlite() {
    let dir = Dir::new("tokens");
    let database = dir.0.join("vigil.db");
    revoked_tokens_stop_working_within_a_second(&database.display().to_string());
}

#[test]
fn a_token_revoked_with_the_cli_is_refused_by_a_running_server_on_postgres() {
    let Some(scratch) = scratch_postgres("the token revocation test") else {
        return;
    };
    revoked_tokens_stop_working_within_a_second(scratch.url());
}
