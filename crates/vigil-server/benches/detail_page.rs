//! Time to render a release's page end to end: a server in this process (SQLite store in a
//! temporary directory, test clock) holds a release of 25 release hosts (5 batches of 5) and 25
//! reference hosts × 20 metrics at 30 s steps: an hour of baseline, then two batches deployed,
//! after which the deployed hosts' first metric triples and they log a new error, so the guard
//! pauses the release (a few more steps of data follow the pause). A signed-in operator then
//! fetches `/releases/{id}` over loopback with `ureq`.
//!
//! Prints the median, fastest and slowest of the timed fetches (after warm-up ones) and the
//! page's size; the goal is a median under 300 ms.
//!
//! `cargo bench -p vigil-server --bench detail_page -- [--runs N]`
#![allow(clippy::disallowed_methods, clippy::print_stdout, clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::post;
use vigil_core::release::Role;

const STEP: i64 = 30;
const METRICS: usize = 20;
const RELEASE_HOSTS: usize = 25;
const REFERENCE_HOSTS: usize = 25;
const BATCH_SIZE: usize = 5;
/// Batches deployed before the fault shows: the release is still in progress.
const BATCHES_DEPLOYED: usize = 2;
/// Steps of data after the pause.
const STEPS_AFTER_PAUSE: usize = 10;
const WARM_UP: usize = 3;
/// Release hosts that log the new error once the fault starts.
const RARE_ERROR_HOSTS: usize = 2;
const RELEASE_ID: &str = "shop-2";
const GOAL_MILLISECONDS: f64 = 300.0;

/// Every host's samples and log lines at `time`. Every host logs a warning; once `faulty`,
/// the deployed release hosts' first metric triples and a few of them log a new error now and
/// then.
fn step_data(
    time: i64,
    release: &[String],
    reference: &[String],
    deployed: usize,
    faulty: bool,
) -> (serde_json::Value, serde_json::Value) {
    let mut samples = Vec::with_capacity((release.len() + reference.len()) * METRICS);
    let mut lines = Vec::new();
    for (index, host) in release.iter().chain(reference).enumerate() {
        for metric in 0..METRICS {
            let noise = ((time / STEP * 7 + index as i64 * 13 + metric as i64 * 3) % 11) as f64;
            let level = 100.0 + metric as f64 * 10.0 + noise;
            let hurt = faulty && index < deployed && metric == 0;
            let value = if hurt { level * 3.0 } else { level };
            samples.push(json!({
                "host": host, "app": "shop", "metric": format!("m{metric:02}"),
                "time": time, "value": value,
            }));
        }
        lines.push(json!({
            "host": host, "app": "shop", "time": time,
            "line": format!("2024-01-01 00:00:00,000 WARN [main] cache miss for key {}", time % 97 + index as i64),
        }));
        if faulty && index < deployed.min(RARE_ERROR_HOSTS) && (time / STEP) % 2 == 0 {
            lines.push(json!({
                "host": host, "app": "shop", "time": time,
                "line": format!("2024-01-01 00:00:00,000 ERROR [pool] connection refused by db after {} ms", 100 + index * 7),
            }));
        }
    }
    (json!({ "samples": samples }), json!({ "lines": lines }))
}

