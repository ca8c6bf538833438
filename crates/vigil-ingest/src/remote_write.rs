//! Prometheus remote write v1: a snappy-compressed (block format) protobuf `WriteRequest`,
//! decoded into a [`MetricChunk`].
//!
//! The protobuf is read by hand over the decompressed buffer: label names and values are
//! borrowed, never copied, until a label set is seen for the first time. A
//! [`RemoteWriteDecoder`] keeps what it learned between requests (which label sets make which
//! series, which metric families are counters) so that a sender repeating its series costs one
//! hash lookup per series and no parsing of labels; [`decode_remote_write`] is the one-shot form.
//!
//! How a series is named:
//! - `host`: the first of [`RemoteWriteOptions::host_labels`] present with a non-empty value
//!   (`host`, then `instance`). A series without one is skipped and counted in [`Skipped`].
//! - `app`: the first of [`RemoteWriteOptions::app_labels`] present (`app`, then `job`), or empty.
//! - `metric`: `__name__` followed by the other labels in Prometheus' notation, sorted by name
//!   (`http_requests_total{code="500"}`), leaving out the host and app label names above,
//!   `instance`, `job` and [`RemoteWriteOptions::host_only_labels`] (a pod's template hash:
//!   the canary's pods and the stable ones send the same metrics). Series that differ only in
//!   those labels become one series. A series without `__name__` is skipped and counted.
//! - host labels: every label but `__name__`, as [`HostLabels::bounded`] keeps them, merged
//!   over the host's series in the request (the first value of a name wins): what a release's
//!   label selector matches.
//! - `counter`: the family is declared `COUNTER` by a metadata entry (of this request or an
//!   earlier one), the name ends in `_total` (the OpenMetrics counter suffix), or the name is a
//!   `_bucket`, `_count` or `_sum` series of a family declared `HISTOGRAM` or `SUMMARY`.
//!
//! Names and times follow the rules JSON ingestion follows (`vigil_core::validate`), but a bad
//! series or sample is dropped and counted in [`Skipped`] rather than refusing the request, as
//! for a series without a host: a sender resends a refused request forever, and one bad series
//! must not hold back the good ones. Dropped: a series whose host, app or metric (in the
//! notation below) is longer than 1 KiB or holds a control character, and a sample whose time
//! is before 1970 or after the year 9999.
//!
//! Labels with an empty value are absent, as in Prometheus. Sample values are kept as sent,
//! staleness markers (a NaN) included. Native histograms (field 4 of `TimeSeries`) are skipped
//! and counted; exemplars and unknown fields are skipped.
//!
//! Limits (see [`RemoteWriteOptions`] for the defaults): the compressed body size, the size it
//! decompresses to (read from the snappy header before anything is allocated), the number of
//! `TimeSeries` entries and of samples in one request, and the labels of one series. A request
//! over a limit is refused whole.

mod cache;
mod encode;
mod wire;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use vigil_core::samples::{HostLabels, MetricChunk, Point, SeriesKey};
use vigil_core::validate;

use cache::{Found, Resolution, SeriesCache, NO_LABEL_SET};
pub use encode::{
    compress_body, encode_remote_write, encode_write_request, MetricType, WriteMetadata,
    WriteSample, WriteSeries,
};
use wire::{MessageReader, WireError};
pub use wire::{Place, WireProblem};

/// What the decoder accepts and how it names series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteWriteOptions {
    /// Label names that name the host, the first present wins. Default `host`, `instance`.
    pub host_labels: Vec<String>,
    /// Label names that name the app, the first present wins. Default `app`, `job`.
    pub app_labels: Vec<String>,
    /// Labels that describe the host and are left out of the metric's name, kept only as host
    /// labels. Default `rollouts_pod_template_hash`, `pod_template_hash`.
    pub host_only_labels: Vec<String>,
    /// Largest compressed body. Default 32 MiB.
    pub max_body_bytes: usize,
    /// Largest decompressed body, read from the snappy header. Default 32 MiB: Prometheus
    /// sends a few thousand samples per request, well under 1 MiB.
    pub max_decompressed_bytes: usize,
    /// Most `TimeSeries` entries in one request. Default 1 000 000.
    pub max_series: usize,
    /// Most samples in one request. Default 4 000 000.
    pub max_samples: usize,
    /// Most labels on one series. Default 128.
    pub max_labels_per_series: usize,
    /// Label sets (and metric families from metadata) remembered between requests; when a new
    /// request finds more, the decoder forgets them all and starts again. Default 262 144.
    pub max_cached_series: usize,
}

