//! `vigil replay --server` against a running `vigil serve`: releases imported with their data,
//! feedback given, then the stored history replayed through the API, its progress followed,
//! and the same report a corpus replay prints (with its `summary` line) and one JSON line per
//! release. On SQLite, and on PostgreSQL when `VIGIL_TEST_POSTGRES` names a server.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod support;

use serde_json::{json, Value};
use support::{call, create_token, free_port, scratch_postgres, serve, vigil, Dir};

fn import(port: u16, token: &str, name: &str) {
    let bundle = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../../examples/releases/{name}.json.gz")),
    )
    .unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let status = agent
        .post(&format!("http://127.0.0.1:{port}/api/v1/releases/import"))
        .header("Authorization", &format!("Bearer {token}"))
        .send(&bundle[..])
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(status, 201, "{name}");
}

/// Stores three releases on the server behind `database` and replays them with the binary.
fn replays_the_servers_history(database: &str, dir: &Dir) {
    let admin = create_token(database, "admin");
    let operator = create_token(database, "operator");
    let viewer = create_token(database, "viewer");
    let port = free_port();
    let _server = serve(database, port);
    // A pause on a fault, confirmed; a healthy release recommended, marked a false alarm; a
    // healthy release passed, unreviewed.
    for name in ["pub0031", "pub0003", "pub0087"] {
        import(port, &admin, name);
    }
    for (id, kind) in [("pub0031", "confirm_fault"), ("pub0003", "false_alarm")] {
        let (status, answer) = call(
            port,
            "POST",
            &format!("/api/v1/releases/{id}/feedback"),
            &operator,
            Some(json!({"kind": kind})),
        );
        assert_eq!(status, 201, "{answer}");
    }
    let server = format!("http://127.0.0.1:{port}");
    let rows = dir.0.join("history.jsonl");
    let output = vigil()
        .args([
            "replay", "--server", &server, "--token", &operator, "--model", "none", "--out",
        ])
        .arg(&rows)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.starts_with(
            "replayed 3 stored releases with the funnel alone: 1 paused, 1 recommended\n\
             labelled: 1 faults, 2 healthy (1 marked a false alarm, 1 unreviewed)"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("precision 1.000  recall 1.000"), "{stdout}");
    assert!(
        stdout.contains("false recommendations 0.500 of healthy releases"),
        "{stdout}"
    );
    assert!(stdout.contains("\n  http.rt_ms "), "{stdout}");
    let summary_text = stdout
        .lines()
        .find_map(|line| line.strip_prefix("summary "))
        .unwrap();
    // In the order of a corpus replay's summary.
    assert!(
        summary_text.starts_with(r#"{"releases":3,"missing":0,"tp":1,"fp":0,"fn":0,"tn":2,"#),
        "{summary_text}"
    );
    let summary: Value = serde_json::from_str(summary_text).unwrap();
    assert_eq!(
        (
            &summary["tp"],
            &summary["fp"],
            &summary["fn"],
            &summary["tn"]
        ),
        (&json!(1), &json!(0), &json!(0), &json!(2)),
        "{summary}"
    );
    let written: Vec<Value> = std::fs::read_to_string(&rows)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let ids: Vec<&str> = written
        .iter()
        .map(|row| row["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{written:?}");
    for id in ["pub0031", "pub0003", "pub0087"] {
        assert!(ids.contains(&id), "{ids:?}");
    }
    // A viewer may not start one: the command fails saying why.
    let output = vigil()
        .args([
            "replay", "--server", &server, "--token", &viewer, "--out", "-",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("the server answered 403"), "{stderr}");

    // The stored releases, labelled the same way, train a model with the example corpus; it
    // lands in the store as a candidate, which a replay of the history can then apply.
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let model_file = dir.0.join("model.json");
    let output = vigil()
        .arg("train")
        .arg(&examples)
        .args(["--database", database, "--folds", "0", "--out"])
        .arg(&model_file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(
            "stored releases: 3 labelled (1 faults, 2 healthy of which 1 unreviewed), 3 traced"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("trained on 21 releases"), "{stdout}");
    assert!(stdout.contains("stored as candidate model v1"), "{stdout}");
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(&model_file).unwrap()).unwrap();
    assert_eq!(written["training"]["sources"][1], "store", "{written}");
    let output = vigil()
        .args([
            "replay", "--server", &server, "--token", &operator, "--model", "1", "--out", "-",
        ])
        .output()
        .unwrap();
    // With `--out -` the rows go to standard output and the report to standard error.
    let report = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{report}");
    assert!(
        report.starts_with(
            "replayed 3 stored releases with model version 1: 1 paused, 0 recommended"
        ),
        "{report}"
    );
}

#[test]
fn vigil_replay_server_replays_a_servers_stored_history_on_sqlite() {
    let dir = Dir::new("history-sqlite");
    let database = dir.0.join("vigil.db").display().to_string();
    replays_the_servers_history(&database, &dir);
}

#[test]
fn vigil_replay_server_replays_a_servers_stored_history_on_postgres() {
    let Some(database) = scratch_postgres("vigil replay --server on PostgreSQL") else {
        return;
    };
    let dir = Dir::new("history-postgres");
    replays_the_servers_history(database.url(), &dir);
}
