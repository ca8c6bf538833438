//! [`ProcProbe`]: the host's metrics from `/proc`. CPU utilisation from the deltas of
//! `/proc/stat`, the share of memory used from `/proc/meminfo`, the one-minute load from
//! `/proc/loadavg`, disk bytes read and written per second from `/proc/diskstats` (whole disks
//! only, as `/sys/block` lists them), network bytes received and sent per second from
//! `/proc/net/dev` (loopback left out). Rates need two samples: the first gives none.
//!
//! The parsers are pure, over the files' text; a file that cannot be read or parsed leaves its
//! metrics out of the sample.

use std::path::PathBuf;

use crate::{MetricSample, Probe};

/// CPU time counters of `/proc/stat`'s `cpu` line, in ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    /// Every state but the guests' (counted in user already).
    pub total: u64,
    /// Idle and waiting for IO.
    pub idle: u64,
}

/// The `cpu` line of `/proc/stat`.
pub fn parse_cpu(stat: &str) -> Option<CpuTimes> {
    let line = stat
        .lines()
        .find(|line| line.split_whitespace().next() == Some("cpu"))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    if fields.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest and guest_nice are in user).
    let total = fields.iter().take(8).sum();
    let idle = fields[3] + fields.get(4).copied().unwrap_or(0);
    Some(CpuTimes { total, idle })
}

/// Busy share of the CPU time between two readings, 0 to 1; None when no time passed or a
/// counter went back.
pub fn cpu_utilization(before: CpuTimes, after: CpuTimes) -> Option<f64> {
    let total = after.total.checked_sub(before.total)?;
    let idle = after.idle.checked_sub(before.idle)?;
    if total == 0 {
        return None;
    }
    Some((1.0 - idle as f64 / total as f64).clamp(0.0, 1.0))
}

/// Used share of memory from `/proc/meminfo`: 1 − MemAvailable / MemTotal.
pub fn parse_memory_used_ratio(meminfo: &str) -> Option<f64> {
    let field = |name: &str| -> Option<f64> {
        meminfo.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
    };
    let total = field("MemTotal")?;
    let available = field("MemAvailable")?;
    if total <= 0.0 {
        return None;
    }
    Some((1.0 - available / total).clamp(0.0, 1.0))
}

/// The one-minute load average of `/proc/loadavg`.
pub fn parse_load1(loadavg: &str) -> Option<f64> {
    let load = loadavg.split_whitespace().next()?.parse::<f64>().ok()?;
    load.is_finite().then_some(load)
}

/// Bytes read and written so far by the disks `is_disk` accepts (`/proc/diskstats` counts
/// 512-byte sectors whatever the device's own sector size).
pub fn parse_disk_bytes(diskstats: &str, is_disk: impl Fn(&str) -> bool) -> Option<(u64, u64)> {
    let mut read = 0u64;
    let mut written = 0u64;
    let mut seen = false;
    for line in diskstats.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // major minor name reads merged sectors_read ms writes merged sectors_written ...
        if fields.len() < 10 || !is_disk(fields[2]) {
            continue;
        }
        let (Ok(sectors_read), Ok(sectors_written)) =
            (fields[5].parse::<u64>(), fields[9].parse::<u64>())
        else {
            continue;
        };
        read = read.saturating_add(sectors_read.saturating_mul(512));
        written = written.saturating_add(sectors_written.saturating_mul(512));
        seen = true;
    }
    seen.then_some((read, written))
}

/// Bytes received and sent so far by every interface but loopback (`/proc/net/dev`).
pub fn parse_network_bytes(net_dev: &str) -> Option<(u64, u64)> {
    let mut received = 0u64;
    let mut sent = 0u64;
    let mut seen = false;
    for line in net_dev.lines() {
        let Some((raw_name, counters)) = line.split_once(':') else {
            continue;
        };
        let interface = raw_name.trim();
        if interface.is_empty() || interface == "lo" || interface.contains('|') {
            continue;
        }
        let fields: Vec<&str> = counters.split_whitespace().collect();
        // 8 receive counters (bytes first), then 8 transmit counters (bytes first).
        if fields.len() < 16 {
            continue;
        }
        let (Ok(rx), Ok(tx)) = (fields[0].parse::<u64>(), fields[8].parse::<u64>()) else {
            continue;
        };
        received = received.saturating_add(rx);
        sent = sent.saturating_add(tx);
        seen = true;
    }
    seen.then_some((received, sent))
}

/// Per second between two counter readings `elapsed_ms` apart; None when a counter went back
/// (a reset, a device removed) or no time passed.
pub fn per_second(before: u64, after: u64, elapsed_ms: i64) -> Option<f64> {
    if elapsed_ms <= 0 {
        return None;
    }
    let delta = after.checked_sub(before)?;
    Some(delta as f64 * 1000.0 / elapsed_ms as f64)
}

