//! Ingested data as the server keeps it: chunks of metric samples and of log template counts,
//! with a compact binary encoding for the store.
//!
//! A chunk is what one ingestion request brought, after decoding and validation. Its encoding
//! is private to Vigil (the store keeps it as an opaque body); it starts with a magic and a
//! version so that a later layout can be read beside this one.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// One series: a metric on a host of an app.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeriesKey {
    /// Empty when the sender did not say.
    pub app: String,
    pub host: String,
    /// The metric name, with the series' other identifying labels in Prometheus' notation
    /// (`http_requests_total{code="500"}`), sorted by label name.
    pub metric: String,
    /// A cumulative counter: the analysis uses its rate per second.
    pub counter: bool,
}

/// One sample of a series, by its index in the chunk's series list.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub series: u32,
    /// Unix milliseconds.
    pub ms: i64,
    pub value: f64,
}

/// Samples of several series.
///
/// The series keys are shared: a decoder that knows a series hands out the same key to every
/// chunk that has it, so a repeated series costs no allocation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricChunk {
    pub series: Vec<Arc<SeriesKey>>,
    pub points: Vec<Point>,
    /// The labels the chunk's hosts carried (`rollouts_pod_template_hash="abc123"`), at most
    /// one entry per host; empty when the sender gave none.
    pub host_labels: Vec<HostLabels>,
}

/// Most labels kept for one host: more are dropped (remote write, pull) or refused (JSON).
pub const MAX_HOST_LABELS: usize = 32;
/// Longest label name or value kept for a host, in bytes.
pub const MAX_HOST_LABEL_BYTES: usize = 256;

/// The labels of one host as one chunk carried them, sorted by name, each name once, within
/// [`MAX_HOST_LABELS`] and [`MAX_HOST_LABEL_BYTES`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostLabels {
    pub host: String,
    pub labels: Vec<(String, String)>,
}

impl HostLabels {
    /// The labels of `host` within the bounds: sorted by name, the first value of a name
    /// kept, labels with an empty or too long name or value dropped, and those past
    /// [`MAX_HOST_LABELS`] (in name order) too.
    pub fn bounded<'a>(
        host: &str,
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> HostLabels {
        let mut kept: Vec<(String, String)> = Vec::new();
        for (name, value) in labels {
            let fits = |text: &str| !text.is_empty() && text.len() <= MAX_HOST_LABEL_BYTES;
            if fits(name) && fits(value) {
                kept.push((name.to_owned(), value.to_owned()));
            }
        }
        kept.sort_by(|left, right| left.0.cmp(&right.0));
        kept.dedup_by(|later, earlier| later.0 == earlier.0);
        kept.truncate(MAX_HOST_LABELS);
        HostLabels {
            host: host.to_owned(),
            labels: kept,
        }
    }
}

impl MetricChunk {
    /// Smallest and largest sample time, or `None` when empty.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let min = self.points.iter().map(|point| point.ms).min()?;
        let max = self.points.iter().map(|point| point.ms).max()?;
        Some((min, max))
    }
}

/// Log lines of one template on one host, counted over one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogCount {
    pub app: String,
    pub host: String,
    pub template: String,
    /// Start of the counted interval, Unix milliseconds.
    pub ms: i64,
    pub count: u32,
}

/// Counts of log templates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogChunk {
    pub counts: Vec<LogCount>,
}

impl LogChunk {
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let min = self.counts.iter().map(|count| count.ms).min()?;
        let max = self.counts.iter().map(|count| count.ms).max()?;
        Some((min, max))
    }
}

