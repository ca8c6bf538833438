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
const LOG_MAGIC: &[u8; 4] = b"VLC1";

impl MetricChunk {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.series.len() * 48 + self.points.len() * 14);
        out.extend_from_slice(METRIC_MAGIC);
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
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<MetricChunk, ChunkError> {
        let mut reader = Reader { bytes, at: 0 };
        if reader.take(4, "magic")? != METRIC_MAGIC {
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
        if reader.at != bytes.len() {
            return Err(ChunkError::Invalid("trailing bytes"));
        }
        Ok(MetricChunk { series, points })
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
        };
        let bytes = chunk.encode();
        for cut in 0..bytes.len() {
            assert!(MetricChunk::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(MetricChunk::decode(b"XXXX"), Err(ChunkError::Magic));
        assert!(LogChunk::decode(&bytes).is_err());
    }
}
