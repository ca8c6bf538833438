use super::wire::{put_bytes, put_tag, put_varint, FIXED64, LENGTH_DELIMITED, VARINT};
use super::*;

const T0: i64 = 1_700_000_000_000;

fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> WriteSeries {
    let mut one = WriteSeries::new(labels);
    for &(ms, value) in samples {
        one = one.with_sample(ms, value);
    }
    one
}

fn decode(series: &[WriteSeries]) -> RemoteWriteBatch {
    let body = encode_remote_write(series, &[]).expect("encodes");
    decode_remote_write(&body, &RemoteWriteOptions::default()).expect("decodes")
}

fn key(app: &str, host: &str, metric: &str, counter: bool) -> Arc<SeriesKey> {
    Arc::new(SeriesKey {
        app: app.into(),
        host: host.into(),
        metric: metric.into(),
        counter,
    })
}

#[test]
fn an_agent_payload_decodes_into_one_series_per_label_set() {
    let batch = decode(&[
        series(
            &[
                ("__name__", "cpu_user_ratio"),
                ("app", "shop"),
                ("host", "h1"),
            ],
            &[(T0, 0.25), (T0 + 1000, 0.5)],
        ),
        series(
            &[
                ("__name__", "http_requests_total"),
                ("app", "shop"),
                ("host", "h2"),
            ],
            &[(T0, 12.0)],
        ),
    ]);
    assert_eq!(
        batch.chunk.series,
        vec![
            key("shop", "h1", "cpu_user_ratio", false),
            key("shop", "h2", "http_requests_total", true),
        ]
    );
    let points: Vec<(u32, i64, f64)> = batch
        .chunk
        .points
        .iter()
        .map(|point| (point.series, point.ms, point.value))
        .collect();
    assert_eq!(
        points,
        vec![(0, T0, 0.25), (0, T0 + 1000, 0.5), (1, T0, 12.0)]
    );
    assert!(batch.skipped.is_empty());
}

#[test]
fn other_labels_are_sorted_escaped_and_instance_and_job_left_out() {
    let batch = decode(&[series(
        &[
            ("job", "node"),
            ("instance", "10.0.0.1:9100"),
            ("path", "/a\"b\\c\nd"),
            ("code", "500"),
            ("__name__", "errors"),
            ("empty", ""),
        ],
        &[(T0, 1.0)],
    )]);
    assert_eq!(
        batch.chunk.series,
        vec![key(
            "node",
            "10.0.0.1:9100",
            r#"errors{code="500",path="/a\"b\\c\nd"}"#,
            false
        )]
    );
}

#[test]
fn a_pods_labels_become_its_host_labels_and_its_template_hash_leaves_the_metric_name() {
    let pod = |hash: &str, host: &str, name: &str| {
        series(
            &[
                ("__name__", name),
                ("app", "shop"),
                ("host", host),
                ("namespace", "prod"),
                ("rollouts_pod_template_hash", hash),
            ],
            &[(T0, 1.0)],
        )
    };
    let mut decoder = RemoteWriteDecoder::new(RemoteWriteOptions::default());
    for _ in 0..2 {
        // The second request finds its series in the cache, and still gives their labels.
        let body = encode_remote_write(
            &[
                pod("abc123", "shop-abc123-x", "latency_ms"),
                pod("abc123", "shop-abc123-x", "errors_total"),
                pod("def456", "shop-def456-y", "latency_ms"),
            ],
            &[],
        )
        .expect("encodes");
        let batch = decoder.decode(&body).expect("decodes");
        assert_eq!(
            batch.chunk.series,
            vec![
                key(
                    "shop",
                    "shop-abc123-x",
                    r#"latency_ms{namespace="prod"}"#,
                    false
                ),
                key(
                    "shop",
                    "shop-abc123-x",
                    r#"errors_total{namespace="prod"}"#,
                    true
                ),
                key(
                    "shop",
                    "shop-def456-y",
                    r#"latency_ms{namespace="prod"}"#,
                    false
                ),
            ]
        );
        let labelled = |host: &str, hash: &str| HostLabels {
            host: host.into(),
            labels: vec![
                ("app".into(), "shop".into()),
                ("host".into(), host.into()),
                ("namespace".into(), "prod".into()),
                ("rollouts_pod_template_hash".into(), hash.into()),
            ],
        };
        assert_eq!(
            batch.chunk.host_labels,
            vec![
                labelled("shop-abc123-x", "abc123"),
                labelled("shop-def456-y", "def456")
            ]
        );
    }
}