fn main() {
    let runs = support::number_argument("runs", 21);
    let deploy = 1_700_000_040i64 / STEP * STEP;
    let (server, tokens) = support::start_server(
        "detail-page",
        deploy - 3600,
        &[("pipeline", Role::Admin), ("oncall", Role::Operator)],
    );
    let (admin, operator) = (&tokens[0], &tokens[1]);
    let (base, clock, state) = (&server.base, &server.clock, &server.state);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();

    let release_hosts: Vec<String> = (0..RELEASE_HOSTS)
        .map(|host| format!("shop-r{host:02}"))
        .collect();
    let reference_hosts: Vec<String> = (0..REFERENCE_HOSTS)
        .map(|host| format!("shop-k{host:02}"))
        .collect();
    let batches: Vec<serde_json::Value> = release_hosts
        .chunks(BATCH_SIZE)
        .map(|hosts| json!({ "hosts": hosts }))
        .collect();
    let metrics: Vec<serde_json::Value> = (0..METRICS)
        .map(|metric| json!({"name": format!("m{metric:02}"), "kind": "middleware", "unit": "ms", "direction": "increase", "critical": metric == 0}))
        .collect();
    post(
        &agent,
        &format!("{base}/api/v1/releases"),
        admin,
        &json!({
            "id": RELEASE_ID, "app": "shop", "version": "2", "hosts": release_hosts,
            "reference": {"type": "hosts", "hosts": reference_hosts}, "batches": batches,
            "step_seconds": STEP, "observe_seconds": 3600, "metrics": metrics,
        }),
    );

    let feeding = Instant::now();
    let grace = state.guard.config().grace_seconds;
    let mut deployed_hosts = 0;
    let mut paused_at = None;
    let mut steps_after_pause = 0;
    let mut time = deploy - 3600;
    while steps_after_pause < STEPS_AFTER_PAUSE {
        clock.set(time);
        let batch_number = (time - deploy) / 300;
        if time >= deploy && batch_number < BATCHES_DEPLOYED as i64 && (time - deploy) % 300 == 0 {
            post(
                &agent,
                &format!("{base}/api/v1/releases/{RELEASE_ID}/batches/{batch_number}/deployed"),
                admin,
                &json!({ "at": time }),
            );
            deployed_hosts += BATCH_SIZE;
        }
        let faulty = time >= deploy + 300 * (BATCHES_DEPLOYED as i64 - 1);
        let (mut samples, mut lines) = step_data(
            time,
            &release_hosts,
            &reference_hosts,
            deployed_hosts,
            faulty,
        );
        lines["key"] = json!(format!("logs-{time}"));
        post(&agent, &format!("{base}/api/v1/ingest/logs"), admin, &lines);
        samples["key"] = json!(format!("samples-{time}"));
        post(
            &agent,
            &format!("{base}/api/v1/ingest/samples"),
            admin,
            &samples,
        );
        clock.set(time + grace);
        state.guard.pass().unwrap();
        if paused_at.is_none() {
            let release = state.store.release(RELEASE_ID).unwrap().unwrap();
            if release.state == vigil_core::release::ReleaseState::Paused {
                paused_at = Some(time);
            }
        } else {
            steps_after_pause += 1;
        }
        assert!(time < deploy + 3600, "the release did not pause");
        time += STEP;
    }
    let pause_time = paused_at.unwrap();
    let verdicts = state.store.verdicts(RELEASE_ID).unwrap();
    if let Some(deciding) = verdicts.last() {
        for finding in &deciding.findings {
            println!("finding at the pause: {}", finding.explanation);
        }
    }
    println!(
        "fed {} steps of {} hosts x {METRICS} metrics in {:.1} s; paused {} s after the first deploy, {} of {} batches done",
        (time - (deploy - 3600)) / STEP,
        RELEASE_HOSTS + REFERENCE_HOSTS,
        feeding.elapsed().as_secs_f64(),
        pause_time - deploy,
        BATCHES_DEPLOYED,
        RELEASE_HOSTS / BATCH_SIZE
    );

    let mut signin = agent
        .post(&format!("{base}/signin"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Origin", base.as_str())
        .send(format!("token={operator}&next=%2Freleases").as_bytes())
        .unwrap();
    assert_eq!(
        signin.status().as_u16(),
        303,
        "{}",
        signin.body_mut().read_to_string().unwrap()
    );
    let cookie = signin
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();

    let fetch = |path: &str| {
        let sent = Instant::now();
        let mut response = agent
            .get(&format!("{base}{path}"))
            .header("Cookie", &cookie)
            .call()
            .unwrap();
        let page = response
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}: {page}");
        (sent.elapsed().as_secs_f64(), page)
    };
    let detail = format!("/releases/{RELEASE_ID}");
    let (_, page) = fetch(&detail);
    assert!(
        page.contains("<span>paused</span>"),
        "the page shows the pause"
    );
    let charts = page.matches("role=\"img\"").count();
    assert!(charts >= 1, "the page has a chart");
    let findings = page.matches("<article class=\"finding\"").count();
    for _ in 0..WARM_UP {
        fetch(&detail);
    }
    let mut timings: Vec<f64> = (0..runs).map(|_| fetch(&detail).0).collect();
    timings.sort_by(f64::total_cmp);
    let median = timings[timings.len() / 2] * 1000.0;
    println!(
        "detail page {detail}: {} findings, {charts} charts, {:.0} KiB ({} bytes)",
        findings,
        page.len() as f64 / 1024.0,
        page.len()
    );
    println!(
        "detail page render end to end: median {median:.1} ms, fastest {:.1} ms, slowest {:.1} ms over {runs} runs (goal < {GOAL_MILLISECONDS:.0} ms: {})",
        timings[0] * 1000.0,
        timings[timings.len() - 1] * 1000.0,
        if median < GOAL_MILLISECONDS { "met" } else { "missed" }
    );
    let mut list_timings: Vec<f64> = (0..runs).map(|_| fetch("/releases").0).collect();
    list_timings.sort_by(f64::total_cmp);
    println!(
        "releases list: median {:.1} ms over {runs} runs",
        list_timings[list_timings.len() / 2] * 1000.0
    );
}
