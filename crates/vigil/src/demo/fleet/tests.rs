use std::sync::Arc;
use std::time::Duration;

use vigil_core::agent::{HostTask, TaskKind, TaskState};
use vigil_core::ManualClock;

use super::*;

const START: i64 = 1_796_000_000;

fn host(name: &str, clock: &Arc<ManualClock>) -> SimHost {
    let shared: Arc<dyn Clock> = clock.clone();
    SimHost::new(name, shared, Duration::ZERO)
}

fn task(kind: TaskKind, version: &str) -> HostTask {
    HostTask {
        id: 1,
        release: "shop-2".to_string(),
        host: "web-1".to_string(),
        batch: 0,
        kind,
        version: version.to_string(),
        artifact: None,
        state: TaskState::Sent,
        created_at: START,
        started_at: None,
        ended_at: None,
        message: String::new(),
    }
}

fn artifact(text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "vigil-demo-fleet-{}-{}",
        std::process::id(),
        Rng::seed_of(text, 0)
    ));
    std::fs::write(&path, text).unwrap();
    path
}

/// The mean of `metric` over `seconds` samples, one a second from the clock's time.
fn mean_of(probe: &mut SimProbe, clock: &ManualClock, metric: &str, seconds: i64) -> f64 {
    let mut total = 0.0;
    for _ in 0..seconds {
        clock.advance(1);
        let samples = probe.sample(clock.now() * 1000);
        total += samples
            .iter()
            .find(|sample| sample.metric == metric)
            .map(|sample| sample.value)
            .unwrap();
    }
    total / seconds as f64
}

#[test]
fn an_artifact_names_its_behaviour_and_a_wrong_one_is_refused_by_line() {
    let behaviour = Behaviour::parse(
        "# shop 3\nerror_ratio=0.08\nexception=java.lang.IllegalStateException: no stock\nexceptions_per_minute = 20\n",
    )
    .unwrap();
    assert_eq!(behaviour.error_ratio, 0.08);
    assert_eq!(behaviour.exceptions_per_minute, 20.0);
    assert_eq!(
        behaviour.exception.as_deref(),
        Some("java.lang.IllegalStateException: no stock")
    );
    assert_eq!(Behaviour::parse("").unwrap(), Behaviour::default());
    assert_eq!(
        Behaviour::parse("error_ratio=0.1\nspeed=3").unwrap_err(),
        "line 2: unknown setting \"speed\""
    );
    assert_eq!(
        Behaviour::parse("latency_factor=-1").unwrap_err(),
        "line 1: latency_factor must be a non-negative number"
    );
    assert!(Behaviour::parse("error_ratio").is_err());
}

#[test]
fn hosts_differ_from_each_other_and_their_metrics_stay_in_bounds() {
    let clock = Arc::new(ManualClock::new(START));
    let (mut first, _, _) = host("web-1", &clock).parts(1);
    let (mut second, _, _) = host("web-2", &clock).parts(1);
    let mut latencies = (Vec::new(), Vec::new());
    for _ in 0..600 {
        clock.advance(1);
        for (probe, into) in [
            (&mut first, &mut latencies.0),
            (&mut second, &mut latencies.1),
        ] {
            let samples = probe.sample(clock.now() * 1000);
            assert_eq!(samples.len(), 6);
            for sample in &samples {
                assert!(
                    sample.value.is_finite() && sample.value >= 0.0,
                    "{sample:?}"
                );
                if [CPU, MEMORY, ERRORS].contains(&sample.metric.as_str()) {
                    assert!(sample.value <= 1.0, "{sample:?}");
                }
            }
            into.push(samples.iter().find(|s| s.metric == LATENCY).unwrap().value);
        }
    }
    assert_ne!(latencies.0, latencies.1);
    // Noise, and spikes now and then: the largest sample stands well above the median.
    let mut sorted = latencies.0.clone();
    sorted.sort_by(f64::total_cmp);
    assert!(
        sorted[599] > 1.8 * sorted[300],
        "{} {}",
        sorted[599],
        sorted[300]
    );
}