#[test]
fn host_and_app_label_names_are_options() {
    let options = RemoteWriteOptions {
        host_labels: vec!["node".into()],
        app_labels: vec!["service".into()],
        ..RemoteWriteOptions::default()
    };
    let body = encode_remote_write(
        &[series(
            &[
                ("__name__", "up"),
                ("host", "not-this"),
                ("node", "n1"),
                ("service", "web"),
            ],
            &[(T0, 1.0)],
        )],
        &[],
    )
    .expect("encodes");
    let batch = decode_remote_write(&body, &options).expect("decodes");
    assert_eq!(
        batch.chunk.series,
        vec![key("web", "n1", r#"up{host="not-this"}"#, false)]
    );
}

#[test]
fn series_without_a_host_or_a_name_are_skipped_and_counted() {
    let batch = decode(&[
        series(
            &[("__name__", "up"), ("region", "eu")],
            &[(T0, 1.0), (T0 + 1, 1.0)],
        ),
        series(&[("host", "h1")], &[(T0, 1.0)]),
        series(&[("__name__", "up"), ("host", "h1")], &[(T0, 1.0)]),
        series(&[("__name__", "up"), ("region", "eu")], &[(T0 + 2, 1.0)]),
    ]);
    assert_eq!(batch.chunk.series, vec![key("", "h1", "up", false)]);
    assert_eq!(batch.chunk.points.len(), 1);
    assert_eq!(batch.chunk.points[0].series, 0);
    assert_eq!(
        batch.skipped,
        Skipped {
            series_without_host: 2,
            samples_without_host: 3,
            example_without_host: Some(r#"up{region="eu"}"#.into()),
            series_without_name: 1,
            samples_without_name: 1,
            native_histograms: 0,
            ..Skipped::default()
        }
    );
}

#[test]
fn repeated_and_reordered_label_sets_share_one_series() {
    let batch = decode(&[
        series(&[("__name__", "m"), ("host", "h1")], &[(T0, 1.0)]),
        series(&[("host", "h1"), ("__name__", "m")], &[(T0 + 1, 2.0)]),
        series(&[("__name__", "m"), ("host", "h1")], &[(T0 + 2, 3.0)]),
        series(
            &[("__name__", "m"), ("host", "h1"), ("instance", "i2")],
            &[(T0 + 3, 4.0)],
        ),
    ]);
    assert_eq!(batch.chunk.series.len(), 1);
    assert!(batch.chunk.points.iter().all(|point| point.series == 0));
    assert_eq!(batch.chunk.points.len(), 4);
}

#[test]
fn a_decoder_reuses_what_it_learned_in_later_requests() {
    let mut decoder = RemoteWriteDecoder::new(RemoteWriteOptions::default());
    let first = encode_remote_write(
        &[
            series(&[("__name__", "a"), ("host", "h1")], &[(T0, 1.0)]),
            series(&[("__name__", "b"), ("host", "h1")], &[(T0, 2.0)]),
        ],
        &[],
    )
    .expect("encodes");
    let second = encode_remote_write(
        &[
            series(&[("__name__", "b"), ("host", "h1")], &[(T0 + 1, 3.0)]),
            series(&[("__name__", "c"), ("host", "h1")], &[(T0 + 1, 4.0)]),
        ],
        &[],
    )
    .expect("encodes");
    decoder.decode(&first).expect("first");
    let batch = decoder.decode(&second).expect("second");
    assert_eq!(
        batch.chunk.series,
        vec![key("", "h1", "b", false), key("", "h1", "c", false)]
    );
    assert_eq!(
        batch
            .chunk
            .points
            .iter()
            .map(|point| (point.series, point.value))
            .collect::<Vec<_>>(),
        vec![(0, 3.0), (1, 4.0)]
    );
    let small = RemoteWriteOptions {
        max_cached_series: 0,
        ..RemoteWriteOptions::default()
    };
    let mut forgetful = RemoteWriteDecoder::new(small);
    forgetful.decode(&first).expect("first");
    assert_eq!(forgetful.decode(&second).expect("second"), batch);
}

fn metadata(family: &str, metric_type: MetricType) -> WriteMetadata {
    WriteMetadata {
        metric_type,
        family: family.into(),
        help: "help text".into(),
        unit: String::new(),
    }
}

#[test]
fn counters_come_from_metadata_or_the_total_suffix() {
    let all = [
        series(&[("__name__", "requests"), ("host", "h")], &[(T0, 1.0)]),
        series(
            &[("__name__", "latency_bucket"), ("host", "h"), ("le", "0.1")],
            &[(T0, 1.0)],
        ),
        series(
            &[("__name__", "latency_count"), ("host", "h")],
            &[(T0, 1.0)],
        ),
        series(&[("__name__", "rpc_sum"), ("host", "h")], &[(T0, 1.0)]),
        series(
            &[("__name__", "rpc"), ("host", "h"), ("quantile", "0.9")],
            &[(T0, 1.0)],
        ),
        series(&[("__name__", "temperature"), ("host", "h")], &[(T0, 1.0)]),
        series(&[("__name__", "bytes_total"), ("host", "h")], &[(T0, 1.0)]),
    ];
    let described = [
        metadata("requests", MetricType::Counter),
        metadata("latency", MetricType::Histogram),
        metadata("rpc", MetricType::Summary),
        metadata("temperature", MetricType::Gauge),
    ];
    let counters = |batch: &RemoteWriteBatch| -> Vec<bool> {
        batch.chunk.series.iter().map(|key| key.counter).collect()
    };
    let expected = vec![true, true, true, true, false, false, true];

    let together = encode_remote_write(&all, &described).expect("encodes");
    let mut decoder = RemoteWriteDecoder::new(RemoteWriteOptions::default());
    let batch = decoder.decode(&together).expect("decodes");
    assert_eq!(counters(&batch), expected);

    // Prometheus sends metadata in requests of its own: later requests still know.
    let mut apart = RemoteWriteDecoder::new(RemoteWriteOptions::default());
    let samples_only = encode_remote_write(&all, &[]).expect("encodes");
    let before = apart.decode(&samples_only).expect("decodes");
    assert_eq!(
        counters(&before),
        vec![false, false, false, false, false, false, true]
    );
    let metadata_only = encode_remote_write(&[], &described).expect("encodes");
    assert_eq!(
        apart.decode(&metadata_only).expect("decodes"),
        RemoteWriteBatch::default()
    );
    assert_eq!(
        counters(&apart.decode(&samples_only).expect("decodes")),
        expected
    );
}

#[test]
fn zero_values_and_negative_times_survive_their_proto3_shape() {
    // A negative time is read back as sent, then dropped and counted: times before 1970 are
    // refused by every way in.
    let batch = decode(&[series(
        &[("__name__", "m"), ("host", "h")],
        &[
            (0, 0.0),
            (-5, 1.0),
            (5, -0.0),
            (T0, f64::NAN),
            (T0 + 1, f64::INFINITY),
        ],
    )]);
    assert_eq!(batch.skipped.samples_bad_time, 1);
    let points = &batch.chunk.points;
    assert_eq!((points[0].ms, points[0].value), (0, 0.0));
    assert_eq!(points[1].ms, 5);
    assert!(points[1].value.is_sign_negative());
    assert!(points[2].value.is_nan());
    assert_eq!(points[3].value, f64::INFINITY);
}

/// A `TimeSeries` by hand: labels interleaved with samples, and unknown fields of every wire
/// type in every message.
fn unusual_request() -> Vec<u8> {
    fn unknown_fields(out: &mut Vec<u8>) {
        put_tag(out, 15, VARINT);
        put_varint(out, 300);
        put_tag(out, 16, FIXED64);
        out.extend_from_slice(&[7; 8]);
        put_bytes(out, 17, b"ignored");
        put_tag(out, 18, 3);
        put_tag(out, 1, 5);
        out.extend_from_slice(&[1; 4]);
        put_tag(out, 18, 4);
        put_tag(out, 19, 5);
        out.extend_from_slice(&[2; 4]);
    }
    let label = |name: &str, value: &str| {
        let mut out = Vec::new();
        unknown_fields(&mut out);
        put_bytes(&mut out, 1, name.as_bytes());
        put_bytes(&mut out, 2, value.as_bytes());
        out
    };
    let mut sample = Vec::new();
    put_tag(&mut sample, 2, VARINT);
    put_varint(&mut sample, T0 as u64);
    unknown_fields(&mut sample);
    put_tag(&mut sample, 1, FIXED64);
    sample.extend_from_slice(&2.5f64.to_le_bytes());

    let mut time_series = Vec::new();
    put_bytes(&mut time_series, 1, &label("host", "h1"));
    put_bytes(&mut time_series, 2, &sample);
    unknown_fields(&mut time_series);
    put_bytes(&mut time_series, 3, b"\x0a\x00");
    put_bytes(&mut time_series, 1, &label("__name__", "m"));
    put_bytes(&mut time_series, 4, b"\x08\x01");

    let mut request = Vec::new();
    unknown_fields(&mut request);
    put_bytes(&mut request, 1, &time_series);
    put_bytes(&mut request, 1, &time_series);
    unknown_fields(&mut request);
    request
}

#[test]
fn unknown_fields_are_skipped_and_interleaved_labels_still_name_the_series() {
    let batch = RemoteWriteDecoder::new(RemoteWriteOptions::default())
        .decode_protobuf(&unusual_request())
        .expect("decodes");
    assert_eq!(batch.chunk.series, vec![key("", "h1", "m", false)]);
    assert_eq!(batch.chunk.points.len(), 2);
    assert_eq!(batch.chunk.points[1].value, 2.5);
    assert_eq!(batch.chunk.points[1].ms, T0);
    assert_eq!(batch.skipped.native_histograms, 2);
}

#[test]
fn every_cut_of_a_request_is_refused_or_decodes_a_prefix() {
    let request = unusual_request();
    let mut decoder = RemoteWriteDecoder::new(RemoteWriteOptions::default());
    for cut in 0..request.len() {
        // Cuts between top-level fields are valid, shorter requests; the others must fail.
        if let Ok(batch) = decoder.decode_protobuf(&request[..cut]) {
            assert!(batch.chunk.points.len() <= 2);
        }
    }
    let body = encode_remote_write(
        &[series(&[("__name__", "m"), ("host", "h")], &[(T0, 1.0)])],
        &[],
    )
    .expect("encodes");
    for cut in 0..body.len() {
        assert!(decoder.decode(&body[..cut]).is_err(), "cut at {cut}");
    }
}

fn error_of(protobuf: &[u8]) -> String {
    RemoteWriteDecoder::new(RemoteWriteOptions::default())
        .decode_protobuf(protobuf)
        .expect_err("refused")
        .to_string()
}

#[test]
fn malformed_protobuf_errors_say_what_and_where() {
    let good = encode_write_request(
        &[series(&[("__name__", "m"), ("host", "h")], &[(T0, 1.0)])],
        &[],
    );
    // Cut inside the first label's value: the outer lengths no longer fit.
    assert_eq!(
        error_of(&good[..10]),
        "protobuf: field 1 of WriteRequest truncated at byte 1"
    );
    let mut short_label = Vec::new();
    put_tag(&mut short_label, 1, LENGTH_DELIMITED);
    put_varint(&mut short_label, 3);
    put_tag(&mut short_label, 1, LENGTH_DELIMITED);
    put_varint(&mut short_label, 9);
    short_label.push(b'x');
    assert_eq!(
        error_of(&short_label),
        "protobuf: field 1 of TimeSeries truncated at byte 3"
    );
    let mut wrong_type = Vec::new();
    put_tag(&mut wrong_type, 1, VARINT);
    put_varint(&mut wrong_type, 1);
    assert_eq!(
        error_of(&wrong_type),
        "protobuf: field 1 of WriteRequest has wire type 0 where 2 was expected at byte 0"
    );
    let mut bad_text = Vec::new();
    let mut label = Vec::new();
    put_bytes(&mut label, 1, b"\xff");
    let mut time_series = Vec::new();
    put_bytes(&mut time_series, 1, &label);
    put_bytes(&mut bad_text, 1, &time_series);
    assert_eq!(
        error_of(&bad_text),
        "protobuf: field 1 of Label is not valid utf-8 at byte 6"
    );
}

#[test]
fn label_and_limit_errors_name_the_series() {
    let twice = encode_write_request(
        &[
            series(&[("__name__", "m"), ("host", "h")], &[]),
            series(&[("__name__", "m"), ("host", "h"), ("host", "g")], &[]),
        ],
        &[],
    );
    assert_eq!(
        error_of(&twice),
        r#"timeseries[1]: label "host" appears twice"#
    );
    let nameless = encode_write_request(&[series(&[("", "x")], &[])], &[]);
    assert_eq!(
        error_of(&nameless),
        "timeseries[0]: a label has an empty name"
    );

    let options = RemoteWriteOptions {
        max_series: 1,
        max_samples: 2,
        max_labels_per_series: 2,
        max_body_bytes: 100,
        max_decompressed_bytes: 200,
        ..RemoteWriteOptions::default()
    };
    let check = |series_list: &[WriteSeries], expected: &str| {
        let body = encode_remote_write(series_list, &[]).expect("encodes");
        let error = decode_remote_write(&body, &options).expect_err("over a limit");
        assert_eq!(error.to_string(), expected);
    };
    let labels = [("__name__", "m"), ("host", "h")];
    check(
        &[series(&labels, &[]), series(&labels, &[])],
        "request has more than 1 series",
    );
    check(
        &[series(&labels, &[(1, 1.0), (2, 1.0), (3, 1.0)])],
        "request has more than 2 samples",
    );
    check(
        &[series(&[("__name__", "m"), ("host", "h"), ("a", "b")], &[])],
        "timeseries[0] has more than 2 labels",
    );
    let long = "x".repeat(300);
    check(
        &[series(&[("__name__", &long)], &[])],
        "snappy: body decompresses to 319 bytes, more than the limit of 200",
    );
    let body = vec![0u8; 101];
    let error = decode_remote_write(&body, &options).expect_err("too large");
    assert_eq!(
        error.to_string(),
        "body is 101 bytes, more than the limit of 100"
    );
}

#[test]
fn snappy_errors_say_snappy() {
    let lying = decode_remote_write(b"\xc0\x84\x3d\x00", &RemoteWriteOptions::default())
        .expect_err("lying header");
    assert_eq!(
        lying.to_string(),
        "snappy: header claims 1000000 bytes, more than a body of 4 bytes can hold"
    );
    for body in [&b""[..], b"\xff\xff\xff", b"\x0a\x00"] {
        let error = decode_remote_write(body, &RemoteWriteOptions::default()).expect_err("bad");
        assert!(error.to_string().starts_with("snappy: "), "{error}");
    }
}

#[test]
fn the_notation_splits_back_into_name_and_labels() {
    let labels = [("code", "5\"0\\0"), ("path", "/a\nb"), ("z", "")];
    let written = prometheus_notation("http_requests_total", labels.iter());
    let (name, read) = split_notation(&written);
    assert_eq!(name, "http_requests_total");
    let expected: Vec<(String, String)> = labels
        .iter()
        .map(|(label, value)| (label.to_string(), value.to_string()))
        .collect();
    assert_eq!(read, expected);
    assert_eq!(split_notation("cpu"), ("cpu", Vec::new()));
    let (broken_name, kept) = split_notation(r#"x{a="1",b="open"#);
    assert_eq!(broken_name, "x");
    assert_eq!(kept, vec![("a".to_string(), "1".to_string())]);
}

#[test]
fn bad_names_and_times_are_dropped_and_counted_as_json_refuses_them() {
    let long_host = "h".repeat(100_000);
    let batch = decode(&[
        series(&[("__name__", "up"), ("host", &long_host)], &[(T0, 1.0)]),
        series(&[("__name__", "up"), ("host", "r\u{0}1")], &[(T0, 1.0)]),
        series(
            &[("__name__", "up"), ("host", "h1"), ("app", "a\u{1b}")],
            &[(T0, 1.0)],
        ),
        series(
            &[("__name__", "up"), ("host", "h1")],
            &[
                (-1000, 1.0),
                (i64::MAX, 1.0),
                (253_402_300_800_000, 1.0),
                (T0, 2.0),
            ],
        ),
    ]);
    assert_eq!(batch.chunk.series, vec![key("", "h1", "up", false)]);
    assert_eq!(batch.chunk.points.len(), 1);
    assert_eq!(batch.chunk.points[0].ms, T0);
    assert_eq!(batch.skipped.series_invalid, 3);
    assert_eq!(batch.skipped.samples_invalid, 3);
    assert_eq!(batch.skipped.samples_bad_time, 3);
    assert_eq!(
        batch.skipped.example_invalid.as_deref(),
        Some("host: is 100000 bytes, more than the limit of 1024")
    );
    assert!(!batch.skipped.is_empty());
}
