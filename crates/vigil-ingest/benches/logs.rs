//! Throughput of header splitting, grouping into events and template mining, in lines per
//! second on one core (the path of `vigil logs` and of the log route).
//!
//! ```text
//! cargo bench -p vigil-ingest --bench logs
//! LOGS_BENCH_FILE=app.log cargo bench -p vigil-ingest --bench logs
//! ```
//!
//! Without `LOGS_BENCH_FILE` the lines are generated: a mix of common header formats and
//! messages with numbers, addresses, ids, user names and paths. Each run mines all lines with
//! a fresh miner; the median of the runs is printed.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use vigil_ingest::logs::{EventLimits, Grouper, HeaderFormat, Miner, MinerConfig, Pushed};

const GENERATED_LINES: usize = 1_000_000;
const RUNS: usize = 7;

/// A small deterministic generator (xorshift), so every run mines the same lines.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn pick<'a>(&mut self, choices: &[&'a str]) -> &'a str {
        choices[self.below(choices.len() as u64) as usize]
    }
}

fn generated_lines() -> Vec<String> {
    let mut random = Random(0x2545_f491_4f6c_dd1d);
    let users = [
        "root", "admin", "deploy", "alice", "bob", "oracle", "test", "guest",
    ];
    let levels = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"];
    let loggers = [
        "org.example.http.Server",
        "org.example.db.Pool",
        "org.example.cache.Lru",
        "org.example.jobs.Scheduler",
    ];
    let mut lines = Vec::with_capacity(GENERATED_LINES);
    for index in 0..GENERATED_LINES {
        let second = index / 1000;
        let millis = index % 1000;
        let header = match random.below(4) {
            0 => format!(
                "2024-05-{:02} 10:{:02}:{:02},{millis:03} {} [worker-{}] {}:",
                1 + second / 86_400 % 28,
                second / 60 % 60,
                second % 60,
                random.pick(&levels),
                random.below(16),
                random.pick(&loggers)
            ),
            1 => format!(
                "May {:2} 10:{:02}:{:02} host{} sshd[{}]:",
                1 + second / 86_400 % 28,
                second / 60 % 60,
                second % 60,
                random.below(50),
                1000 + random.below(30_000)
            ),
            2 => format!(
                "[Sun May 05 10:{:02}:{:02} 2024] [{}]",
                second / 60 % 60,
                second % 60,
                random.pick(&["notice", "error", "warn"])
            ),
            _ => format!(
                "{}T10:{:02}:{:02}.{millis:03}Z {}",
                "2024-05-05",
                second / 60 % 60,
                second % 60,
                random.pick(&levels)
            ),
        };
        let message = match random.below(10) {
            0 => format!(
                "Accepted password for {} from 10.{}.{}.{} port {} ssh2",
                random.pick(&users),
                random.below(256),
                random.below(256),
                random.below(256),
                random.below(65_536)
            ),
            1 => format!(
                "GET /api/v1/orders/{} HTTP/1.1 status: 200 len: {} time: 0.{:04}",
                random.below(1_000_000),
                random.below(10_000),
                random.below(10_000)
            ),
            2 => format!(
                "connection pool exhausted, {} active, {} idle, waited {} ms",
                random.below(100),
                random.below(10),
                random.below(5000)
            ),
            3 => format!(
                "user={} session={:016x} opened from 192.168.{}.{}",
                random.pick(&users),
                random.next(),
                random.below(256),
                random.below(256)
            ),
            4 => format!(
                "cache hit ratio {}.{}% over {} keys",
                random.below(100),
                random.below(10),
                random.below(100_000)
            ),
            5 => format!(
                "Failed to write /var/lib/app/data/{}.db: disk quota exceeded",
                random.below(10_000)
            ),
            6 => format!(
                "job {:08x}-{:04x}-{:04x} finished in {} ms with status {}",
                random.next() as u32,
                random.next() as u16,
                random.next() as u16,
                random.below(100_000),
                random.pick(&["ok", "failed", "retried"])
            ),
            7 => "heartbeat received".to_string(),
            8 => format!(
                "Received disconnect from 172.16.{}.{}: 11: Bye Bye [preauth]",
                random.below(256),
                random.below(256)
            ),
            _ => format!(
                "request {} took {} ms (threshold {} ms), slow query on table {}",
                random.below(1_000_000),
                random.below(10_000),
                1000,
                random.pick(&["orders", "users", "payments", "events"])
            ),
        };
        lines.push(format!("{header} {message}"));
    }
    lines
}

fn main() {
    let lines = match std::env::var_os("LOGS_BENCH_FILE") {
        Some(path) => match std::fs::read(&path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes)
                .lines()
                .map(str::to_string)
                .collect(),
            Err(error) => {
                eprintln!("cannot read {}: {error}", path.to_string_lossy());
                std::process::exit(1);
            }
        },
        None => generated_lines(),
    };
    let bytes: usize = lines.iter().map(|line| line.len() + 1).sum();
    let format = HeaderFormat::Auto;
    let mut rates = Vec::with_capacity(RUNS);
    let mut templates = 0usize;
    for _ in 0..RUNS {
        let mut miner = Miner::new(MinerConfig::default());
        #[allow(clippy::disallowed_methods)] // a benchmark measures wall time
        let started = std::time::Instant::now();
        let mut checksum = 0u64;
        let mut grouper = Grouper::new(EventLimits::default());
        let mut first_line = "";
        for line in &lines {
            if let Pushed::Opened(closed) = grouper.push(line) {
                if let Some(event) = closed {
                    checksum =
                        checksum.wrapping_add(miner.add_event(first_line, &format, &event).id.0);
                }
                first_line = line;
            }
        }
        if let Some(event) = grouper.finish() {
            checksum = checksum.wrapping_add(miner.add_event(first_line, &format, &event).id.0);
        }
        let seconds = started.elapsed().as_secs_f64();
        std::hint::black_box(checksum);
        templates = miner.len();
        rates.push(lines.len() as f64 / seconds);
    }
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    println!(
        "logs: {} lines ({:.1} MB), {templates} templates; header split + grouping + mine: median {:.2} M lines/s ({:.0} MB/s) over {RUNS} runs (min {:.2}, max {:.2})",
        lines.len(),
        bytes as f64 / 1e6,
        median / 1e6,
        median * bytes as f64 / lines.len().max(1) as f64 / 1e6,
        rates[0] / 1e6,
        rates[rates.len() - 1] / 1e6
    );
}