impl Default for RemoteWriteOptions {
    fn default() -> Self {
        RemoteWriteOptions {
            host_labels: vec!["host".to_owned(), "instance".to_owned()],
            app_labels: vec!["app".to_owned(), "job".to_owned()],
            host_only_labels: vec![
                "rollouts_pod_template_hash".to_owned(),
                "pod_template_hash".to_owned(),
            ],
            max_body_bytes: 32 << 20,
            max_decompressed_bytes: 32 << 20,
            max_series: 1_000_000,
            max_samples: 4_000_000,
            max_labels_per_series: 128,
            max_cached_series: 1 << 18,
        }
    }
}

/// Why a remote-write body was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoteWriteError {
    #[error("body is {size} bytes, more than the limit of {limit}")]
    BodyTooLarge { size: usize, limit: usize },
    /// snappy's own message, which starts with `snappy: `.
    #[error("{0}")]
    Snappy(snap::Error),
    #[error("snappy: body decompresses to {size} bytes, more than the limit of {limit}")]
    DecompressedTooLarge { size: usize, limit: usize },
    #[error("snappy: header claims {claimed} bytes, more than a body of {size} bytes can hold")]
    SnappyLengthImpossible { claimed: usize, size: usize },
    #[error("protobuf: {place} of {message} {problem} at byte {offset}")]
    Protobuf {
        /// The protobuf message being read (`WriteRequest`, `TimeSeries`, `Label`, ...).
        message: &'static str,
        place: Place,
        problem: WireProblem,
        /// Offset in the decompressed body.
        offset: usize,
    },
    #[error("request has more than {limit} series")]
    TooManySeries { limit: usize },
    #[error("request has more than {limit} samples")]
    TooManySamples { limit: usize },
    #[error("timeseries[{index}] has more than {limit} labels")]
    TooManyLabels { index: usize, limit: usize },
    #[error("timeseries[{index}]: label {name:?} appears twice")]
    DuplicateLabel { index: usize, name: String },
    #[error("timeseries[{index}]: a label has an empty name")]
    EmptyLabelName { index: usize },
}

impl From<WireError> for RemoteWriteError {
    fn from(error: WireError) -> Self {
        RemoteWriteError::Protobuf {
            message: error.message,
            place: error.place,
            problem: error.problem,
            offset: error.offset,
        }
    }
}

/// What was left out of an accepted request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skipped {
    /// `TimeSeries` entries with none of the host labels.
    pub series_without_host: usize,
    pub samples_without_host: usize,
    /// The labels of the first such series, in Prometheus' notation, to show the sender.
    pub example_without_host: Option<String>,
    /// `TimeSeries` entries without `__name__`.
    pub series_without_name: usize,
    pub samples_without_name: usize,
    /// Native histogram samples (not read).
    pub native_histograms: usize,
    /// `TimeSeries` entries whose host, app or metric breaks the rules every way in shares
    /// (`vigil_core::validate::name`: empty, longer than 1 KiB, a control character).
    pub series_invalid: usize,
    pub samples_invalid: usize,
    /// What was wrong with the first such series, to show the sender.
    pub example_invalid: Option<String>,
    /// Samples with a time before 1970 or after the year 9999 (`vigil_core::validate::time_ms`).
    pub samples_bad_time: usize,
}

impl Skipped {
    pub fn is_empty(&self) -> bool {
        self.series_without_host == 0
            && self.series_without_name == 0
            && self.native_histograms == 0
            && self.series_invalid == 0
            && self.samples_bad_time == 0
    }
}

/// One decoded request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RemoteWriteBatch {
    /// The accepted series and samples; each distinct series appears once.
    pub chunk: MetricChunk,
    pub skipped: Skipped,
}

/// Decodes one body with a fresh decoder. A server that takes many requests should keep a
/// [`RemoteWriteDecoder`] per worker instead.
pub fn decode_remote_write(
    body: &[u8],
    options: &RemoteWriteOptions,
) -> Result<RemoteWriteBatch, RemoteWriteError> {
    RemoteWriteDecoder::new(options.clone()).decode(body)
}

