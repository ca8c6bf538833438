//! The `release-bundle/1` format: one release, its hosts, batches, metric series and log counts.
//!
//! Read from `.json` or gzip'd `.json.gz` (recognised by content, not by name). Every malformed
//! input gets a [`BundleError`] that names the file and the field; nothing here panics.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::model::{Batch, Host, HostGroup, LogTemplate, MetricMeta};

/// The value of the `format` field this crate reads and writes.
pub const BUNDLE_FORMAT: &str = "release-bundle/1";

/// Samples per series: enough for a year at 10-second steps, small enough to refuse nonsense.
pub const MAX_POINTS: usize = 4_000_000;

/// Series of one metric or log template: host name to one value per step (`None` = missing).
pub type SeriesByHost<T> = BTreeMap<String, Vec<Option<T>>>;

/// One release with the data around it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bundle {
    pub format: String,
    pub id: String,
    pub app: String,
    pub step_seconds: i64,
    pub start: i64,
    pub points: usize,
    pub hosts: Vec<Host>,
    pub batches: Vec<Batch>,
    pub metrics: Vec<MetricMeta>,
    pub series: BTreeMap<String, SeriesByHost<f64>>,
    #[serde(default)]
    pub logs: Logs,
}

/// Log templates and their per-step line counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Logs {
    #[serde(default)]
    pub templates: Vec<LogTemplate>,
    /// Template id to host to lines per step; hosts with no line are left out.
    #[serde(default)]
    pub counts: BTreeMap<String, SeriesByHost<f64>>,
}