/// Counters kept between two samples.
#[derive(Debug, Clone, Copy)]
struct Reading {
    at_ms: i64,
    cpu: Option<CpuTimes>,
    disk: Option<(u64, u64)>,
    network: Option<(u64, u64)>,
}

/// The host's metrics from `/proc` (or another root holding the same files, for tests).
#[derive(Debug)]
pub struct ProcProbe {
    proc_root: PathBuf,
    /// `/sys/block`: its entries are the whole disks.
    block_root: PathBuf,
    last: Option<Reading>,
}

impl Default for ProcProbe {
    fn default() -> ProcProbe {
        ProcProbe::new(PathBuf::from("/proc"), PathBuf::from("/sys/block"))
    }
}

impl ProcProbe {
    pub fn new(proc_root: PathBuf, block_root: PathBuf) -> ProcProbe {
        ProcProbe {
            proc_root,
            block_root,
            last: None,
        }
    }

    fn read(&self, relative: &str) -> Option<String> {
        std::fs::read_to_string(self.proc_root.join(relative)).ok()
    }

    fn is_disk(&self, name: &str) -> bool {
        if name.starts_with("loop") || name.starts_with("ram") || name.starts_with("dm-") {
            return false;
        }
        self.block_root.join(name).exists()
    }
}

impl Probe for ProcProbe {
    fn sample(&mut self, now_ms: i64) -> Vec<MetricSample> {
        let mut samples = Vec::new();
        let mut push = |metric: &str, value: Option<f64>| {
            if let Some(value) = value.filter(|value| value.is_finite()) {
                samples.push(MetricSample {
                    metric: metric.to_owned(),
                    value,
                });
            }
        };
        let reading = Reading {
            at_ms: now_ms,
            cpu: self.read("stat").as_deref().and_then(parse_cpu),
            disk: self
                .read("diskstats")
                .and_then(|text| parse_disk_bytes(&text, |name| self.is_disk(name))),
            network: self
                .read("net/dev")
                .as_deref()
                .and_then(parse_network_bytes),
        };
        push(
            "memory_used_ratio",
            self.read("meminfo")
                .as_deref()
                .and_then(parse_memory_used_ratio),
        );
        push(
            "load1",
            self.read("loadavg").as_deref().and_then(parse_load1),
        );
        if let Some(last) = self.last {
            let elapsed_ms = reading.at_ms - last.at_ms;
            let pair = |before: Option<(u64, u64)>, after: Option<(u64, u64)>| {
                let (before, after) = (before?, after?);
                Some((
                    per_second(before.0, after.0, elapsed_ms),
                    per_second(before.1, after.1, elapsed_ms),
                ))
            };
            if let (Some(before), Some(after)) = (last.cpu, reading.cpu) {
                push("cpu_utilization", cpu_utilization(before, after));
            }
            if let Some((read, written)) = pair(last.disk, reading.disk) {
                push("disk_read_bytes_per_second", read);
                push("disk_write_bytes_per_second", written);
            }
            if let Some((received, sent)) = pair(last.network, reading.network) {
                push("network_receive_bytes_per_second", received);
                push("network_transmit_bytes_per_second", sent);
            }
        }
        self.last = Some(reading);
        samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT_BEFORE: &str = "cpu  100 0 50 800 50 0 0 0 0 0\n\
cpu0 50 0 25 400 25 0 0 0 0 0\n\
intr 12345 0 0\nctxt 999\n";
    const STAT_AFTER: &str = "cpu  160 0 70 880 90 0 0 0 0 0\n\
cpu0 80 0 35 440 45 0 0 0 0 0\n";

    #[test]
    fn cpu_utilization_is_the_busy_share_of_the_delta() {
        let before = parse_cpu(STAT_BEFORE).unwrap();
        let after = parse_cpu(STAT_AFTER).unwrap();
        assert_eq!(
            before,
            CpuTimes {
                total: 1000,
                idle: 850
            }
        );
        // 200 ticks passed, 120 of them idle or waiting: 40 % busy.
        let busy = cpu_utilization(before, after).unwrap();
        assert!((busy - 0.4).abs() < 1e-12, "{busy}");
        assert_eq!(cpu_utilization(after, before), None);
        assert_eq!(cpu_utilization(before, before), None);
        assert_eq!(parse_cpu("cpu0 1 2 3 4\n"), None);
        assert_eq!(parse_cpu("cpu  1 x 3 4\n"), None);
    }

    #[test]
    fn memory_used_is_what_is_not_available() {
        let meminfo = "MemTotal:       16000000 kB\nMemFree:         1000000 kB\n\
MemAvailable:    4000000 kB\nBuffers:          200000 kB\n";
        let used = parse_memory_used_ratio(meminfo).unwrap();
        assert!((used - 0.75).abs() < 1e-12, "{used}");
        assert_eq!(parse_memory_used_ratio("MemTotal: 100 kB\n"), None);
        assert_eq!(
            parse_memory_used_ratio("MemTotal: 0 kB\nMemAvailable: 0 kB\n"),
            None
        );
    }

    #[test]
    fn load1_is_the_first_field() {
        assert_eq!(parse_load1("0.52 0.58 0.59 2/1234 56789\n"), Some(0.52));
        assert_eq!(parse_load1(""), None);
        assert_eq!(parse_load1("NaN 1 1"), None);
    }

    #[test]
    fn disk_bytes_count_whole_disks_in_512_byte_sectors() {
        let diskstats = "   8       0 sda 1000 10 2000 300 500 20 4000 600 0 700 900 0 0 0 0\n\
   8       1 sda1 900 10 1800 250 450 20 3600 500 0 600 750 0 0 0 0\n\
 259       0 nvme0n1 10 0 100 1 20 0 200 2 0 3 3\n\
   7       0 loop0 5 0 10 0 0 0 0 0 0 0 0\n";
        let disks = ["sda", "nvme0n1", "loop0"];
        let (read, written) = parse_disk_bytes(diskstats, |name| disks.contains(&name)).unwrap();
        assert_eq!(read, (2000 + 100 + 10) * 512);
        assert_eq!(written, (4000 + 200) * 512);
        assert_eq!(parse_disk_bytes(diskstats, |_| false), None);
    }

    #[test]
    fn network_bytes_leave_loopback_out() {
        let net_dev = "Inter-|   Receive                                                |  Transmit\n\
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n\
    lo: 5000      50    0    0    0     0          0         0     5000      50    0    0    0     0       0          0\n\
  eth0: 123456    100    0    0    0     0          0         0    654321     90    0    0    0     0       0          0\n\
  eth1:1000    10    0    0    0     0          0         0    2000     20    0    0    0     0       0          0\n";
        assert_eq!(parse_network_bytes(net_dev), Some((124_456, 656_321)));
        assert_eq!(parse_network_bytes("garbage\n"), None);
    }

    #[test]
    fn rates_need_time_and_growing_counters() {
        assert_eq!(per_second(1000, 3000, 2000), Some(1000.0));
        assert_eq!(per_second(3000, 1000, 2000), None);
        assert_eq!(per_second(1000, 3000, 0), None);
    }

    #[test]
    fn the_probe_reads_a_proc_tree_and_gives_rates_from_the_second_sample() {
        let root = std::env::temp_dir().join(format!("vigil-agent-proc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let proc_root = root.join("proc");
        let block_root = root.join("block");
        std::fs::create_dir_all(proc_root.join("net")).unwrap();
        std::fs::create_dir_all(block_root.join("sda")).unwrap();
        let write = |name: &str, text: &str| std::fs::write(proc_root.join(name), text).unwrap();
        let net =
            |rx: u64, tx: u64| format!("h\nh\n  eth0: {rx} 0 0 0 0 0 0 0 {tx} 0 0 0 0 0 0 0\n");
        write("stat", STAT_BEFORE);
        write("meminfo", "MemTotal: 1000 kB\nMemAvailable: 250 kB\n");
        write("loadavg", "1.50 1.00 0.50 1/100 42\n");
        write("diskstats", "8 0 sda 0 0 100 0 0 0 200 0 0 0 0\n");
        write("net/dev", &net(1000, 2000));
        let mut probe = ProcProbe::new(proc_root.clone(), block_root);
        let first = probe.sample(10_000);
        let names: Vec<&str> = first.iter().map(|sample| sample.metric.as_str()).collect();
        assert_eq!(names, ["memory_used_ratio", "load1"]);

        write("stat", STAT_AFTER);
        write("diskstats", "8 0 sda 0 0 300 0 0 0 600 0 0 0 0\n");
        write("net/dev", &net(5000, 2500));
        let second = probe.sample(12_000);
        let value = |metric: &str| {
            second
                .iter()
                .find(|sample| sample.metric == metric)
                .map(|sample| sample.value)
        };
        assert_eq!(value("memory_used_ratio"), Some(0.75));
        assert_eq!(value("load1"), Some(1.5));
        assert!((value("cpu_utilization").unwrap() - 0.4).abs() < 1e-12);
        assert_eq!(
            value("disk_read_bytes_per_second"),
            Some(200.0 * 512.0 / 2.0)
        );
        assert_eq!(
            value("disk_write_bytes_per_second"),
            Some(400.0 * 512.0 / 2.0)
        );
        assert_eq!(value("network_receive_bytes_per_second"), Some(2000.0));
        assert_eq!(value("network_transmit_bytes_per_second"), Some(250.0));
        let _ = std::fs::remove_dir_all(&root);
    }
}
