//! The remote-write decoder on arbitrary bytes: as a snappy body, as an uncompressed protobuf,
//! and as a protobuf behind valid snappy. It must never panic, and one decoder must decode the
//! same bytes the same way twice (the second time from its cache).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_ingest::remote_write::{
    compress_body, RemoteWriteBatch, RemoteWriteDecoder, RemoteWriteError, RemoteWriteOptions,
};

fn options() -> RemoteWriteOptions {
    RemoteWriteOptions {
        max_decompressed_bytes: 1 << 20,
        max_samples: 10_000,
        ..RemoteWriteOptions::default()
    }
}

/// Results compared bit for bit (values may be NaN).
fn fingerprint(result: &Result<RemoteWriteBatch, RemoteWriteError>) -> Result<Vec<u8>, String> {
    match result {
        Ok(batch) => Ok(batch.chunk.encode()),
        Err(error) => Err(error.to_string()),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let mut decoder = RemoteWriteDecoder::new(options());
    match mode % 3 {
        0 => {
            let first = decoder.decode(input);
            let second = decoder.decode(input);
            assert_eq!(fingerprint(&first), fingerprint(&second));
        }
        1 => {
            let first = decoder.decode_protobuf(input);
            let second = decoder.decode_protobuf(input);
            assert_eq!(fingerprint(&first), fingerprint(&second));
        }
        _ => {
            let Ok(body) = compress_body(input) else {
                return;
            };
            let through_snappy = decoder.decode(&body);
            let direct = RemoteWriteDecoder::new(options()).decode_protobuf(input);
            assert_eq!(fingerprint(&through_snappy), fingerprint(&direct));
        }
    }
});