#[test]
fn a_faulty_artifact_makes_the_error_ratio_climb_and_a_rollback_brings_it_back() {
    let clock = Arc::new(ManualClock::new(START));
    let simulated = host("web-1", &clock);
    let (mut probe, _, mut deployer) = simulated.parts(2);
    let healthy = artifact("error_ratio=0.0\n");
    let faulty = artifact("error_ratio=0.08\nramp_seconds=30\n");

    deployer
        .deploy(&task(TaskKind::Deploy, "2"), Some(&healthy))
        .unwrap();
    assert_eq!(simulated.version().as_deref(), Some("2"));
    let before = mean_of(&mut probe, &clock, ERRORS, 300);
    assert!(before < 0.01, "{before}");

    deployer
        .deploy(&task(TaskKind::Deploy, "3"), Some(&faulty))
        .unwrap();
    let climbing = mean_of(&mut probe, &clock, ERRORS, 15);
    let climbed = mean_of(&mut probe, &clock, ERRORS, 120);
    assert!(
        climbing > before && climbing < climbed,
        "{climbing} {climbed}"
    );
    assert!(climbed > 0.06, "{climbed}");

    deployer.rollback(&task(TaskKind::Rollback, "2")).unwrap();
    assert_eq!(simulated.version().as_deref(), Some("2"));
    let after = mean_of(&mut probe, &clock, ERRORS, 300);
    assert!(after < 0.01, "{after}");

    let broken = artifact("error_ratio=lots\n");
    let refused = deployer
        .deploy(&task(TaskKind::Deploy, "4"), Some(&broken))
        .unwrap_err();
    assert!(
        refused.contains("error_ratio must be a non-negative number"),
        "{refused}"
    );
    assert_eq!(simulated.version().as_deref(), Some("2"));
    assert!(deployer.deploy(&task(TaskKind::Deploy, "4"), None).is_err());
    for path in [healthy, faulty, broken] {
        let _ = std::fs::remove_file(path);
    }
}

#[test]
fn the_log_has_chatter_and_the_faulty_version_throws_its_exception_with_a_stack_trace() {
    let clock = Arc::new(ManualClock::new(START));
    let simulated = host("web-1", &clock);
    let (_, mut logs, mut deployer) = simulated.parts(3);
    let mut read = |seconds: i64| {
        let mut lines = Vec::new();
        for _ in 0..seconds {
            clock.advance(1);
            lines.extend(logs.read_lines(clock.now() * 1000));
        }
        lines
    };
    let healthy = read(1200);
    assert!(healthy.len() > 2000, "{}", healthy.len());
    assert!(healthy.iter().any(|line| line.contains(" WARN [")));
    // The benign exception comes with its frames on the lines after it.
    let benign = healthy
        .iter()
        .position(|line| line.contains("price refresh failed"))
        .expect("a benign exception in twenty minutes");
    assert!(healthy[benign + 1].starts_with("java.net.SocketTimeoutException"));
    assert!(healthy[benign + 2].starts_with("\tat "));
    assert!(healthy[0].starts_with(&log_time(healthy_first_ms(&healthy))));
    assert!(!healthy.iter().any(|line| line.contains("no stock")));

    let faulty =
        artifact("exception=java.lang.IllegalStateException: no stock\nexceptions_per_minute=30\n");
    deployer
        .deploy(&task(TaskKind::Deploy, "3"), Some(&faulty))
        .unwrap();
    let after = read(120);
    let thrown = after
        .iter()
        .filter(|line| line.as_str() == "java.lang.IllegalStateException: no stock")
        .count();
    assert!((30..=100).contains(&thrown), "{thrown}");
    let _ = std::fs::remove_file(faulty);
}

/// The time the first line starts with, read back from its text.
fn healthy_first_ms(lines: &[String]) -> i64 {
    let first = &lines[0];
    let millis: i64 = first[20..23].parse().unwrap();
    let seconds_text = &first[..19];
    (START..START + 1300)
        .find(|second| vigil_core::text::utc(*second).starts_with(seconds_text))
        .unwrap()
        * 1000
        + millis
}

#[test]
fn the_log_mines_into_a_few_templates_with_the_faulty_exception_apart() {
    let clock = Arc::new(ManualClock::new(START));
    let simulated = host("web-2", &clock);
    let (_, mut logs, mut deployer) = simulated.parts(4);
    let faulty = artifact(
        "exception=java.lang.IllegalStateException: no reservation\nexceptions_per_minute=20\n",
    );
    let mut lines = Vec::new();
    for second in 0..1800 {
        if second == 1500 {
            deployer
                .deploy(&task(TaskKind::Deploy, "3"), Some(&faulty))
                .unwrap();
        }
        clock.advance(1);
        lines.extend(logs.read_lines(clock.now() * 1000));
    }
    let _ = std::fs::remove_file(faulty);
    let text = lines.join("\n");
    let mut mined = Vec::new();
    crate::logs_cmd::mine(
        text.as_bytes(),
        &vigil_ingest::logs::HeaderFormat::Auto,
        false,
        &mut mined,
    )
    .unwrap();
    let mined = String::from_utf8(mined).unwrap();
    let templates: Vec<&str> = mined.lines().skip(1).collect();
    assert!(templates.len() <= 16, "{mined}");
    let thrown: Vec<&&str> = templates
        .iter()
        .filter(|row| row.contains("IllegalStateException"))
        .collect();
    assert_eq!(thrown.len(), 1, "{mined}");
    let count: u64 = thrown[0].split('\t').next().unwrap().parse().unwrap();
    assert!((60..=140).contains(&count), "{mined}");
    let benign: Vec<&&str> = templates
        .iter()
        .filter(|row| row.contains("SocketTimeoutException"))
        .collect();
    assert_eq!(benign.len(), 1, "{mined}");
    assert!(benign[0].contains("\tERROR\t"), "{mined}");
}
