//! The demo's simulated fleet: each host is a [`SimHost`] whose running version behaves as its
//! artifact says (`error_ratio=0.08`), seen through the agent's three parts: a [`SimProbe`]
//! (host and middleware metrics with a daily drift, per-host offsets, autocorrelated noise and
//! occasional spikes), a [`SimLogs`] (INFO chatter, some WARN, a rare benign exception with its
//! stack trace, and the faulty version's own exception again and again) and a [`SimDeployer`]
//! (reads the artifact, restarts the host for a moment, switches the version). A release is
//! faulty because of what it ships.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use vigil_agent::{Deployer, LogSource, MetricSample, Probe};
use vigil_core::agent::HostTask;
use vigil_core::Clock;

use super::noise::{Rng, Wander};

/// Largest artifact the simulated deployer reads.
const MAX_ARTIFACT_BYTES: u64 = 64 << 10;
/// Most log lines one read gives (the rest of a burst is dropped, as a slow tail would).
const MAX_LINES_PER_READ: usize = 5_000;
/// A read never covers more than this much time (after a long pause the host does not log a
/// day at once).
const MAX_READ_SPAN_MS: i64 = 60_000;

/// The metric names the simulated hosts send.
pub const CPU: &str = "cpu_utilization";
pub const MEMORY: &str = "memory_used_ratio";
pub const LOAD: &str = "load1";
pub const REQUESTS: &str = "http_requests_per_second";
pub const LATENCY: &str = "http_latency_p99_ms";
pub const ERRORS: &str = "http_error_ratio";

/// How a version behaves, read from its artifact: lines of `key=value`, `#` comments.
#[derive(Debug, Clone, PartialEq)]
pub struct Behaviour {
    /// Share of requests failing once the version runs (the host's own small share adds to it).
    pub error_ratio: f64,
    /// p99 latency multiplier.
    pub latency_factor: f64,
    /// CPU cost per request multiplier.
    pub cpu_factor: f64,
    /// An exception the version throws (`java.lang.IllegalStateException: ...`), if any.
    pub exception: Option<String>,
    /// How often per minute per host it throws it.
    pub exceptions_per_minute: f64,
    /// Seconds over which the error ratio climbs to its level after the switch.
    pub ramp_seconds: f64,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            error_ratio: 0.0,
            latency_factor: 1.0,
            cpu_factor: 1.0,
            exception: None,
            exceptions_per_minute: 0.0,
            ramp_seconds: 20.0,
        }
    }
}

impl Behaviour {
    /// Reads an artifact's settings; an unknown key or a bad number is refused, naming its line.
    pub fn parse(text: &str) -> Result<Behaviour, String> {
        let mut behaviour = Behaviour::default();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(format!("line {}: expected key=value", index + 1));
            };
            let key = key.trim();
            let value = value.trim();
            let number = || {
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|number| number.is_finite() && *number >= 0.0)
                    .ok_or_else(|| {
                        format!("line {}: {key} must be a non-negative number", index + 1)
                    })
            };
            match key {
                "error_ratio" => behaviour.error_ratio = number()?.min(1.0),
                "latency_factor" => behaviour.latency_factor = number()?,
                "cpu_factor" => behaviour.cpu_factor = number()?,
                "exceptions_per_minute" => behaviour.exceptions_per_minute = number()?,
                "ramp_seconds" => behaviour.ramp_seconds = number()?,
                "exception" if !value.is_empty() => behaviour.exception = Some(value.to_string()),
                "exception" => return Err(format!("line {}: exception is empty", index + 1)),
                _ => return Err(format!("line {}: unknown setting {key:?}", index + 1)),
            }
        }
        Ok(behaviour)
    }
}

/// What a simulated host runs now.
#[derive(Debug)]
struct HostState {
    version: Option<String>,
    behaviour: Behaviour,
    /// Unix seconds of the last switch.
    switched_at: i64,
    /// The host restarts (serves little) until this time.
    restarting_until: i64,
    /// Every version it ran, by name: a rollback switches back to one of them.
    versions: BTreeMap<String, Behaviour>,
}

/// One simulated host: its name, its fixed character (offsets) and what it runs.
#[derive(Debug, Clone)]
pub struct SimHost {
    pub name: String,
    state: Arc<Mutex<HostState>>,
    clock: Arc<dyn Clock>,
    /// How long a deploy's restart takes.
    restart: Duration,
}