/// Why a bundle could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot read {file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("cannot write {file}: {source}")]
    Write {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: not gzip'd JSON: {source}")]
    Gzip {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: decompresses to more than the limit of {limit} bytes")]
    TooLarge { file: String, limit: usize },
    #[error("{file}: field `{field}`: {message}")]
    Field {
        file: String,
        field: String,
        message: String,
    },
}

impl BundleError {
    fn field(file: &str, field: impl Into<String>, message: impl Into<String>) -> Self {
        BundleError::Field {
            file: file.to_owned(),
            field: field.into(),
            message: message.into(),
        }
    }
}

impl Bundle {
    /// Reads and validates a bundle file (`.json` or `.json.gz`).
    pub fn read(path: &Path) -> Result<Bundle, BundleError> {
        let file = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| BundleError::Read {
            file: file.clone(),
            source,
        })?;
        Bundle::from_bytes(&bytes, &file)
    }

    /// Parses and validates a bundle; `file` names the input in error messages.
    pub fn from_bytes(bytes: &[u8], file: &str) -> Result<Bundle, BundleError> {
        Bundle::from_bytes_limited(bytes, file, usize::MAX)
    }

    /// [`Bundle::from_bytes`] for input nobody vouches for: a gzip'd bundle is decompressed
    /// only up to `max_plain_bytes` (a few MiB of gzip can expand to gigabytes), and a plain one
    /// larger than that is refused, both with [`BundleError::TooLarge`].
    pub fn from_bytes_limited(
        bytes: &[u8],
        file: &str,
        max_plain_bytes: usize,
    ) -> Result<Bundle, BundleError> {
        let too_large = || BundleError::TooLarge {
            file: file.to_owned(),
            limit: max_plain_bytes,
        };
        let is_gzip = bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b;
        let mut plain = Vec::new();
        let json: &[u8] = if is_gzip {
            // One byte past the limit tells a body at the limit from one over it.
            let reading_limit = u64::try_from(max_plain_bytes)
                .unwrap_or(u64::MAX)
                .saturating_add(1);
            flate2::read::MultiGzDecoder::new(bytes)
                .take(reading_limit)
                .read_to_end(&mut plain)
                .map_err(|source| BundleError::Gzip {
                    file: file.to_owned(),
                    source,
                })?;
            if plain.len() > max_plain_bytes {
                return Err(too_large());
            }
            &plain
        } else {
            if bytes.len() > max_plain_bytes {
                return Err(too_large());
            }
            bytes
        };
        let mut deserializer = serde_json::Deserializer::from_slice(json);
        let bundle: Bundle =
            serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
                let field = error.path().to_string();
                let field = if field == "." {
                    "(document)".to_owned()
                } else {
                    field
                };
                BundleError::field(file, field, error.into_inner().to_string())
            })?;
        deserializer
            .end()
            .map_err(|error| BundleError::field(file, "(document)", error.to_string()))?;
        bundle.validate(file)?;
        Ok(bundle)
    }

    /// Writes the bundle, gzip'd when the path ends in `.gz`.
    pub fn write(&self, path: &Path) -> Result<(), BundleError> {
        let file = path.display().to_string();
        let json = serde_json::to_vec(self)
            .map_err(|error| BundleError::field(&file, "(document)", error.to_string()))?;
        let bytes = if file.ends_with(".gz") {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder
                .write_all(&json)
                .map_err(|source| BundleError::Write {
                    file: file.clone(),
                    source,
                })?;
            encoder.finish().map_err(|source| BundleError::Write {
                file: file.clone(),
                source,
            })?
        } else {
            json
        };
        std::fs::write(path, bytes).map_err(|source| BundleError::Write { file, source })
    }

    /// Checks every rule of the format that serde's types do not already enforce.
    pub fn validate(&self, file: &str) -> Result<(), BundleError> {
        if self.format != BUNDLE_FORMAT {
            return Err(BundleError::field(
                file,
                "format",
                format!("expected \"{BUNDLE_FORMAT}\", found {:?}", self.format),
            ));
        }
        if self.step_seconds <= 0 {
            return Err(BundleError::field(
                file,
                "step_seconds",
                "must be a positive number of seconds",
            ));
        }
        if self.points == 0 || self.points > MAX_POINTS {
            return Err(BundleError::field(
                file,
                "points",
                format!("must be between 1 and {MAX_POINTS}"),
            ));
        }
        let mut groups: HashMap<&str, HostGroup> = HashMap::new();
        for (index, host) in self.hosts.iter().enumerate() {
            if host.name.is_empty() {
                return Err(BundleError::field(
                    file,
                    format!("hosts[{index}].name"),
                    "is empty",
                ));
            }
            if groups.insert(&host.name, host.group).is_some() {
                return Err(BundleError::field(
                    file,
                    format!("hosts[{index}].name"),
                    format!("host {:?} is listed twice", host.name),
                ));
            }
        }
        let mut deployed: HashSet<&str> = HashSet::new();
        for (index, batch) in self.batches.iter().enumerate() {
            for (position, host) in batch.hosts.iter().enumerate() {
                let field = format!("batches[{index}].hosts[{position}]");
                match groups.get(host.as_str()) {
                    None => {
                        return Err(BundleError::field(
                            file,
                            field,
                            format!("unknown host {host:?}"),
                        ))
                    }
                    Some(HostGroup::Reference) => {
                        return Err(BundleError::field(
                            file,
                            field,
                            format!("host {host:?} is in the reference group"),
                        ))
                    }
                    Some(HostGroup::Release) => {}
                }
                if !deployed.insert(host) {
                    return Err(BundleError::field(
                        file,
                        field,
                        format!("host {host:?} is in two batches"),
                    ));
                }
            }
        }
        let mut metric_names = HashSet::new();
        for (index, metric) in self.metrics.iter().enumerate() {
            if metric.name.is_empty() {
                return Err(BundleError::field(
                    file,
                    format!("metrics[{index}].name"),
                    "is empty",
                ));
            }
            if !metric_names.insert(metric.name.as_str()) {
                return Err(BundleError::field(
                    file,
                    format!("metrics[{index}].name"),
                    format!("metric {:?} is listed twice", metric.name),
                ));
            }
        }
        for (metric, by_host) in &self.series {
            if !metric_names.contains(metric.as_str()) {
                return Err(BundleError::field(
                    file,
                    format!("series.{metric}"),
                    "metric is not listed in `metrics`",
                ));
            }
            self.validate_series(file, &format!("series.{metric}"), by_host, &groups, false)?;
        }
        let mut template_ids = HashSet::new();
        for (index, template) in self.logs.templates.iter().enumerate() {
            if !template_ids.insert(template.id.as_str()) {
                return Err(BundleError::field(
                    file,
                    format!("logs.templates[{index}].id"),
                    format!("template {:?} is listed twice", template.id),
                ));
            }
        }
        for (template, by_host) in &self.logs.counts {
            if !template_ids.contains(template.as_str()) {
                return Err(BundleError::field(
                    file,
                    format!("logs.counts.{template}"),
                    "template is not listed in `logs.templates`",
                ));
            }
            self.validate_series(
                file,
                &format!("logs.counts.{template}"),
                by_host,
                &groups,
                true,
            )?;
        }
        Ok(())
    }

    fn validate_series(
        &self,
        file: &str,
        field: &str,
        by_host: &SeriesByHost<f64>,
        groups: &HashMap<&str, HostGroup>,
        counts: bool,
    ) -> Result<(), BundleError> {
        for (host, values) in by_host {
            if !groups.contains_key(host.as_str()) {
                return Err(BundleError::field(
                    file,
                    format!("{field}.{host}"),
                    "host is not listed in `hosts`",
                ));
            }
            if values.len() != self.points {
                return Err(BundleError::field(
                    file,
                    format!("{field}.{host}"),
                    format!("has {} values, `points` says {}", values.len(), self.points),
                ));
            }
            if counts {
                if let Some(position) = values
                    .iter()
                    .position(|value| value.is_some_and(|count| count < 0.0))
                {
                    return Err(BundleError::field(
                        file,
                        format!("{field}.{host}[{position}]"),
                        "a line count cannot be negative",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Unix time of sample `index`.
    pub fn time_of(&self, index: usize) -> i64 {
        self.start + self.step_seconds * index as i64
    }

    /// Index of the last sample at or before `time`, if any.
    pub fn index_at(&self, time: i64) -> Option<usize> {
        if time < self.start {
            return None;
        }
        let index = usize::try_from((time - self.start) / self.step_seconds).ok()?;
        Some(index.min(self.points - 1))
    }

    /// The time of the first batch, if any batch was deployed.
    pub fn first_deploy(&self) -> Option<i64> {
        self.batches.iter().map(|batch| batch.at).min()
    }

    /// The same bundle with only the samples up to and including index `last` (live view).
    pub fn truncated(&self, last: usize) -> Bundle {
        let keep = (last + 1).min(self.points);
        let cut = |by_host: &SeriesByHost<f64>| -> SeriesByHost<f64> {
            by_host
                .iter()
                .map(|(host, values)| (host.clone(), values[..keep].to_vec()))
                .collect()
        };
        let end = self.time_of(keep - 1);
        Bundle {
            points: keep,
            batches: self
                .batches
                .iter()
                .filter(|batch| batch.at <= end)
                .cloned()
                .collect(),
            series: self
                .series
                .iter()
                .map(|(metric, by_host)| (metric.clone(), cut(by_host)))
                .collect(),
            logs: Logs {
                templates: self.logs.templates.clone(),
                counts: self
                    .logs
                    .counts
                    .iter()
                    .map(|(template, by_host)| (template.clone(), cut(by_host)))
                    .collect(),
            },
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_bundle_json() -> String {
        r#"{"format":"release-bundle/1","id":"r1","app":"a","step_seconds":60,"start":1000,"points":3,
            "hosts":[{"name":"h0","group":"release"},{"name":"h1","group":"reference"}],
            "batches":[{"index":0,"at":1060,"hosts":["h0"]}],
            "metrics":[{"name":"m","kind":"system","unit":"percent","direction":"increase","critical":false}],
            "series":{"m":{"h0":[1.0,null,2.0],"h1":[1.0,1.0,1.0]}},
            "logs":{"templates":[{"id":"t1","text":"boom <*>","level":"ERROR"}],"counts":{"t1":{"h0":[0,1,2]}}}}"#
            .to_owned()
    }

    #[test]
    fn reads_a_valid_bundle() {
        let bundle = Bundle::from_bytes(small_bundle_json().as_bytes(), "x.json").unwrap();
        assert_eq!(bundle.points, 3);
        assert_eq!(bundle.series["m"]["h0"][1], None);
        assert_eq!(bundle.time_of(2), 1120);
        assert_eq!(bundle.index_at(1119), Some(1));
        assert_eq!(bundle.index_at(999), None);
    }

    #[test]
    fn reads_gzip_and_round_trips_through_files() {
        let bundle = Bundle::from_bytes(small_bundle_json().as_bytes(), "x.json").unwrap();
        let dir = std::env::temp_dir().join(format!("vigil-core-bundle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["b.json", "b.json.gz"] {
            let path = dir.join(name);
            bundle.write(&path).unwrap();
            assert_eq!(Bundle::read(&path).unwrap(), bundle);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_gzip_bomb_is_refused_after_the_limit_not_after_expanding() {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let zeros = vec![b' '; 1 << 20];
        for _ in 0..64 {
            encoder.write_all(&zeros).unwrap();
        }
        let bomb = encoder.finish().unwrap();
        let error = Bundle::from_bytes_limited(&bomb, "body", 1 << 20).unwrap_err();
        assert_eq!(
            error.to_string(),
            "body: decompresses to more than the limit of 1048576 bytes"
        );
        let plain = small_bundle_json();
        assert!(matches!(
            Bundle::from_bytes_limited(plain.as_bytes(), "body", 10),
            Err(BundleError::TooLarge { .. })
        ));
        assert!(Bundle::from_bytes_limited(plain.as_bytes(), "body", plain.len()).is_ok());
    }

    fn error_of(json: &str) -> String {
        Bundle::from_bytes(json.as_bytes(), "bad.json")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let good = small_bundle_json();
        let wrong_type = good.replace("\"step_seconds\":60", "\"step_seconds\":\"60\"");
        assert!(
            error_of(&wrong_type).contains("bad.json: field `step_seconds`"),
            "{}",
            error_of(&wrong_type)
        );
        let short_series = good.replace("[1.0,null,2.0]", "[1.0,null]");
        assert!(
            error_of(&short_series).contains("field `series.m.h0`"),
            "{}",
            error_of(&short_series)
        );
        let unknown_host = good.replace("\"hosts\":[\"h0\"]", "\"hosts\":[\"h9\"]");
        assert!(error_of(&unknown_host).contains("field `batches[0].hosts[0]`"));
        let bad_direction = good.replace("\"increase\"", "\"sideways\"");
        assert!(
            error_of(&bad_direction).contains("field `metrics[0].direction`"),
            "{}",
            error_of(&bad_direction)
        );
        let bad_format = good.replace("release-bundle/1", "release-bundle/9");
        assert!(error_of(&bad_format).contains("field `format`"));
        let negative = good.replace("[0,1,2]", "[0,-1,2]");
        assert!(error_of(&negative).contains("field `logs.counts.t1.h0[1]`"));
        assert!(error_of("{").contains("bad.json"));
        let truncated_gzip = [0x1f, 0x8b, 0x08];
        assert!(Bundle::from_bytes(&truncated_gzip, "z.json.gz")
            .unwrap_err()
            .to_string()
            .contains("z.json.gz"));
    }

    #[test]
    fn truncation_keeps_only_the_past() {
        let bundle = Bundle::from_bytes(small_bundle_json().as_bytes(), "x.json").unwrap();
        let cut = bundle.truncated(0);
        assert_eq!(cut.points, 1);
        assert!(cut.batches.is_empty());
        assert_eq!(cut.series["m"]["h0"], vec![Some(1.0)]);
        cut.validate("cut").unwrap();
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = Bundle::from_bytes(&bytes, "fuzz");
        }

        #[test]
        fn any_prefix_of_a_bundle_never_panics(cut in 0usize..600) {
            let json = small_bundle_json();
            let end = cut.min(json.len());
            let _ = Bundle::from_bytes(&json.as_bytes()[..end], "prefix");
        }
    }
}