/// Why a stored chunk could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("chunk does not start with a known magic")]
    Magic,
    #[error("chunk ends inside {0}")]
    Truncated(&'static str),
    #[error("chunk has invalid {0}")]
    Invalid(&'static str),
}

const METRIC_MAGIC: &[u8; 4] = b"VMC1";
/// A metric chunk with its hosts' labels after the points: written only when it has some, so
/// a chunk without labels is encoded as before.
const METRIC_LABELS_MAGIC: &[u8; 4] = b"VMC2";
const LOG_MAGIC: &[u8; 4] = b"VLC1";

impl MetricChunk {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.series.len() * 48 + self.points.len() * 14);
        if self.host_labels.is_empty() {
            out.extend_from_slice(METRIC_MAGIC);
        } else {
            out.extend_from_slice(METRIC_LABELS_MAGIC);
        }
        put_varint(&mut out, self.series.len() as u64);
        for key in &self.series {
            put_str(&mut out, &key.app);
            put_str(&mut out, &key.host);
            put_str(&mut out, &key.metric);
            out.push(u8::from(key.counter));
        }
        put_varint(&mut out, self.points.len() as u64);
        let mut previous_ms = 0i64;
        for point in &self.points {
            put_varint(&mut out, u64::from(point.series));
            put_varint(&mut out, zigzag(point.ms.wrapping_sub(previous_ms)));
            previous_ms = point.ms;
            out.extend_from_slice(&point.value.to_le_bytes());
        }
        if !self.host_labels.is_empty() {
            put_varint(&mut out, self.host_labels.len() as u64);
            for host in &self.host_labels {
                put_str(&mut out, &host.host);
                put_varint(&mut out, host.labels.len() as u64);
                for (name, value) in &host.labels {
                    put_str(&mut out, name);
                    put_str(&mut out, value);
                }
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<MetricChunk, ChunkError> {
        let mut reader = Reader { bytes, at: 0 };
        let magic = reader.take(4, "magic")?;
        let with_labels = magic == METRIC_LABELS_MAGIC;
        if magic != METRIC_MAGIC && !with_labels {
            return Err(ChunkError::Magic);
        }
        let series_count = reader.count("series count")?;
        let mut series = Vec::with_capacity(series_count);
        for _ in 0..series_count {
            let app = reader.string("app")?;
            let host = reader.string("host")?;
            let metric = reader.string("metric")?;
            let counter = match reader.take(1, "counter flag")?[0] {
                0 => false,
                1 => true,
                _ => return Err(ChunkError::Invalid("counter flag")),
            };
            series.push(Arc::new(SeriesKey {
                app,
                host,
                metric,
                counter,
            }));
        }
        let point_count = reader.count("point count")?;
        let mut points = Vec::with_capacity(point_count);
        let mut previous_ms = 0i64;
        for _ in 0..point_count {
            let index = reader.varint("series index")?;
            if index >= series.len() as u64 {
                return Err(ChunkError::Invalid("series index"));
            }
            let ms = previous_ms.wrapping_add(unzigzag(reader.varint("time")?));
            previous_ms = ms;
            let raw = reader.take(8, "value")?;
            let mut value_bytes = [0u8; 8];
            value_bytes.copy_from_slice(raw);
            points.push(Point {
                series: index as u32,
                ms,
                value: f64::from_le_bytes(value_bytes),
            });
        }
        let mut host_labels = Vec::new();
        if with_labels {
            let hosts = reader.count("host label count")?;
            for _ in 0..hosts {
                let host = reader.string("labelled host")?;
                let count = reader.count("label count")?;
                let mut labels = Vec::with_capacity(count.min(MAX_HOST_LABELS));
                for _ in 0..count {
                    let name = reader.string("label name")?;
                    let value = reader.string("label value")?;
                    labels.push((name, value));
                }
                host_labels.push(HostLabels { host, labels });
            }
        }
        if reader.at != bytes.len() {
            return Err(ChunkError::Invalid("trailing bytes"));
        }
        Ok(MetricChunk {
            series,
            points,
            host_labels,
        })
    }
}

impl LogChunk {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.counts.len() * 48);
        out.extend_from_slice(LOG_MAGIC);
        put_varint(&mut out, self.counts.len() as u64);
        for count in &self.counts {
            put_str(&mut out, &count.app);
            put_str(&mut out, &count.host);
            put_str(&mut out, &count.template);
            put_varint(&mut out, zigzag(count.ms));
            put_varint(&mut out, u64::from(count.count));
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<LogChunk, ChunkError> {
        let mut reader = Reader { bytes, at: 0 };
        if reader.take(4, "magic")? != LOG_MAGIC {
            return Err(ChunkError::Magic);
        }
        let total = reader.count("count count")?;
        let mut counts = Vec::with_capacity(total);
        for _ in 0..total {
            let app = reader.string("app")?;
            let host = reader.string("host")?;
            let template = reader.string("template")?;
            let ms = unzigzag(reader.varint("time")?);
            let count =
                u32::try_from(reader.varint("count")?).map_err(|_| ChunkError::Invalid("count"))?;
            counts.push(LogCount {
                app,
                host,
                template,
                ms,
                count,
            });
        }
        if reader.at != bytes.len() {
            return Err(ChunkError::Invalid("trailing bytes"));
        }
        Ok(LogChunk { counts })
    }
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    put_varint(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, length: usize, what: &'static str) -> Result<&'a [u8], ChunkError> {
        let end = self
            .at
            .checked_add(length)
            .ok_or(ChunkError::Truncated(what))?;
        let slice = self
            .bytes
            .get(self.at..end)
            .ok_or(ChunkError::Truncated(what))?;
        self.at = end;
        Ok(slice)
    }

    fn varint(&mut self, what: &'static str) -> Result<u64, ChunkError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1, what)?[0];
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ChunkError::Invalid(what))
    }

    /// A count of items that must each take at least one byte: never more than what is left.
    fn count(&mut self, what: &'static str) -> Result<usize, ChunkError> {
        let value = self.varint(what)?;
        let left = (self.bytes.len() - self.at) as u64;
        if value > left {
            return Err(ChunkError::Truncated(what));
        }
        Ok(value as usize)
    }

    fn string(&mut self, what: &'static str) -> Result<String, ChunkError> {
        let length = self.count(what)?;
        let raw = self.take(length, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| ChunkError::Invalid(what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_chunks_round_trip() {
        let chunk = MetricChunk {
            series: vec![
                Arc::new(SeriesKey {
                    app: "shop".into(),
                    host: "h1".into(),
                    metric: "cpu".into(),
                    counter: false,
                }),
                Arc::new(SeriesKey {
                    app: String::new(),
                    host: "h2".into(),
                    metric: "req_total{code=\"500\"}".into(),
                    counter: true,
                }),
            ],
            points: vec![
                Point {
                    series: 1,
                    ms: 1_700_000_000_000,
                    value: 3.5,
                },
                Point {
                    series: 0,
                    ms: 1_699_999_999_000,
                    value: f64::NAN,
                },
                Point {
                    series: 0,
                    ms: -5,
                    value: -1.0,
                },
            ],
            host_labels: Vec::new(),
        };
        let decoded = MetricChunk::decode(&chunk.encode()).expect("decodes");
        assert_eq!(decoded.series, chunk.series);
        assert_eq!(decoded.points.len(), 3);
        assert_eq!(decoded.points[0], chunk.points[0]);
        assert!(decoded.points[1].value.is_nan());
        assert_eq!(decoded.points[2].ms, -5);
        assert_eq!(chunk.time_range(), Some((-5, 1_700_000_000_000)));
    }

    #[test]
    fn host_labels_round_trip_and_a_chunk_without_them_keeps_the_first_layout() {
        let mut chunk = MetricChunk {
            series: vec![Arc::new(SeriesKey {
                app: "shop".into(),
                host: "pod-a".into(),
                metric: "latency".into(),
                counter: false,
            })],
            points: vec![Point {
                series: 0,
                ms: 1_000,
                value: 1.0,
            }],
            host_labels: Vec::new(),
        };
        assert_eq!(&chunk.encode()[..4], b"VMC1");
        chunk.host_labels = vec![HostLabels::bounded(
            "pod-a",
            [
                ("rollouts_pod_template_hash", "abc123"),
                ("namespace", "shop"),
            ],
        )];
        let encoded = chunk.encode();
        assert_eq!(&encoded[..4], b"VMC2");
        let decoded = MetricChunk::decode(&encoded).expect("decodes");
        assert_eq!(decoded, chunk);
        assert_eq!(
            decoded.host_labels[0].labels[0],
            ("namespace".to_owned(), "shop".to_owned())
        );
        for cut in 4..encoded.len() {
            assert!(
                MetricChunk::decode(&encoded[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn host_labels_are_bounded() {
        let long = "x".repeat(MAX_HOST_LABEL_BYTES + 1);
        let names: Vec<String> = (0..MAX_HOST_LABELS + 10)
            .map(|index| format!("l{index:03}"))
            .collect();
        let mut sent: Vec<(&str, &str)> = names.iter().map(|name| (name.as_str(), "v")).collect();
        sent.push(("too_long", long.as_str()));
        sent.push(("empty", ""));
        sent.push(("l000", "second value"));
        let bounded = HostLabels::bounded("h", sent);
        assert_eq!(bounded.labels.len(), MAX_HOST_LABELS);
        assert_eq!(bounded.labels[0], ("l000".to_owned(), "v".to_owned()));
        assert!(bounded
            .labels
            .iter()
            .all(|(name, _)| name != "too_long" && name != "empty"));
    }

    #[test]
    fn log_chunks_round_trip() {
        let chunk = LogChunk {
            counts: vec![LogCount {
                app: "shop".into(),
                host: "h1".into(),
                template: "t7".into(),
                ms: 1_700_000_000_000,
                count: 12,
            }],
        };
        assert_eq!(LogChunk::decode(&chunk.encode()), Ok(chunk));
    }

    #[test]
    fn truncated_and_garbled_chunks_are_refused() {
        let chunk = MetricChunk {
            series: vec![Arc::new(SeriesKey {
                app: "a".into(),
                host: "h".into(),
                metric: "m".into(),
                counter: false,
            })],
            points: vec![Point {
                series: 0,
                ms: 1,
                value: 1.0,
            }],
            host_labels: Vec::new(),
        };
        let bytes = chunk.encode();
        for cut in 0..bytes.len() {
            assert!(MetricChunk::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(MetricChunk::decode(b"XXXX"), Err(ChunkError::Magic));
        assert!(LogChunk::decode(&bytes).is_err());
    }
}