impl SimHost {
    /// A host running its first version (healthy) since `clock.now()`.
    pub fn new(name: &str, clock: Arc<dyn Clock>, restart: Duration) -> SimHost {
        let now = clock.now();
        SimHost {
            name: name.to_string(),
            state: Arc::new(Mutex::new(HostState {
                version: None,
                behaviour: Behaviour::default(),
                switched_at: now,
                restarting_until: now,
                versions: BTreeMap::new(),
            })),
            clock,
            restart,
        }
    }

    fn state(&self) -> MutexGuard<'_, HostState> {
        // A panic while holding the lock leaves plain numbers behind: keep using them.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The version the host runs (None: the one it ran before any deploy).
    #[cfg(test)]
    pub fn version(&self) -> Option<String> {
        self.state().version.clone()
    }

    /// The host's probe, log source and deployer, sharing its state.
    pub fn parts(&self, seed: u64) -> (SimProbe, SimLogs, SimDeployer) {
        (
            SimProbe::new(self.clone(), seed),
            SimLogs::new(self.clone(), seed),
            SimDeployer { host: self.clone() },
        )
    }

    fn switch(&self, version: &str, behaviour: Behaviour) {
        let now = self.clock.now();
        let restart_seconds = i64::try_from(self.restart.as_secs()).unwrap_or(0);
        {
            let mut state = self.state();
            state.restarting_until = now + restart_seconds;
        }
        std::thread::sleep(self.restart);
        let mut state = self.state();
        state.version = Some(version.to_string());
        state
            .versions
            .insert(version.to_string(), behaviour.clone());
        state.behaviour = behaviour;
        state.switched_at = self.clock.now();
    }
}

/// What the probe and the logs see of the host at a time.
#[derive(Debug, Clone)]
struct Moment {
    behaviour: Behaviour,
    seconds_since_switch: f64,
    restarting: bool,
}

impl SimHost {
    fn moment(&self, now_ms: i64) -> Moment {
        let state = self.state();
        Moment {
            behaviour: state.behaviour.clone(),
            seconds_since_switch: ((now_ms / 1000) - state.switched_at).max(0) as f64,
            restarting: now_ms / 1000 < state.restarting_until,
        }
    }
}

/// The host's fixed character: where its levels sit against its peers'.
#[derive(Debug, Clone)]
struct Character {
    base_requests: f64,
    base_latency_ms: f64,
    base_error_ratio: f64,
    base_memory: f64,
    cores: f64,
}

impl Character {
    fn of(rng: &mut Rng) -> Character {
        Character {
            base_requests: rng.between(80.0, 120.0),
            base_latency_ms: rng.between(110.0, 140.0),
            base_error_ratio: rng.between(0.001, 0.003),
            base_memory: rng.between(0.42, 0.55),
            cores: 4.0,
        }
    }
}

/// The day's traffic shape: 1 on average, higher in the afternoon (UTC), lower at night.
fn daily_traffic(now_ms: i64) -> f64 {
    let seconds_of_day = (now_ms / 1000).rem_euclid(86_400) as f64;
    1.0 + 0.25 * (std::f64::consts::TAU * (seconds_of_day - 9.0 * 3600.0) / 86_400.0).sin()
}

/// The host's metrics, as an exporter and the host would show them.
#[derive(Debug)]
pub struct SimProbe {
    host: SimHost,
    rng: Rng,
    character: Character,
    requests_noise: Wander,
    cpu_noise: Wander,
    memory_noise: Wander,
    latency_noise: Wander,
    error_noise: Wander,
}

impl SimProbe {
    fn new(host: SimHost, seed: u64) -> SimProbe {
        let mut rng = Rng::new(Rng::seed_of(&host.name, seed));
        let character = Character::of(&mut rng);
        SimProbe {
            host,
            rng,
            character,
            requests_noise: Wander::new(0.9, 0.04),
            cpu_noise: Wander::new(0.8, 0.02),
            memory_noise: Wander::new(0.98, 0.01),
            latency_noise: Wander::new(0.85, 0.06),
            error_noise: Wander::new(0.7, 0.25),
        }
    }

    fn error_ratio(&mut self, moment: &Moment) -> f64 {
        let behaviour = &moment.behaviour;
        let climbed = if behaviour.ramp_seconds <= 0.0 {
            1.0
        } else {
            (moment.seconds_since_switch / behaviour.ramp_seconds).min(1.0)
        };
        let level = self.character.base_error_ratio + behaviour.error_ratio * climbed;
        let noisy = level * (1.0 + self.error_noise.step(&mut self.rng)).max(0.0);
        noisy.clamp(0.0, 1.0)
    }
}

