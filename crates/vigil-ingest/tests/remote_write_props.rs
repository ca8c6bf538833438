//! Property tests of the remote-write decoder: arbitrary, cut and damaged bodies never panic,
//! and what the encoder writes decodes to the series and samples it was given.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use vigil_core::samples::{MetricChunk, Point, SeriesKey};
use vigil_ingest::remote_write::{
    encode_remote_write, encode_write_request, RemoteWriteDecoder, RemoteWriteOptions, WriteSample,
    WriteSeries,
};

/// A series as generated: its labels by name, and its samples.
#[derive(Debug, Clone)]
struct Generated {
    name: String,
    host: Option<String>,
    app: Option<String>,
    extra: BTreeMap<String, String>,
    samples: Vec<(i64, f64)>,
}

fn generated_series() -> impl Strategy<Value = Generated> {
    (
        "[a-z_]{1,6}(_total)?",
        proptest::option::weighted(0.9, "h[0-9]{1,2}"),
        proptest::option::of("[a-z]{1,3}"),
        proptest::collection::btree_map("(code|path|le|zone)", "[ -~]{1,4}", 0..3),
        // Times Vigil takes (1970 to the year 9999); others are dropped, tested beside the
        // decoder.
        proptest::collection::vec((0..=vigil_core::validate::LATEST_MS, any::<f64>()), 0..4),
    )
        .prop_map(|(name, host, app, extra, samples)| Generated {
            name,
            host,
            app,
            extra,
            samples,
        })
}

fn to_write_series(generated: &Generated, reverse_labels: bool) -> WriteSeries {
    let mut labels: Vec<(String, String)> = vec![("__name__".into(), generated.name.clone())];
    if let Some(host) = &generated.host {
        labels.push(("host".into(), host.clone()));
    }
    if let Some(app) = &generated.app {
        labels.push(("app".into(), app.clone()));
    }
    labels.extend(generated.extra.clone());
    if reverse_labels {
        labels.reverse();
    }
    WriteSeries {
        labels,
        samples: generated
            .samples
            .iter()
            .map(|&(ms, value)| WriteSample { ms, value })
            .collect(),
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The chunk the decoder should make of these series, written independently of it.
fn expected_chunk(all: &[Generated]) -> MetricChunk {
    let mut chunk = MetricChunk::default();
    let mut index_of: HashMap<SeriesKey, u32> = HashMap::new();
    for generated in all {
        let Some(host) = &generated.host else {
            continue;
        };
        let mut metric = generated.name.clone();
        if !generated.extra.is_empty() {
            let pairs: Vec<String> = generated
                .extra
                .iter()
                .map(|(label, value)| format!("{label}=\"{}\"", escape(value)))
                .collect();
            metric = format!("{metric}{{{}}}", pairs.join(","));
        }
        let key = SeriesKey {
            app: generated.app.clone().unwrap_or_default(),
            host: host.clone(),
            metric,
            counter: generated.name.ends_with("_total"),
        };
        if generated.samples.is_empty() {
            continue;
        }
        let next = chunk.series.len() as u32;
        let series = *index_of.entry(key.clone()).or_insert_with(|| {
            chunk.series.push(key.into());
            next
        });
        for &(ms, value) in &generated.samples {
            chunk.points.push(Point { series, ms, value });
        }
    }
    chunk
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut decoder = RemoteWriteDecoder::new(RemoteWriteOptions::default());
        let _ = decoder.decode(&bytes);
        let _ = decoder.decode_protobuf(&bytes);
    }

    #[test]
    fn encoded_series_decode_to_what_was_sent(
        all in proptest::collection::vec(generated_series(), 0..12),
        reverse_labels in any::<bool>(),
    ) {
        let series: Vec<WriteSeries> =
            all.iter().map(|one| to_write_series(one, reverse_labels)).collect();
        let body = encode_remote_write(&series, &[]).expect("encodes");
        let mut decoder = RemoteWriteDecoder::new(RemoteWriteOptions::default());
        let expected = expected_chunk(&all).encode();
        // Twice: the second decode comes from the decoder's cache.
        for _ in 0..2 {
            let mut batch = decoder.decode(&body).expect("decodes");
            // Every host's labels name its host, which has a series; then the series and
            // points are what was sent.
            let labels = std::mem::take(&mut batch.chunk.host_labels);
            for host in &labels {
                prop_assert!(batch.chunk.series.iter().any(|key| key.host == host.host));
                prop_assert!(host.labels.iter().any(|(name, value)| name == "host" && *value == host.host));
            }
            prop_assert_eq!(batch.chunk.encode(), expected.clone());
            let without_host = all.iter().filter(|one| one.host.is_none()).count();
            prop_assert_eq!(batch.skipped.series_without_host, without_host);
        }
    }

    #[test]
    fn cut_and_damaged_bodies_never_panic(
        all in proptest::collection::vec(generated_series(), 1..6),
        cut in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let series: Vec<WriteSeries> = all.iter().map(|one| to_write_series(one, false)).collect();
        let protobuf = encode_write_request(&series, &[]);
        let mut decoder = RemoteWriteDecoder::new(RemoteWriteOptions::default());
        let cut_at = cut.index(protobuf.len() + 1);
        let _ = decoder.decode_protobuf(&protobuf[..cut_at]);
        let mut damaged = protobuf.clone();
        for (at, byte) in &flips {
            let index = at.index(damaged.len());
            damaged[index] ^= byte | 1;
        }
        let _ = decoder.decode_protobuf(&damaged);
        let body = encode_remote_write(&series, &[]).expect("encodes");
        let _ = decoder.decode(&body[..cut.index(body.len() + 1)]);
        // The decoder still decodes the intact request afterwards.
        prop_assert!(decoder.decode_protobuf(&protobuf).is_ok());
    }
}
