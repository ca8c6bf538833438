//! Agent polls against a store holding many releases the executor ships: a fleet of HOSTS
//! agents, RELEASES unfinished releases each over every host, every agent polling once. Prints
//! the polls per second with a fresh `FetchIndex` per poll (each poll reads every unfinished
//! release, as every poll did before the index) and with the one index a replica shares (read
//! once a second), and their ratio, medians of several runs in one process.
//!
//! `cargo bench -p vigil-executor --bench poll` (`-- --hosts 1000 --releases 20 --runs 5`).
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::time::Instant;

use vigil_core::agent::{AgentHello, AgentPoll, PlanStep};
use vigil_core::release::{ReferenceHosts, ReleaseHosts};
use vigil_executor::agents::{poll, FetchIndex};
use vigil_executor::order::{resolve, CreateDeployment};
use vigil_store::testing::TempDir;
use vigil_store::Store;

struct Settings {
    hosts: usize,
    releases: usize,
    runs: usize,
}

fn settings() -> Settings {
    let mut settings = Settings {
        hosts: 1_000,
        releases: 20,
        runs: 5,
    };
    let arguments: Vec<String> = std::env::args().collect();
    for pair in arguments.windows(2) {
        match pair[0].as_str() {
            "--hosts" => settings.hosts = pair[1].parse().unwrap(),
            "--releases" => settings.releases = pair[1].parse().unwrap(),
            "--runs" => settings.runs = pair[1].parse().unwrap(),
            _ => {}
        }
    }
    settings
}

fn fleet(store: &dyn Store, settings: &Settings, now: i64) -> Vec<String> {
    let hosts: Vec<String> = (0..settings.hosts)
        .map(|index| format!("web-{index}"))
        .collect();
    for host in &hosts {
        store
            .register_agent(
                &AgentHello {
                    host: host.clone(),
                    app: "shop".to_owned(),
                    labels: BTreeMap::new(),
                    version: Some("1".to_owned()),
                    peer_addr: None,
                    agent_version: "bench".to_owned(),
                },
                now,
            )
            .unwrap();
    }
    let agents: Vec<_> = store
        .agents()
        .unwrap()
        .into_iter()
        .map(|agent| agent.record)
        .collect();
    for index in 0..settings.releases {
        let order = CreateDeployment {
            id: Some(format!("r{index}")),
            app: "shop".to_owned(),
            version: format!("2.{index}"),
            artifact: format!("{index:064x}"),
            hosts: ReleaseHosts::Names(hosts.clone()),
            plan: vec![PlanStep {
                size: "100%".to_owned(),
                observe_seconds: 600,
            }],
            reference: ReferenceHosts::NotYetDeployed,
            step_seconds: 30,
            metrics: Vec::new(),
            settings: serde_json::Map::new(),
            rules: Vec::new(),
        };
        let (id, spec, execution) = resolve(order, &agents).unwrap();
        let release =
            vigil_deploy::requests::new_release(id.unwrap(), spec, "bench".to_owned(), now);
        store.create_execution(&release, &execution).unwrap();
    }
    hosts
}

/// Polls per second of every host polling once, `index_for` giving each poll its index.
fn polls_per_second(
    store: &dyn Store,
    hosts: &[String],
    now: i64,
    index_for: &dyn Fn() -> Option<FetchIndex>,
    shared: &FetchIndex,
    releases: usize,
) -> f64 {
    let request = AgentPoll::default();
    let started = Instant::now();
    for host in hosts {
        let fresh = index_for();
        let index = fresh.as_ref().unwrap_or(shared);
        let orders = poll(store, index, host, &request, now).unwrap();
        assert_eq!(orders.fetch.len(), releases);
    }
    hosts.len() as f64 / started.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let settings = settings();
    let dir = TempDir::new("vigil-poll-bench").unwrap();
    let store = vigil_store::open(&dir.path().join("vigil.db").display().to_string()).unwrap();
    let now = 1_700_000_000;
    let hosts = fleet(store.as_ref(), &settings, now);
    println!(
        "{} agents polling once each, {} unfinished releases over every host (SQLite file)",
        settings.hosts, settings.releases
    );
    let mut every_poll_reads = Vec::new();
    let mut shared_index = Vec::new();
    for run in 0..settings.runs {
        let fresh = polls_per_second(
            store.as_ref(),
            &hosts,
            now,
            &|| Some(FetchIndex::default()),
            &FetchIndex::default(),
            settings.releases,
        );
        let shared = FetchIndex::default();
        let once = polls_per_second(
            store.as_ref(),
            &hosts,
            now,
            &|| None,
            &shared,
            settings.releases,
        );
        println!(
            "run {}: every poll reads the releases {fresh:.0} polls/s, one read a second {once:.0} polls/s",
            run + 1
        );
        every_poll_reads.push(fresh);
        shared_index.push(once);
    }
    let fresh = median(every_poll_reads);
    let once = median(shared_index);
    println!(
        "median: every poll reads the releases {fresh:.0} polls/s, one read a second {once:.0} polls/s, {:.1}x",
        once / fresh
    );
}