/// The size a body decompresses to, read from its snappy header without decompressing it: what
/// a server reserves before decoding.
pub fn decompressed_length(body: &[u8]) -> Result<usize, RemoteWriteError> {
    snap::raw::decompress_len(body).map_err(RemoteWriteError::Snappy)
}

/// Metric families' types, learned from metadata entries.
#[derive(Debug, Default)]
struct Families {
    types: HashMap<String, u64>,
}

const TYPE_COUNTER: u64 = MetricType::Counter as u64;
const TYPE_HISTOGRAM: u64 = MetricType::Histogram as u64;
const TYPE_SUMMARY: u64 = MetricType::Summary as u64;

impl Families {
    fn is_counter(&self, name: &str) -> bool {
        if name.ends_with("_total") || self.types.get(name) == Some(&TYPE_COUNTER) {
            return true;
        }
        ["_bucket", "_count", "_sum"].iter().any(|suffix| {
            name.strip_suffix(suffix).is_some_and(|family| {
                matches!(
                    self.types.get(family),
                    Some(&TYPE_HISTOGRAM) | Some(&TYPE_SUMMARY)
                )
            })
        })
    }
}

/// A remote-write decoder that remembers series and metric families between requests.
#[derive(Debug)]
pub struct RemoteWriteDecoder {
    options: RemoteWriteOptions,
    /// Label names left out of the metric's identity: host, app, `instance`, `job`, `__name__`.
    excluded_labels: Vec<String>,
    cache: SeriesCache,
    families: Families,
    /// Counts requests, so that a cached series knows whether the current chunk has it yet.
    request: u64,
    /// The decompressed body, kept for the next request.
    buffer: Vec<u8>,
    label_spans: Vec<Range<usize>>,
    key_scratch: Vec<u8>,
    /// Series and points of the previous request: the next chunk reserves as much.
    previous_sizes: (usize, usize),
    /// The label set of the previous `TimeSeries` of the request under way.
    previous_label_set: u32,
}

/// Most bytes one byte of snappy's block format can decompress to (64 from a 3-byte copy),
/// rounded up.
const MAX_SNAPPY_RATIO: usize = 22;
/// Decompressed buffers larger than this are not kept between requests.
const KEPT_BUFFER_BYTES: usize = 16 << 20;
/// Label bytes and series text remembered between requests, at the most (beside
/// [`RemoteWriteOptions::max_cached_series`]).
const MAX_CACHED_TEXT_BYTES: usize = 128 << 20;

/// The state of the request under way.
struct Request {
    chunk: MetricChunk,
    /// The host labels of each series added to the chunk, merged at the end.
    host_labels: Vec<Arc<HostLabels>>,
    skipped: Skipped,
    series_entries: usize,
    samples: usize,
    metadata: Vec<(String, u64)>,
}

impl RemoteWriteDecoder {
    pub fn new(options: RemoteWriteOptions) -> Self {
        let mut excluded_labels: Vec<String> = ["__name__", "instance", "job"]
            .iter()
            .map(|name| (*name).to_owned())
            .chain(options.host_labels.iter().cloned())
            .chain(options.app_labels.iter().cloned())
            .chain(options.host_only_labels.iter().cloned())
            .collect();
        excluded_labels.sort_unstable();
        excluded_labels.dedup();
        RemoteWriteDecoder {
            options,
            excluded_labels,
            cache: SeriesCache::default(),
            families: Families::default(),
            request: 0,
            buffer: Vec::new(),
            label_spans: Vec::new(),
            key_scratch: Vec::new(),
            previous_sizes: (0, 0),
            previous_label_set: NO_LABEL_SET,
        }
    }

    pub fn options(&self) -> &RemoteWriteOptions {
        &self.options
    }