impl Probe for SimProbe {
    fn sample(&mut self, now_ms: i64) -> Vec<MetricSample> {
        let moment = self.host.moment(now_ms);
        let traffic = daily_traffic(now_ms);
        let restart_share = if moment.restarting { 0.3 } else { 1.0 };
        let requests = (self.character.base_requests
            * traffic
            * (1.0 + self.requests_noise.step(&mut self.rng))
            * restart_share)
            .max(0.0);
        let load_share = requests / self.character.base_requests;
        let cpu = (0.06
            + 0.22 * load_share * moment.behaviour.cpu_factor
            + self.cpu_noise.step(&mut self.rng))
        .clamp(0.0, 1.0);
        // Memory drops at a restart and creeps back up.
        let warmed = (moment.seconds_since_switch / 600.0).min(1.0);
        let memory = (self.character.base_memory * (0.85 + 0.15 * warmed)
            + self.memory_noise.step(&mut self.rng))
        .clamp(0.0, 1.0);
        let load = (cpu * self.character.cores + 0.3 * self.rng.normal()).max(0.0);
        let mut latency = self.character.base_latency_ms
            * (1.0 + 0.3 * (load_share - 1.0))
            * moment.behaviour.latency_factor
            * self.latency_noise.step(&mut self.rng).exp();
        // Now and then a garbage collection or a slow neighbour: a spike of one sample.
        if self.rng.chance(0.01) {
            latency *= self.rng.between(2.0, 4.0);
        }
        let errors = self.error_ratio(&moment);
        [
            (CPU, cpu),
            (MEMORY, memory),
            (LOAD, load),
            (REQUESTS, requests),
            (LATENCY, latency.max(1.0)),
            (ERRORS, errors),
        ]
        .into_iter()
        .map(|(metric, value)| MetricSample {
            metric: metric.to_string(),
            value,
        })
        .collect()
    }
}

/// The host's application log.
#[derive(Debug)]
pub struct SimLogs {
    host: SimHost,
    rng: Rng,
    last_ms: Option<i64>,
    next_order: u64,
}

const INFO_LINES: [(&str, &str); 5] = [
    (
        "com.example.shop.CheckoutController",
        "order {id} placed in {ms} ms",
    ),
    (
        "com.example.shop.CartService",
        "cart {id} updated with {n} items",
    ),
    (
        "com.example.shop.SearchController",
        "search for {n} terms answered in {ms} ms",
    ),
    ("com.example.shop.SessionFilter", "session {id} refreshed"),
    (
        "com.example.shop.InventoryClient",
        "reserved {n} units for order {id}",
    ),
];

const WARN_LINES: [(&str, &str); 3] = [
    (
        "com.example.shop.db.Pool",
        "slow query on orders took {ms} ms",
    ),
    (
        "com.example.shop.PaymentClient",
        "payment gateway answered late, retry {n} of 3",
    ),
    (
        "com.example.shop.CacheWarmer",
        "cache hit ratio fell to 0.{n}",
    ),
];

impl SimLogs {
    fn new(host: SimHost, seed: u64) -> SimLogs {
        SimLogs {
            rng: Rng::new(Rng::seed_of(&host.name, seed ^ 0x5eed_1095)),
            host,
            last_ms: None,
            next_order: 48_000,
        }
    }

    fn fill(&mut self, template: &str) -> String {
        self.next_order += 1 + self.rng.next_u64() % 7;
        template
            .replace("{id}", &self.next_order.to_string())
            .replace("{ms}", &(20 + self.rng.next_u64() % 400).to_string())
            .replace("{n}", &(1 + self.rng.next_u64() % 9).to_string())
    }

    fn thread(&mut self) -> String {
        format!("http-nio-8080-exec-{}", 1 + self.rng.next_u64() % 16)
    }

