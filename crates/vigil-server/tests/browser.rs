//! The release pages in a real browser: headless Chromium driven over WebDriver.
//!
//! A viewer sees a paused release but no action, and a cancel forged from the viewer's own page
//! is refused. An operator signs in (with the keyboard), finds the paused release in the list,
//! reads why it was paused beside its chart, resumes it and reports a false alarm; the store
//! then holds both. The open list follows a running release's pause without a reload. Last,
//! the operator goes to Apps with the keyboard and reads an app's coverage, and an app with a
//! large exporter's 290 metric families keeps a page of reasonable height. A viewer reads the
//! promoted model's held-out replay beside the funnel's on the Models page, and the operator
//! replays the stored history from the Replay page and reads its figures and chart.
//! Screenshots of each stage go to `target/browser-artifacts/`.
//!
//! Needs `/usr/bin/chromedriver` and `/usr/bin/chromium` (Debian's `chromium-driver` and
//! `chromium`); without them the test says so loudly and passes, unless
//! `VIGIL_REQUIRE_BROWSER=1` (as `.ci/run` sets), when it fails.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use serde_json::json;
use support::webdriver::{artifacts_dir, missing_browser, Browser};
use support::{server_with_paused_release, TestServer};
use vigil_core::release::{Action, FeedbackKind, ReleaseState};
use vigil_core::Clock;

/// The WebDriver code of the Enter key.
const ENTER: &str = "\u{E007}";

/// A browser, or `None` (after a loud message) when none is installed and none is required.
fn browser_or_skip() -> Option<Browser> {
    if let Some(missing) = missing_browser() {
        let required = std::env::var("VIGIL_REQUIRE_BROWSER").is_ok_and(|value| value == "1");
        assert!(
            !required,
            "VIGIL_REQUIRE_BROWSER=1 but {missing} is missing (install Debian chromium and chromium-driver)"
        );
        eprintln!(
            "\n==========\nSKIPPED: browser tests: {missing} not found (install Debian chromium and chromium-driver)\n==========\n"
        );
        return None;
    }
    Some(Browser::start().unwrap_or_else(|error| panic!("cannot start the browser: {error}")))
}