    /// Decodes a remote-write body: snappy block format, then a protobuf `WriteRequest`.
    pub fn decode(&mut self, body: &[u8]) -> Result<RemoteWriteBatch, RemoteWriteError> {
        if body.len() > self.options.max_body_bytes {
            return Err(RemoteWriteError::BodyTooLarge {
                size: body.len(),
                limit: self.options.max_body_bytes,
            });
        }
        let length = snap::raw::decompress_len(body).map_err(RemoteWriteError::Snappy)?;
        if length > self.options.max_decompressed_bytes {
            return Err(RemoteWriteError::DecompressedTooLarge {
                size: length,
                limit: self.options.max_decompressed_bytes,
            });
        }
        // A snappy copy element of 3 bytes makes at most 64: a header that claims more than
        // that ratio is a lie, refused before its buffer is allocated and cleared.
        if length > body.len().saturating_mul(MAX_SNAPPY_RATIO) {
            return Err(RemoteWriteError::SnappyLengthImpossible {
                claimed: length,
                size: body.len(),
            });
        }
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.clear();
        buffer.resize(length, 0);
        let result = match snap::raw::Decoder::new().decompress(body, &mut buffer) {
            Ok(written) => self.decode_protobuf(&buffer[..written]),
            Err(error) => Err(RemoteWriteError::Snappy(error)),
        };
        if buffer.capacity() <= KEPT_BUFFER_BYTES {
            self.buffer = buffer;
        }
        result
    }

    /// Decodes an uncompressed protobuf `WriteRequest`.
    pub fn decode_protobuf(
        &mut self,
        protobuf: &[u8],
    ) -> Result<RemoteWriteBatch, RemoteWriteError> {
        if protobuf.len() > self.options.max_decompressed_bytes {
            return Err(RemoteWriteError::DecompressedTooLarge {
                size: protobuf.len(),
                limit: self.options.max_decompressed_bytes,
            });
        }
        if self.cache.len() > self.options.max_cached_series
            || self.cache.text_bytes() > MAX_CACHED_TEXT_BYTES
        {
            self.cache.clear();
        }
        self.request += 1;
        self.previous_label_set = NO_LABEL_SET;
        // The sizes of the previous request, but never more than this body can hold: a
        // `TimeSeries` takes at least 2 bytes, a sample 2.
        let (previous_series, previous_points) = self.previous_sizes;
        let mut request = Request {
            chunk: MetricChunk {
                series: Vec::with_capacity(previous_series.min(protobuf.len() / 2)),
                points: Vec::with_capacity(previous_points.min(protobuf.len() / 2)),
                host_labels: Vec::new(),
            },
            host_labels: Vec::new(),
            skipped: Skipped::default(),
            series_entries: 0,
            samples: 0,
            metadata: Vec::new(),
        };
        self.write_request(protobuf, &mut request)?;
        self.learn_families(&request.metadata, &mut request.chunk);
        request.chunk.host_labels = merge_host_labels(&request.host_labels);
        self.previous_sizes = (request.chunk.series.len(), request.chunk.points.len());
        Ok(RemoteWriteBatch {
            chunk: request.chunk,
            skipped: request.skipped,
        })
    }

    fn write_request(
        &mut self,
        protobuf: &[u8],
        request: &mut Request,
    ) -> Result<(), RemoteWriteError> {
        let mut reader = MessageReader::new(protobuf, 0..protobuf.len(), "WriteRequest");
        while reader.has_more() {
            let tag = reader.tag()?;
            match tag.number {
                1 => {
                    let range = reader.length_delimited(tag)?;
                    self.time_series(protobuf, range, request)?;
                }
                3 => {
                    let range = reader.length_delimited(tag)?;
                    read_metadata(protobuf, range, &mut request.metadata)?;
                }
                _ => reader.skip(tag)?,
            }
        }
        Ok(())
    }