    fn events_between(&mut self, from_ms: i64, to_ms: i64) -> Vec<(i64, Vec<String>)> {
        let span_seconds = (to_ms - from_ms) as f64 / 1000.0;
        let moment = self.host.moment(to_ms);
        let mut events = Vec::new();
        let info_count = self
            .rng
            .poisson(3.0 * span_seconds * if moment.restarting { 0.3 } else { 1.0 });
        for _ in 0..info_count {
            let Some((logger, template)) = self.rng.pick(&INFO_LINES).copied() else {
                break;
            };
            let message = self.fill(template);
            let thread = self.thread();
            events.push((format!("INFO [{thread}] {logger} - {message}"), Vec::new()));
        }
        for _ in 0..self.rng.poisson(span_seconds / 30.0) {
            let Some((logger, template)) = self.rng.pick(&WARN_LINES).copied() else {
                break;
            };
            let message = self.fill(template);
            let thread = self.thread();
            events.push((format!("WARN [{thread}] {logger} - {message}"), Vec::new()));
        }
        // A benign exception every few minutes: a price feed that times out now and then.
        for _ in 0..self.rng.poisson(span_seconds / 240.0) {
            let thread = self.thread();
            events.push((
                format!("ERROR [{thread}] com.example.shop.PriceFeed - price refresh failed, keeping cached prices"),
                vec![
                    "java.net.SocketTimeoutException: Read timed out".to_string(),
                    "\tat java.base/java.net.SocketInputStream.socketRead0(Native Method)".to_string(),
                    "\tat java.base/java.net.SocketInputStream.read(SocketInputStream.java:168)".to_string(),
                    "\tat com.example.shop.PriceFeed.refresh(PriceFeed.java:88)".to_string(),
                    "\tat com.example.shop.PriceFeed.run(PriceFeed.java:41)".to_string(),
                ],
            ));
        }
        if moment.restarting {
            events.push((
                "INFO [main] com.example.shop.Application - starting shop".to_string(),
                Vec::new(),
            ));
        }
        if let Some(exception) = moment.behaviour.exception.clone() {
            let rate = moment.behaviour.exceptions_per_minute / 60.0;
            for _ in 0..self.rng.poisson(rate * span_seconds) {
                let message = self.fill("checkout failed for order {id}");
                let thread = self.thread();
                events.push((
                    format!("ERROR [{thread}] com.example.shop.CheckoutController - {message}"),
                    vec![
                        exception.clone(),
                        "\tat com.example.shop.inventory.Reservations.confirm(Reservations.java:132)".to_string(),
                        "\tat com.example.shop.CheckoutService.place(CheckoutService.java:77)".to_string(),
                        "\tat com.example.shop.CheckoutController.checkout(CheckoutController.java:54)".to_string(),
                    ],
                ));
            }
        }
        events
            .into_iter()
            .map(|(first, rest)| {
                let at = from_ms + (self.rng.uniform() * (to_ms - from_ms) as f64) as i64;
                let mut lines = vec![format!("{} {first}", log_time(at))];
                lines.extend(rest);
                (at, lines)
            })
            .collect()
    }
}

/// `2026-12-07 21:30:01,123`.
fn log_time(ms: i64) -> String {
    let seconds = ms.div_euclid(1000);
    let text = vigil_core::text::utc(seconds);
    let without_zone = text.trim_end_matches(" UTC");
    format!("{without_zone},{:03}", ms.rem_euclid(1000))
}

impl LogSource for SimLogs {
    fn read_lines(&mut self, now_ms: i64) -> Vec<String> {
        let from_ms = self
            .last_ms
            .unwrap_or(now_ms - 1000)
            .max(now_ms - MAX_READ_SPAN_MS);
        self.last_ms = Some(now_ms);
        if now_ms <= from_ms {
            return Vec::new();
        }
        let mut events = self.events_between(from_ms, now_ms);
        events.sort_by_key(|(at, _)| *at);
        let mut lines: Vec<String> = events.into_iter().flat_map(|(_, lines)| lines).collect();
        lines.truncate(MAX_LINES_PER_READ);
        lines
    }
}

/// Deploys by reading the artifact's behaviour and switching the host to it after a restart.
#[derive(Debug)]
pub struct SimDeployer {
    host: SimHost,
}

impl Deployer for SimDeployer {
    fn deploy(&mut self, task: &HostTask, artifact: Option<&Path>) -> Result<String, String> {
        let Some(path) = artifact else {
            return Err("no artifact to deploy".to_string());
        };
        let behaviour = read_behaviour(path)?;
        self.host.switch(&task.version, behaviour);
        Ok(format!("{} now runs {}", self.host.name, task.version))
    }

    fn rollback(&mut self, task: &HostTask) -> Result<String, String> {
        // A version the simulation never installed is the one the host ran at start.
        let behaviour = self
            .host
            .state()
            .versions
            .get(&task.version)
            .cloned()
            .unwrap_or_default();
        self.host.switch(&task.version, behaviour);
        Ok(format!(
            "{} rolled back to {}",
            self.host.name, task.version
        ))
    }
}

fn read_behaviour(path: &Path) -> Result<Behaviour, String> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .map_err(|error| format!("cannot open artifact {}: {error}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_ARTIFACT_BYTES)
        .read_to_string(&mut text)
        .map_err(|error| format!("artifact {} is not text: {error}", path.display()))?;
    Behaviour::parse(&text).map_err(|error| format!("artifact {}: {error}", path.display()))
}

#[cfg(test)]
mod tests;
