//! The remote-write decoders kept between ingestion requests, and how ingested data is read.

use std::sync::Mutex;

use vigil_ingest::json::JsonOptions;
use vigil_ingest::remote_write::{RemoteWriteDecoder, RemoteWriteOptions};

/// How ingested data is read.
#[derive(Debug, Clone, Default)]
pub struct IngestOptions {
    pub remote_write: RemoteWriteOptions,
    pub json: JsonOptions,
}

/// Decoders kept between requests (they remember series they have seen).
#[derive(Debug)]
pub struct IngestState {
    pub(crate) options: IngestOptions,
    decoders: Mutex<Vec<RemoteWriteDecoder>>,
}

impl IngestState {
    pub fn new(options: IngestOptions) -> IngestState {
        IngestState {
            options,
            decoders: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn take_decoder(&self) -> RemoteWriteDecoder {
        self.decoders
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop()
            .unwrap_or_else(|| RemoteWriteDecoder::new(self.options.remote_write.clone()))
    }

    pub(crate) fn give_back(&self, decoder: RemoteWriteDecoder) {
        let mut decoders = self
            .decoders
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if decoders.len() < 16 {
            decoders.push(decoder);
        }
    }
}