    fn time_series(
        &mut self,
        buffer: &[u8],
        range: Range<usize>,
        request: &mut Request,
    ) -> Result<(), RemoteWriteError> {
        let index = request.series_entries;
        request.series_entries += 1;
        if request.series_entries > self.options.max_series.min(u32::MAX as usize) {
            return Err(RemoteWriteError::TooManySeries {
                limit: self.options.max_series,
            });
        }
        let first_point = request.chunk.points.len();
        self.label_spans.clear();
        let mut reader = MessageReader::new(buffer, range, "TimeSeries");
        while reader.has_more() {
            let tag = reader.tag()?;
            match tag.number {
                1 => {
                    reader.length_delimited(tag)?;
                    self.label_spans.push(tag.offset..reader.position());
                    if self.label_spans.len() > self.options.max_labels_per_series {
                        return Err(RemoteWriteError::TooManyLabels {
                            index,
                            limit: self.options.max_labels_per_series,
                        });
                    }
                }
                2 => {
                    let sample = reader.length_delimited(tag)?;
                    let (ms, value) = read_sample(buffer, sample)?;
                    if validate::time_ms(ms).is_err() {
                        request.skipped.samples_bad_time += 1;
                        continue;
                    }
                    request.chunk.points.push(Point {
                        series: u32::MAX,
                        ms,
                        value,
                    });
                }
                4 => {
                    reader.skip(tag)?;
                    request.skipped.native_histograms += 1;
                }
                _ => reader.skip(tag)?,
            }
        }
        let samples = request.chunk.points.len() - first_point;
        request.samples += samples;
        if request.samples > self.options.max_samples {
            return Err(RemoteWriteError::TooManySamples {
                limit: self.options.max_samples,
            });
        }
        match self.resolve(buffer, index)? {
            // A series without samples is checked but not added.
            Resolution::Series(_) if samples == 0 => {}
            Resolution::Series(id) => {
                let chunk_index = self.cache.chunk_index(
                    id,
                    self.request,
                    &mut request.chunk,
                    &mut request.host_labels,
                );
                for point in &mut request.chunk.points[first_point..] {
                    point.series = chunk_index;
                }
            }
            Resolution::WithoutHost(example) => {
                request.chunk.points.truncate(first_point);
                let skipped = &mut request.skipped;
                skipped.series_without_host += 1;
                skipped.samples_without_host += samples;
                if skipped.example_without_host.is_none() {
                    skipped.example_without_host = Some(example.to_string());
                }
            }
            Resolution::WithoutName => {
                request.chunk.points.truncate(first_point);
                request.skipped.series_without_name += 1;
                request.skipped.samples_without_name += samples;
            }
            Resolution::Invalid(problem) => {
                request.chunk.points.truncate(first_point);
                let skipped = &mut request.skipped;
                skipped.series_invalid += 1;
                skipped.samples_invalid += samples;
                if skipped.example_invalid.is_none() {
                    skipped.example_invalid = Some(problem.to_string());
                }
            }
        }
        Ok(())
    }

    /// The series of the label fields in `self.label_spans`, from the cache when the same bytes
    /// were seen before.
    fn resolve(&mut self, buffer: &[u8], index: usize) -> Result<Resolution, RemoteWriteError> {
        let contiguous = self
            .label_spans
            .windows(2)
            .all(|pair| pair[0].end == pair[1].start);
        let raw_key: &[u8] = match (self.label_spans.first(), self.label_spans.last()) {
            (Some(first), Some(last)) if contiguous => &buffer[first.start..last.end],
            (Some(_), Some(_)) => {
                self.key_scratch.clear();
                for span in &self.label_spans {
                    self.key_scratch.extend_from_slice(&buffer[span.clone()]);
                }
                &self.key_scratch
            }
            _ => &[],
        };
        let hash = match self.cache.find(self.previous_label_set, raw_key) {
            Found::Known(label_set) => {
                self.previous_label_set = label_set;
                return Ok(self.cache.resolution(label_set).clone());
            }
            Found::New(hash) => hash,
        };
        let built = build_series(
            buffer,
            &self.label_spans,
            index,
            &self.options,
            &self.excluded_labels,
            &self.families,
        )?;
        let resolution = match built {
            Built::Series(key, labels) => Resolution::Series(self.cache.intern(key, labels)),
            Built::WithoutHost(example) => Resolution::WithoutHost(Arc::from(example)),
            Built::WithoutName => Resolution::WithoutName,
            Built::Invalid(problem) => Resolution::Invalid(Arc::from(problem)),
        };
        self.previous_label_set =
            self.cache
                .insert(self.previous_label_set, raw_key, hash, resolution.clone());
        Ok(resolution)
    }

