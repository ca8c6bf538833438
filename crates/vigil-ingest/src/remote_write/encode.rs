//! A small remote-write v1 encoder: what tests, benchmarks and the server's own tests use to
//! push samples the way Prometheus does (protobuf `WriteRequest`, then snappy's block format).
//!
//! Fields that hold their default value (a zero timestamp, a `+0.0` value, an empty string) are
//! left out, as proto3 encoders do, so the decoder sees both shapes.

use super::wire::{put_bytes, put_tag, put_varint, FIXED64, VARINT};
use super::RemoteWriteError;

/// One series to send: its labels, in the order given, and its samples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteSeries {
    pub labels: Vec<(String, String)>,
    pub samples: Vec<WriteSample>,
}

/// One sample: Unix milliseconds and a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WriteSample {
    pub ms: i64,
    pub value: f64,
}

/// The metric type that a `MetricMetadata` entry declares (Prometheus' numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    Unknown = 0,
    Counter = 1,
    Gauge = 2,
    Histogram = 3,
    GaugeHistogram = 4,
    Summary = 5,
    Info = 6,
    StateSet = 7,
}

/// One `MetricMetadata` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteMetadata {
    pub metric_type: MetricType,
    pub family: String,
    pub help: String,
    pub unit: String,
}

impl WriteSeries {
    /// A series from label pairs, with no samples yet.
    pub fn new(labels: &[(&str, &str)]) -> Self {
        WriteSeries {
            labels: labels
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
            samples: Vec::new(),
        }
    }

    pub fn with_sample(mut self, ms: i64, value: f64) -> Self {
        self.samples.push(WriteSample { ms, value });
        self
    }
}

/// The uncompressed protobuf `WriteRequest` holding these series and metadata entries.
pub fn encode_write_request(series: &[WriteSeries], metadata: &[WriteMetadata]) -> Vec<u8> {
    let mut out = Vec::with_capacity(series.len() * 96 + metadata.len() * 64);
    let mut message = Vec::new();
    let mut inner = Vec::new();
    for one in series {
        message.clear();
        for (name, value) in &one.labels {
            inner.clear();
            put_string(&mut inner, 1, name);
            put_string(&mut inner, 2, value);
            put_bytes(&mut message, 1, &inner);
        }
        for sample in &one.samples {
            inner.clear();
            put_sample(&mut inner, sample);
            put_bytes(&mut message, 2, &inner);
        }
        put_bytes(&mut out, 1, &message);
    }
    for entry in metadata {
        message.clear();
        if entry.metric_type != MetricType::Unknown {
            put_tag(&mut message, 1, VARINT);
            put_varint(&mut message, entry.metric_type as u64);
        }
        put_string(&mut message, 2, &entry.family);
        put_string(&mut message, 4, &entry.help);
        put_string(&mut message, 5, &entry.unit);
        put_bytes(&mut out, 3, &message);
    }
    out
}

/// Compresses a protobuf body with snappy's block format, as remote write sends it.
pub fn compress_body(protobuf: &[u8]) -> Result<Vec<u8>, RemoteWriteError> {
    snap::raw::Encoder::new()
        .compress_vec(protobuf)
        .map_err(RemoteWriteError::Snappy)
}

/// A complete remote-write v1 request body: [`encode_write_request`] then [`compress_body`].
pub fn encode_remote_write(
    series: &[WriteSeries],
    metadata: &[WriteMetadata],
) -> Result<Vec<u8>, RemoteWriteError> {
    compress_body(&encode_write_request(series, metadata))
}

fn put_string(out: &mut Vec<u8>, number: u32, text: &str) {
    if !text.is_empty() {
        put_bytes(out, number, text.as_bytes());
    }
}

fn put_sample(out: &mut Vec<u8>, sample: &WriteSample) {
    let bits = sample.value.to_bits();
    if bits != 0 {
        put_tag(out, 1, FIXED64);
        out.extend_from_slice(&bits.to_le_bytes());
    }
    if sample.ms != 0 {
        put_tag(out, 2, VARINT);
        put_varint(out, sample.ms as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_values_are_left_out() {
        let mut out = Vec::new();
        put_sample(&mut out, &WriteSample { ms: 0, value: 0.0 });
        assert!(out.is_empty());
        put_sample(
            &mut out,
            &WriteSample {
                ms: 1_700_000_000_000,
                value: 1.5,
            },
        );
        assert_eq!(out.len(), 1 + 8 + 1 + 6);
    }
}
