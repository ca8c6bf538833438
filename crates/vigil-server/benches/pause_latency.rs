//! Time from the last sample of a step to the pause: a server in-process on loopback with a
//! SQLite store; a fleet of 4 release and 4 reference hosts × 20 metrics at 30 s steps gets an
//! hour of baseline, a deploy, then a fault on the release hosts' first metric. The clock is
//! held at the step's time (before any grace), so the step is judged because it is complete.
//! Prints the wall time from the answer to the step's last request to the release being
//! paused, median over several releases.
//!
//! `cargo bench -p vigil-server --bench pause_latency -- [--releases N]`
#![allow(clippy::disallowed_methods, clippy::print_stdout, clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::post;
use vigil_core::release::Role;

const STEP: i64 = 30;
const METRICS: usize = 20;

fn get(agent: &ureq::Agent, url: &str, token: &str) -> serde_json::Value {
    let mut response = agent
        .get(url)
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap();
    serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
}

fn main() {
    let releases = support::number_argument("releases", 5);
    let deploy = 1_700_000_040i64 / STEP * STEP;
    let start_time = deploy - 3600;
    let (server, tokens) =
        support::start_server("pause-latency", start_time, &[("bench", Role::Admin)]);
    let token = tokens[0].as_str();
    let clock = &server.clock;
    let base = &server.base;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut latencies = Vec::new();
    for number in 0..releases {
        let app = format!("app{number}");
        let release_hosts: Vec<String> = (0..4).map(|h| format!("{app}-r{h}")).collect();
        let reference_hosts: Vec<String> = (0..4).map(|h| format!("{app}-k{h}")).collect();
        let offset = number as i64 * 7200;
        let deployed_at = deploy + offset;
        clock.set(deployed_at - 3600);
        post(
            &agent,
            &format!("{base}/api/v1/releases"),
            token,
            &json!({
                "id": app, "app": app, "version": "2", "hosts": release_hosts,
                "reference": {"type": "hosts", "hosts": reference_hosts}, "step_seconds": STEP,
                "settings": {"judge_unlisted_metrics": true},
            }),
        );
        let samples_at = |t: i64, faulty: bool| {
            let mut samples = Vec::new();
            for (index, host) in release_hosts
                .iter()
                .chain(reference_hosts.iter())
                .enumerate()
            {
                for metric in 0..METRICS {
                    let noise = ((t / STEP * 7 + index as i64 * 13 + metric as i64) % 11) as f64;
                    let hurt = faulty && index < 4 && metric == 0;
                    let value = (100.0 + noise) * if hurt { 3.0 } else { 1.0 };
                    samples.push(json!({"host": host, "app": app, "metric": format!("m{metric}"), "time": t, "value": value}));
                }
            }
            json!({ "samples": samples })
        };
        let mut t = deployed_at - 3600;
        while t < deployed_at {
            clock.set(t);
            post(
                &agent,
                &format!("{base}/api/v1/ingest/samples"),
                token,
                &samples_at(t, false),
            );
            t += STEP;
        }
        clock.set(deployed_at);
        post(
            &agent,
            &format!("{base}/api/v1/releases/{app}/batches/0/deployed"),
            token,
            &json!({"at": deployed_at}),
        );
        let mut paused_after = None;
        while t < deployed_at + 3600 && paused_after.is_none() {
            clock.set(t);
            let faulty = t >= deployed_at + 300;
            post(
                &agent,
                &format!("{base}/api/v1/ingest/samples"),
                token,
                &samples_at(t, faulty),
            );
            let sent = Instant::now();
            // Wait for this step's judgement (or give up after 3 s, before the next step).
            while sent.elapsed() < Duration::from_secs(3) {
                let release = get(&agent, &format!("{base}/api/v1/releases/{app}"), token);
                if release["state"] == "paused" {
                    paused_after = Some(sent.elapsed());
                    break;
                }
                let verdict = get(
                    &agent,
                    &format!("{base}/api/v1/releases/{app}/findings"),
                    token,
                );
                if !faulty
                    && verdict["history"]
                        .as_array()
                        .is_some_and(|history| !history.is_empty())
                    && !release["verdict"].is_null()
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            t += STEP;
        }
        let latency = paused_after.expect("the release did not pause");
        println!(
            "release {number}: paused {:.0} ms after the step's last sample was acknowledged",
            latency.as_secs_f64() * 1000.0
        );
        latencies.push(latency.as_secs_f64());
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "last sample to pause: median {:.0} ms, worst {:.0} ms over {releases} releases",
        latencies[latencies.len() / 2] * 1000.0,
        latencies[latencies.len() - 1] * 1000.0
    );
}