    /// Takes in a request's metadata entries; when they change what is a counter, the chunk's
    /// series are marked again and the cached series forgotten.
    fn learn_families(&mut self, metadata: &[(String, u64)], chunk: &mut MetricChunk) {
        let mut changed = false;
        for (family, metric_type) in metadata {
            if self.families.types.get(family) == Some(metric_type) {
                continue;
            }
            if self.families.types.len() >= self.options.max_cached_series {
                self.families.types.clear();
            }
            self.families.types.insert(family.clone(), *metric_type);
            changed = true;
        }
        if !changed {
            return;
        }
        for key in &mut chunk.series {
            let name = key.metric.split('{').next().unwrap_or_default();
            let counter = self.families.is_counter(name);
            if key.counter != counter {
                Arc::make_mut(key).counter = counter;
            }
        }
        self.cache.clear();
    }
}

fn read_sample(buffer: &[u8], range: Range<usize>) -> Result<(i64, f64), WireError> {
    // The usual encoding, value then timestamp and nothing else, read in one go.
    if let Some(sample) = usual_sample(&buffer[range.clone()]) {
        return Ok(sample);
    }
    let mut reader = MessageReader::new(buffer, range, "Sample");
    let mut value = 0.0;
    let mut ms = 0;
    while reader.has_more() {
        let tag = reader.tag()?;
        match tag.number {
            1 => value = f64::from_bits(reader.fixed64(tag)?),
            2 => ms = reader.varint(tag)? as i64,
            _ => reader.skip(tag)?,
        }
    }
    Ok((ms, value))
}

/// `0x09` and 8 value bytes, `0x10` and a varint timestamp that ends the sample.
fn usual_sample(bytes: &[u8]) -> Option<(i64, f64)> {
    let (head, time) = bytes.split_at_checked(10)?;
    if head[0] != 0x09 || head[9] != 0x10 {
        return None;
    }
    let ms = wire::whole_varint(time)? as i64;
    let mut value = [0u8; 8];
    value.copy_from_slice(&head[1..9]);
    Some((ms, f64::from_le_bytes(value)))
}

fn read_metadata(
    buffer: &[u8],
    range: Range<usize>,
    metadata: &mut Vec<(String, u64)>,
) -> Result<(), WireError> {
    let mut reader = MessageReader::new(buffer, range, "MetricMetadata");
    let mut metric_type = 0;
    let mut family = "";
    while reader.has_more() {
        let tag = reader.tag()?;
        match tag.number {
            1 => metric_type = reader.varint(tag)?,
            2 => family = reader.string(tag)?,
            4 | 5 => {
                reader.string(tag)?;
            }
            _ => reader.skip(tag)?,
        }
    }
    if !family.is_empty() {
        metadata.push((family.to_owned(), metric_type));
    }
    Ok(())
}

/// The host labels of the series added to a request, one entry per host: its series' labels
/// merged, the first value of a name kept.
fn merge_host_labels(of_series: &[Arc<HostLabels>]) -> Vec<HostLabels> {
    let mut by_host: std::collections::BTreeMap<&str, Vec<(&str, &str)>> =
        std::collections::BTreeMap::new();
    for labels in of_series {
        by_host.entry(labels.host.as_str()).or_default().extend(
            labels
                .labels
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
        );
    }
    by_host
        .into_iter()
        .filter(|(_, labels)| !labels.is_empty())
        .map(|(host, labels)| HostLabels::bounded(host, labels))
        .collect()
}

/// A label set read for the first time.
enum Built {
    /// The series and its host's labels as this label set gives them.
    Series(SeriesKey, HostLabels),
    WithoutHost(String),
    WithoutName,
    /// The host, app or metric breaks the naming rules: what is wrong, to show the sender.
    Invalid(String),
}