/// Waits up to 20 s for an element matching `css` whose text contains `wanted`; returns the
/// text.
fn wait_for_text(browser: &Browser, css: &str, wanted: &str) -> String {
    let mut last = String::new();
    for _ in 0..200 {
        if let Ok(element) = browser.find(css) {
            if let Ok(text) = browser.text(&element) {
                if text.contains(wanted) {
                    return text;
                }
                last = text;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let url = browser.current_url().unwrap_or_default();
    panic!("no {css} with {wanted:?} at {url}; last text: {last:?}");
}

fn screenshot(browser: &Browser, name: &str) {
    let path = artifacts_dir().join(format!("{name}.png"));
    browser.screenshot(&path).unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size > 1000, "{} is only {size} bytes", path.display());
    eprintln!("screenshot: {}", path.display());
}

/// Signs in through the form, typing the token and pressing Enter.
fn sign_in(browser: &Browser, server: &TestServer, token: &str) {
    browser.goto(&format!("{}/releases", server.base)).unwrap();
    let field = browser.wait_for("form.signin #token", 20).unwrap();
    assert!(browser.current_url().unwrap().contains("/signin?next="));
    browser
        .type_text(&field, &format!("{token}{ENTER}"))
        .unwrap();
    browser.wait_for("table.releases", 20).unwrap();
}

#[test]
fn an_operator_resumes_a_paused_release_and_a_viewer_cannot() {
    let Some(browser) = browser_or_skip() else {
        return;
    };
    let (server, bundle) = server_with_paused_release();
    let id = bundle.id.clone();
    let (_, verdict) = server.get(&format!("/api/v1/releases/{id}/verdict"), &server.viewer);
    let reason = verdict["reason"].as_str().unwrap().to_string();

    // A viewer signs in and sees the paused release, but no action.
    browser.goto(&format!("{}/releases", server.base)).unwrap();
    browser.wait_for("form.signin", 20).unwrap();
    screenshot(&browser, "01-signin");
    sign_in(&browser, &server, &server.viewer);
    browser
        .goto(&format!("{}/releases/{id}", server.base))
        .unwrap();
    wait_for_text(&browser, "#summary", "signed in as a viewer");
    assert!(browser
        .find_all("button[name='action']")
        .unwrap()
        .is_empty());
    assert!(browser.find_all("form.feedback-form").unwrap().is_empty());
    screenshot(&browser, "02-viewer");
    let store = &server.state.store;
    let state_before = store.release(&id).unwrap().unwrap().state;
    assert_eq!(state_before, ReleaseState::Paused);

    // The viewer forges the cancel form on their own page, with their own session value.
    let forged = browser
        .execute(
            "const form = document.createElement('form');
             form.method = 'post';
             form.action = '/releases/' + arguments[0] + '/actions';
             const fields = {
               form_key: document.querySelector('input[name=form_key]').value,
               action: 'cancel',
             };
             for (const [name, value] of Object.entries(fields)) {
               const input = document.createElement('input');
               input.type = 'hidden';
               input.name = name;
               input.value = value;
               form.appendChild(input);
             }
             document.body.appendChild(form);
             form.submit();
             return fields.form_key.length;",
            json!([id]),
        )
        .unwrap();
    assert_eq!(
        forged,
        json!(64),
        "the forged form carries the session value"
    );
    let refusal = wait_for_text(&browser, "p.notice.error", "needs operator");
    assert!(refusal.contains("role viewer"), "{refusal}");
    screenshot(&browser, "03-viewer-forged-cancel-refused");
    let state_after = store.release(&id).unwrap().unwrap().state;
    assert_eq!(
        state_after, state_before,
        "the viewer's cancel changed nothing"
    );
    assert!(
        store
            .transitions(&id)
            .unwrap()
            .iter()
            .all(|transition| transition.action != Action::Cancel),
        "the viewer's cancel was refused"
    );

    // Back to the list, then the operator signs in instead.
    let back = browser.find("main a[href='/releases']").unwrap();
    browser.click(&back).unwrap();
    browser.wait_for("table.releases", 20).unwrap();
    let sign_out = browser.find("header .who button").unwrap();
    browser.click(&sign_out).unwrap();
    browser.wait_for("form.signin", 20).unwrap();
    sign_in(&browser, &server, &server.operator);
    let who = browser.text(&browser.find("header .who").unwrap()).unwrap();
    assert!(who.contains("operator"), "{who}");
    let row = browser
        .text(&browser.find("table.releases tbody tr").unwrap())
        .unwrap();
    assert!(
        row.contains(&id) && row.contains("paused") && row.contains("fault"),
        "{row}"
    );
    screenshot(&browser, "04-list");

    let link = browser.find(&format!("a[href='/releases/{id}']")).unwrap();
    browser.click(&link).unwrap();
    let why = wait_for_text(&browser, "#summary .reason", "Why:");
    assert!(why.contains(&reason), "{why} does not say {reason}");
    let chart = browser.find("figure.chart svg[role='img']").unwrap();
    let labelled_by = browser.attribute(&chart, "aria-labelledby").unwrap();
    assert_eq!(labelled_by.as_deref(), Some("chart-0-title chart-0-desc"));
    let (_, findings) = server.get(&format!("/api/v1/releases/{id}/findings"), &server.viewer);
    let metric = findings["latest"]["findings"][0]["signal"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let title = browser
        .execute(
            "return document.getElementById('chart-0-title').textContent;",
            json!([]),
        )
        .unwrap();
    assert!(
        title.as_str().unwrap().starts_with(&metric),
        "the chart's title {title} names {metric}"
    );
    assert!(!browser
        .find_all("figure.chart .legend li")
        .unwrap()
        .is_empty());
    screenshot(&browser, "05-paused-release");
    browser
        .execute(
            "document.querySelector('figure.chart').scrollIntoView({block: 'center'});",
            json!([]),
        )
        .unwrap();
    screenshot(&browser, "06-paused-release-chart");

    let resume = browser
        .find("button[name='action'][value='resume']")
        .unwrap();
    browser.click(&resume).unwrap();
    wait_for_text(&browser, "p.notice", "Resumed");
    screenshot(&browser, "07-resumed");

    let false_alarm = browser.find("#feedback-false_alarm").unwrap();
    browser.click(&false_alarm).unwrap();
    let note = browser.find("#feedback-note").unwrap();
    browser
        .type_text(&note, "a load test on the reference hosts")
        .unwrap();
    let send = browser
        .find("form.feedback-form button[type='submit']")
        .unwrap();
    browser.click(&send).unwrap();
    wait_for_text(&browser, "p.notice", "feedback is stored");
    let listed = browser.text(&browser.find("ul.feedback").unwrap()).unwrap();
    assert!(listed.contains("false alarm by operator"), "{listed}");
    screenshot(&browser, "08-feedback");

    let transitions = store.transitions(&id).unwrap();
    assert!(
        transitions
            .iter()
            .any(|transition| transition.action == Action::Resume
                && transition.actor == "operator"
                && transition.from == ReleaseState::Paused),
        "no resume by the operator in {transitions:?}"
    );
    let feedback = store.feedback(&id).unwrap();
    assert_eq!(feedback.len(), 1, "{feedback:?}");
    assert_eq!(feedback[0].kind, FeedbackKind::FalseAlarm);
    assert_eq!(feedback[0].note, "a load test on the reference hosts");
    assert_eq!(feedback[0].actor, "operator");

    the_chart_s_times_are_in_the_viewer_s_time_zone(&browser, &server, &id);
    a_healthy_release_s_page_shows_its_scorecard(&browser, &server);
    the_list_refreshes_itself_while_a_release_runs(&browser, &server);
    the_apps_page_shows_an_app_s_coverage(&browser, &server);
    a_large_exporter_s_metric_families_fold(&browser, &server);
    the_stored_history_replays_from_its_page(&browser, &server);
}

/// The operator starts a replay of the stored history from the Replay page (reached with the
/// keyboard); the page reloads itself until the figures come, with the chart drawn.
fn the_stored_history_replays_from_its_page(browser: &Browser, server: &TestServer) {
    // A fault paused on and confirmed, beside the healthy release passed unreviewed.
    support::import_example(server, "pub0246");
    let (status, answer) = server.post(
        "/api/v1/releases/pub0246/feedback",
        &server.operator,
        &json!({"kind": "confirm_fault"}),
    );
    assert_eq!(status, 201, "{answer}");
    browser.goto(&format!("{}/releases", server.base)).unwrap();
    let link = browser.wait_for("nav a[href='/replay']", 20).unwrap();
    browser.type_text(&link, ENTER).unwrap();
    let button = browser.wait_for("form.replay-start button", 20).unwrap();
    wait_for_text(browser, "#latest", "No replay was started");
    screenshot(browser, "14-replay-start");
    browser.click(&button).unwrap();
    // The script reloads the page while it runs; the figures replace the progress bar.
    let figures = wait_for_text(browser, "dl.replay-figures", "Precision");
    assert!(figures.contains("Precision\n100.0 %"), "{figures}");
    let causes = browser
        .text(&browser.find("table.replay-causes").unwrap())
        .unwrap();
    assert!(
        causes.contains("healthy") && causes.contains("mem.util"),
        "{causes}"
    );
    let drawn = browser
        .execute(
            "const chart = document.querySelector('figure.replay-chart svg');
             const box = chart.getBoundingClientRect();
             return [box.width, box.height,
                     Array.from(chart.querySelectorAll('g.replay-line circle, g.replay-line rect'))
                       .filter((shape) => shape.getBoundingClientRect().width > 0).length];",
            json!([]),
        )
        .unwrap();
    let sizes: Vec<f64> = drawn
        .as_array()
        .unwrap()
        .iter()
        .map(|value| value.as_f64().unwrap())
        .collect();
    assert!(sizes[0] > 300.0 && sizes[1] > 150.0, "{sizes:?}");
    // Precision, recall and the two times to pause of the one day: four points drawn.
    assert_eq!(sizes[2], 4.0, "points drawn: {sizes:?}");
    screenshot(browser, "15-replay-done");
    browser
        .execute(
            "document.querySelector('figure.replay-chart').scrollIntoView();",
            json!([]),
        )
        .unwrap();
    screenshot(browser, "16-replay-chart");
}

/// The paused release's chart: its time ticks were rewritten by the page's script in the
/// browser's time zone, and its value axis names the unit.
fn the_chart_s_times_are_in_the_viewer_s_time_zone(
    browser: &Browser,
    server: &TestServer,
    id: &str,
) {
    browser
        .goto(&format!("{}/releases/{id}", server.base))
        .unwrap();
    wait_for_text(browser, "figure.chart [data-zone-note]", "your time zone");
    let ticks = browser
        .execute(
            "const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
             return Array.from(document.querySelectorAll('text[data-time]')).map((tick) => {
               const time = new Date(Number(tick.dataset.time) * 1000);
               const local = new Intl.DateTimeFormat(undefined, {
                 hour: '2-digit', minute: '2-digit', hourCycle: 'h23', timeZone: zone,
               }).format(time);
               return [tick.textContent, local, tick.dataset.format];
             });",
            json!([]),
        )
        .unwrap();
    let ticks = ticks.as_array().unwrap();
    assert!(ticks.len() >= 3, "{ticks:?}");
    let mut clock_ticks = 0;
    for tick in ticks {
        // Ticks of minutes and hours say the clock time there (a day's first hour its date).
        if tick[2] != "day" && tick[1] != "00:00" {
            assert_eq!(tick[0], tick[1], "a tick in the browser's zone: {tick}");
            clock_ticks += 1;
        }
    }
    assert!(clock_ticks >= 2, "{ticks:?}");
}

/// A healthy release's page shows the scorecard: a passing row for every metric; clicking a
/// column's heading sorts by it, and again the other way round.
fn a_healthy_release_s_page_shows_its_scorecard(browser: &Browser, server: &TestServer) {
    let bundle = support::import_example(server, support::HEALTHY_EXAMPLE);
    browser
        .goto(&format!("{}/releases/{}", server.base, bundle.id))
        .unwrap();
    wait_for_text(browser, "#scorecard", "Scorecard");
    let signals = |browser: &Browser| -> Vec<String> {
        browser
            .find_all("#scorecard table.scorecard tbody th")
            .unwrap()
            .iter()
            .map(|cell| browser.text(cell).unwrap())
            .collect()
    };
    let shown = signals(browser);
    for meta in &bundle.metrics {
        assert!(
            shown.contains(&meta.name),
            "no row for {}: {shown:?}",
            meta.name
        );
    }
    let verdicts: Vec<String> = browser
        .find_all("#scorecard table.scorecard tbody td .badge")
        .unwrap()
        .iter()
        .map(|badge| browser.text(badge).unwrap())
        .collect();
    assert_eq!(verdicts.len(), shown.len());
    assert!(
        verdicts.iter().all(|verdict| verdict == "pass"),
        "{verdicts:?}"
    );
    browser
        .execute(
            "document.getElementById('scorecard').scrollIntoView();",
            json!([]),
        )
        .unwrap();
    screenshot(browser, "09a-scorecard");

    let heading = browser
        .find("#scorecard thead a[href*='sort=signal']")
        .unwrap();
    browser.click(&heading).unwrap();
    browser
        .wait_for(
            "#scorecard th[aria-sort='ascending'] a[href*='sort=signal']",
            20,
        )
        .unwrap();
    let ascending = signals(browser);
    let mut sorted = ascending.clone();
    sorted.sort();
    assert_eq!(ascending, sorted);
    let heading = browser
        .find("#scorecard thead a[href*='sort=signal']")
        .unwrap();
    browser.click(&heading).unwrap();
    browser
        .wait_for(
            "#scorecard th[aria-sort='descending'] a[href*='sort=signal']",
            20,
        )
        .unwrap();
    let descending = signals(browser);
    assert_ne!(descending, ascending, "the rows were reordered");
    sorted.reverse();
    assert_eq!(descending, sorted);
    assert!(browser
        .current_url()
        .unwrap()
        .contains("sort=signal&order=desc"));
    browser
        .execute(
            "document.getElementById('scorecard').scrollIntoView();",
            json!([]),
        )
        .unwrap();
    screenshot(browser, "09b-scorecard-sorted");
}

/// A running release's row changes on the open list page, without a reload, when the release
/// is paused through the API.
fn the_list_refreshes_itself_while_a_release_runs(browser: &Browser, server: &TestServer) {
    let (status, created) = server.post(
        "/api/v1/releases",
        &server.admin,
        &json!({"id": "live-1", "app": "cart", "version": "9", "hosts": ["c1"]}),
    );
    assert_eq!(status, 201, "{created}");
    browser
        .goto(&format!("{}/releases?app=cart", server.base))
        .unwrap();
    let region = browser
        .wait_for("#releases[data-running='true']", 20)
        .unwrap();
    let row = "#releases a[href='/releases/live-1']";
    browser.wait_for(row, 20).unwrap();
    assert!(browser.text(&region).unwrap().contains("pending"));
    browser
        .execute("window.stillTheSamePage = true;", json!([]))
        .unwrap();
    let (status, paused) = server.post(
        "/api/v1/releases/live-1/pause",
        &server.admin,
        &json!({"reason": "maintenance window"}),
    );
    assert_eq!(status, 200, "{paused}");
    wait_for_text(browser, "#releases tbody", "paused");
    let same_page = browser
        .execute("return window.stillTheSamePage === true;", json!([]))
        .unwrap();
    assert_eq!(same_page, json!(true), "the list changed without a reload");
    let running = browser
        .execute(
            "return document.getElementById('releases').dataset.running;",
            json!([]),
        )
        .unwrap();
    assert_eq!(
        running,
        json!("false"),
        "nothing runs: the refreshing stops"
    );
    screenshot(browser, "09-list-refreshed");
}

/// An app fed through the API appears on Apps, reached from the header with the keyboard;
/// its page says which signals are found and which are missing.
fn the_apps_page_shows_an_app_s_coverage(browser: &Browser, server: &TestServer) {
    let now = server.clock.now();
    let mut samples = Vec::new();
    for host in ["c1", "c2"] {
        for step in 0..5 {
            for (metric, value) in [("cpu", 0.4), ("latency_ms", 120.0)] {
                samples.push(json!({"host": host, "app": "cart", "metric": metric,
                    "time": now - 300 + step * 60, "value": value + step as f64 * 0.01}));
            }
        }
    }
    let (status, answer) = server.post(
        "/api/v1/ingest/samples",
        &server.ingest,
        &json!({ "samples": samples }),
    );
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = server.post(
        "/api/v1/ingest/logs",
        &server.ingest,
        &json!({"key": "cart-logs", "lines": [{"host": "c1", "app": "cart", "time": now - 10,
            "line": "2023-11-14 22:12:50 ERROR payment gateway refused order 8812: timeout"}]}),
    );
    assert_eq!(status, 200, "{answer}");

    let apps_link = browser.find("header nav a[href='/apps']").unwrap();
    browser.type_text(&apps_link, ENTER).unwrap();
    browser.wait_for("table.apps", 20).unwrap();
    let row = wait_for_text(browser, "table.apps tbody", "cart");
    assert!(row.contains("connected"), "{row}");
    screenshot(browser, "10-apps");

    let app_link = browser.find("a[href='/apps/cart']").unwrap();
    browser.click(&app_link).unwrap();
    wait_for_text(browser, "table.coverage", "CPU");
    let rows: Vec<String> = browser
        .find_all("table.coverage tbody tr")
        .unwrap()
        .iter()
        .map(|row| browser.text(row).unwrap().replace('\n', " "))
        .collect();
    let row_of = |signal: &str| {
        rows.iter()
            .find(|row| row.contains(&format!(" {signal} ")))
            .unwrap_or_else(|| panic!("no {signal} in {rows:?}"))
    };
    assert!(row_of("CPU").contains("found"), "{rows:?}");
    assert!(row_of("load").contains("missing"), "{rows:?}");
    assert!(row_of("request latency").contains("found"), "{rows:?}");
    assert!(row_of("logs").contains("found c1"), "{rows:?}");
    let exceptions = browser
        .text(&browser.find("table.exceptions").unwrap())
        .unwrap();
    assert!(
        exceptions.contains("payment gateway refused"),
        "{exceptions}"
    );
    assert!(
        browser
            .find_all("form.apply, form.own-query")
            .unwrap()
            .is_empty(),
        "an operator changes no app settings"
    );
    screenshot(browser, "11-app");
}

/// Subsystems of a node exporter, each giving its metric families their common prefix.
const NODE_SUBSYSTEMS: [&str; 29] = [
    "arp",
    "boot",
    "context",
    "cpu",
    "disk",
    "entropy",
    "filefd",
    "filesystem",
    "forks",
    "hwmon",
    "intr",
    "load",
    "memory",
    "netstat",
    "network",
    "nf_conntrack",
    "os",
    "pressure",
    "procs",
    "schedstat",
    "sockstat",
    "softnet",
    "systemd",
    "tcp",
    "textfile",
    "time",
    "timex",
    "udp",
    "vmstat",
];

/// An app sending 290 metric families, as a node exporter does, gets a page whose families
/// are grouped and folded, apart from the groups that fill a signal: the page stays far
/// shorter than one row per family would make it.
fn a_large_exporter_s_metric_families_fold(browser: &Browser, server: &TestServer) {
    let now = server.clock.now();
    let mut samples = Vec::new();
    for index in 0..290 {
        let subsystem = NODE_SUBSYSTEMS[index % NODE_SUBSYSTEMS.len()];
        let metric = match index {
            0 => "node_cpu_seconds_total".to_owned(),
            _ => format!("node_{subsystem}_family_{index}"),
        };
        for host in ["n1", "n2"] {
            samples.push(json!({"host": host, "app": "nodes", "metric": metric,
                "time": now - 60, "value": 1.0}));
        }
    }
    server.ingest_samples(samples);
    browser
        .goto(&format!("{}/apps/nodes", server.base))
        .unwrap();
    wait_for_text(browser, "#metrics", "node_cpu_seconds_total");
    let height = browser
        .execute("return document.documentElement.scrollHeight;", json!([]))
        .unwrap()
        .as_f64()
        .unwrap();
    eprintln!("the app page of 290 metric families is {height} px high");
    screenshot(browser, "12-large-app");
    assert!(
        height < 6000.0,
        "the page of an app with 290 metric families is {height} px high"
    );
    let open_groups: Vec<String> = browser
        .find_all("#metrics details[open] > summary")
        .unwrap()
        .iter()
        .map(|summary| browser.text(summary).unwrap())
        .collect();
    assert!(
        open_groups.iter().any(|text| text.contains("node_cpu")),
        "the group filling CPU is open: {open_groups:?}"
    );
    let folded = browser.find_all("#metrics details:not([open])").unwrap();
    assert!(folded.len() > 10, "{} groups folded", folded.len());
}

/// A viewer goes to Models from the header with the keyboard and reads the promoted model's
/// held-out replay beside the funnel's.
#[test]
fn a_viewer_reads_the_promoted_model_beside_the_funnel() {
    let Some(browser) = browser_or_skip() else {
        return;
    };
    let server = TestServer::start(1_700_000_000);
    let features = vigil_analysis::learned::FEATURES;
    let scores = |on: &str, false_recommendations: f64| vigil_core::learned::ModelScores {
        on: on.to_owned(),
        releases: 60,
        precision: 0.962,
        recall: 1.0,
        f1: 0.98,
        anomaly_recommended: Some(0.6),
        healthy_recommended: Some(false_recommendations),
        recommendation_precision: Some(0.7),
        delay_min_median: None,
    };
    let model = vigil_store::NewModel {
        created_at: server.clock.now(),
        created_by: "trainer".to_owned(),
        model: vigil_core::learned::LearnedModel {
            format: vigil_core::learned::MODEL_FORMAT.to_owned(),
            features: features.iter().map(|name| (*name).to_owned()).collect(),
            mean: vec![0.0; features.len()],
            scale: vec![1.0; features.len()],
            weights: vec![0.0; features.len()],
            intercept: 0.0,
            threshold: 0.42,
            target_precision: 0.8,
        },
        training: vigil_core::learned::TrainingSet {
            sources: vec!["corpus/public".to_owned()],
            releases: 240,
            examples: 800,
            positives: 120,
        },
        scores: vec![
            scores("held-out: fold 5", 0.08),
            scores("funnel on held-out: fold 5", 0.27),
        ],
        note: "four folds".to_owned(),
    };
    let store = &server.state.store;
    let version = store.add_model(&model).unwrap();
    store
        .promote_model(version, "alice", server.clock.now())
        .unwrap();

    sign_in(&browser, &server, &server.viewer);
    let models_link = browser.find("header nav a[href='/models']").unwrap();
    browser.type_text(&models_link, ENTER).unwrap();
    wait_for_text(&browser, "h1", "Models");
    let subtitle = wait_for_text(&browser, "p.subtitle", "The guard applies model v1");
    assert!(
        subtitle.contains("faults are never set aside"),
        "{subtitle}"
    );
    let listed = wait_for_text(&browser, "table.models tbody", "v1");
    assert!(
        listed.contains("promoted: the guard applies it"),
        "{listed}"
    );
    assert!(listed.contains("corpus/public: 240 releases"), "{listed}");
    let rows: Vec<String> = browser
        .find_all("table.scores tbody tr")
        .unwrap()
        .iter()
        .map(|row| browser.text(row).unwrap().replace('\n', " "))
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows[0].starts_with("held-out: fold 5"), "{rows:?}");
    assert!(rows[0].contains("0.080"), "{rows:?}");
    assert!(
        rows[1].starts_with("funnel on held-out: fold 5"),
        "{rows:?}"
    );
    assert!(rows[1].contains("0.270"), "{rows:?}");
    let audit = wait_for_text(&browser, "table.promotions tbody", "promoted");
    assert!(audit.contains("alice"), "{audit}");
    screenshot(&browser, "20-models");
}

/// Vigil's executor ships a release to three agents (played over the API); its first batch is
/// deployed. An operator reads the progress bar and the per-host tasks on the release page,
/// and goes to the Agents page from the header.
#[test]
fn an_operator_follows_the_executor_s_progress_and_its_agents() {
    let Some(browser) = browser_or_skip() else {
        return;
    };
    const NOW: i64 = 1_800_000_000;
    let artifact = "ab".repeat(32);
    let server = TestServer::start(NOW);
    let hosts = ["a1", "a2", "a3"];
    let poll = |host: &str, reports: serde_json::Value| -> serde_json::Value {
        let (status, orders) = server.post(
            &format!("/api/v1/agents/{host}/poll"),
            &server.ingest,
            &json!({"reports": reports, "artifacts": [{"artifact": artifact, "pieces_held": 8,
                                                      "pieces": 8, "verified": true}]}),
        );
        assert_eq!(status, 200, "{orders}");
        orders
    };
    for host in hosts {
        let (status, answer) = server.post(
            "/api/v1/agents",
            &server.ingest,
            &json!({"host": host, "app": "shop", "labels": {"zone": "b"}, "version": "1.0",
                    "agent_version": "0.1"}),
        );
        assert_eq!(status, 200, "{answer}");
        poll(host, json!([]));
    }
    let (status, created) = server.post(
        "/api/v1/deployments",
        &server.operator,
        &json!({"id": "r1", "app": "shop", "version": "2.0", "artifact": artifact,
                "hosts": hosts, "step_seconds": 30,
                "plan": [{"size": "1", "observe_seconds": 600},
                         {"size": "100%", "observe_seconds": 600}]}),
    );
    assert_eq!(status, 201, "{created}");
    let mut task = serde_json::Value::Null;
    for _ in 0..100 {
        let orders = poll("a1", json!([]));
        if let Some(first) = orders["tasks"].get(0) {
            task = first.clone();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(task.is_object(), "a1 was never given its task");
    poll(
        "a1",
        json!([{"task": task["id"], "state": "started", "at": NOW},
               {"task": task["id"], "state": "succeeded", "at": NOW, "message": "switched to 2.0"}]),
    );
    for _ in 0..100 {
        let (_, release) = server.get("/api/v1/releases/r1", &server.viewer);
        if release["state"] == "observing" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    sign_in(&browser, &server, &server.operator);
    browser
        .goto(&format!("{}/releases/r1", server.base))
        .unwrap();
    let label = wait_for_text(
        &browser,
        "label[for='execution-progress']",
        "1 of 3 hosts deployed",
    );
    assert!(label.contains("hosts deployed"), "{label}");
    let bar = browser.find("progress#execution-progress").unwrap();
    assert_eq!(
        browser.attribute(&bar, "value").unwrap().as_deref(),
        Some("1")
    );
    assert_eq!(
        browser.attribute(&bar, "max").unwrap().as_deref(),
        Some("3")
    );
    let shown: serde_json::Value = browser
        .execute(
            "const bar = document.getElementById('execution-progress'); \
             const box = bar.getBoundingClientRect(); return [box.width, box.height];",
            json!([]),
        )
        .unwrap();
    assert!(shown[0].as_f64().unwrap() > 20.0, "{shown}");
    assert!(shown[1].as_f64().unwrap() > 4.0, "{shown}");
    let tasks = wait_for_text(&browser, "table.execution-hosts tbody", "a1");
    assert!(tasks.contains("succeeded"), "{tasks}");
    assert!(tasks.contains("switched to 2.0"), "{tasks}");
    screenshot(&browser, "executor-progress");
    let agents_link = browser.find("header nav a[href='/agents']").unwrap();
    browser.type_text(&agents_link, ENTER).unwrap();
    wait_for_text(&browser, "h1", "Agents");
    let listed = wait_for_text(&browser, "table.agents tbody", "a3");
    assert!(listed.contains("online"), "{listed}");
    assert!(listed.contains("zone=b"), "{listed}");
    screenshot(&browser, "executor-agents");
}