fn build_series(
    buffer: &[u8],
    label_spans: &[Range<usize>],
    index: usize,
    options: &RemoteWriteOptions,
    excluded_labels: &[String],
    families: &Families,
) -> Result<Built, RemoteWriteError> {
    let mut labels: Vec<(&str, &str)> = Vec::with_capacity(label_spans.len());
    for span in label_spans {
        let mut outer = MessageReader::new(buffer, span.clone(), "TimeSeries");
        let tag = outer.tag()?;
        let body = outer.length_delimited(tag)?;
        let (name, value) = read_label(buffer, body)?;
        if name.is_empty() {
            return Err(RemoteWriteError::EmptyLabelName { index });
        }
        if !value.is_empty() {
            labels.push((name, value));
        }
    }
    labels.sort_unstable_by(|left, right| left.0.cmp(right.0));
    if let Some(pair) = labels.windows(2).find(|pair| pair[0].0 == pair[1].0) {
        return Err(RemoteWriteError::DuplicateLabel {
            index,
            name: pair[0].0.to_owned(),
        });
    }
    let find = |wanted: &str| {
        labels
            .binary_search_by(|(name, _)| (*name).cmp(wanted))
            .ok()
            .map(|at| labels[at].1)
    };
    let Some(name) = find("__name__") else {
        return Ok(Built::WithoutName);
    };
    let Some(host) = options.host_labels.iter().find_map(|label| find(label)) else {
        let all = labels.iter().filter(|(label, _)| *label != "__name__");
        return Ok(Built::WithoutHost(prometheus_notation(name, all)));
    };
    let app = options
        .app_labels
        .iter()
        .find_map(|label| find(label))
        .unwrap_or_default();
    let identifying = labels.iter().filter(|(label, _)| {
        excluded_labels
            .binary_search_by(|excluded| excluded.as_str().cmp(label))
            .is_err()
    });
    let metric = prometheus_notation(name, identifying);
    let problem = [("host", host), ("app", app), ("metric", metric.as_str())]
        .into_iter()
        .find_map(|(field, text)| {
            validate::optional_name(text)
                .err()
                .map(|problem| problem.at(field).to_string())
        });
    if let Some(problem) = problem {
        return Ok(Built::Invalid(problem));
    }
    let host_labels = HostLabels::bounded(
        host,
        labels
            .iter()
            .filter(|(label, _)| *label != "__name__")
            .copied(),
    );
    Ok(Built::Series(
        SeriesKey {
            app: app.to_owned(),
            host: host.to_owned(),
            metric,
            counter: families.is_counter(name),
        },
        host_labels,
    ))
}

fn read_label(buffer: &[u8], range: Range<usize>) -> Result<(&str, &str), WireError> {
    let mut reader = MessageReader::new(buffer, range, "Label");
    let mut name = "";
    let mut value = "";
    while reader.has_more() {
        let tag = reader.tag()?;
        match tag.number {
            1 => name = reader.string(tag)?,
            2 => value = reader.string(tag)?,
            _ => reader.skip(tag)?,
        }
    }
    Ok((name, value))
}

/// `name{label="value",...}` with values escaped as Prometheus prints them; just `name` when
/// there are no labels.
pub(crate) fn prometheus_notation<'a>(
    name: &str,
    labels: impl Iterator<Item = &'a (&'a str, &'a str)>,
) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push_str(name);
    let mut first = true;
    for (label, value) in labels {
        out.push(if first { '{' } else { ',' });
        first = false;
        out.push_str(label);
        out.push_str("=\"");
        for character in value.chars() {
            match character {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                other => out.push(other),
            }
        }
        out.push('"');
    }
    if !first {
        out.push('}');
    }
    out
}

/// A metric in Prometheus' notation (`http_requests_total{code="500",method="get"}`, as
/// [`SeriesKey::metric`] holds it) split into its name and its labels, escapes undone. A name
/// without labels (JSON samples) has none; text after a malformed label set is left out, with
/// the labels read before it kept.
pub fn split_notation(metric: &str) -> (&str, Vec<(String, String)>) {
    let Some((name, rest)) = metric.split_once('{') else {
        return (metric, Vec::new());
    };
    let mut labels = Vec::new();
    let mut characters = rest.chars().peekable();
    loop {
        let before_equals: String = characters
            .by_ref()
            .take_while(|&character| character != '=')
            .collect();
        let label = before_equals.trim_start_matches(',').trim().to_owned();
        if label.is_empty() || characters.next() != Some('"') {
            break;
        }
        let mut value = String::new();
        let mut closed = false;
        while let Some(character) = characters.next() {
            match character {
                '"' => {
                    closed = true;
                    break;
                }
                '\\' => match characters.next() {
                    Some('n') => value.push('\n'),
                    Some(escaped) => value.push(escaped),
                    None => break,
                },
                other => value.push(other),
            }
        }
        if !closed {
            break;
        }
        labels.push((label, value));
        if characters.peek() != Some(&',') {
            break;
        }
    }
    (name, labels)
}

#[cfg(test)]
mod tests;
