//! The decoder's memory of label sets and series between requests.
//!
//! A sender repeats the same label sets in about the same order request after request, so the
//! cache keeps everything in insertion order in flat arrays: the raw label bytes one after the
//! other, the series' shared keys, and an open-addressing table of small slots pointing into
//! them. Each label set also remembers which one came after it last time: when a
//! request repeats the order, a label set is found by comparing its bytes with the predicted
//! one, without hashing and without a random probe into the table, and the arrays are read front
//! to back, which the processor's prefetcher follows.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::ops::Range;
use std::sync::Arc;

use foldhash::fast::RandomState as SeededHash;
use vigil_core::samples::{HostLabels, MetricChunk, SeriesKey};

/// How a label set resolves.
#[derive(Debug, Clone)]
pub(super) enum Resolution {
    /// A series, by its id in the cache.
    Series(u32),
    /// No host label: skipped; the labels in Prometheus' notation, for the sender.
    WithoutHost(Arc<str>),
    /// No `__name__`: skipped.
    WithoutName,
    /// A name breaking the naming rules: skipped; what is wrong, for the sender.
    Invalid(Arc<str>),
}

#[derive(Debug)]
struct LabelSet {
    bytes: Range<usize>,
    hash: u64,
    resolution: Resolution,
    /// The label set that followed this one last time, or [`NO_LABEL_SET`].
    next: u32,
}

/// No label set: the start of a request, or nothing learned yet.
pub(super) const NO_LABEL_SET: u32 = u32::MAX;

#[derive(Debug)]
struct CachedSeries {
    /// Shared with every chunk that has the series.
    key: Arc<SeriesKey>,
    /// Its host's labels, as the first label set of the series gave them.
    host_labels: Arc<HostLabels>,
    /// The request whose chunk last got this series, and its index there.
    request: u64,
    chunk_index: u32,
}

/// What [`SeriesCache::find`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Found {
    Known(u32),
    /// Not known: its hash, for [`SeriesCache::insert`].
    New(u64),
}

#[derive(Debug, Default)]
pub(super) struct SeriesCache {
    /// Seeded per cache: senders choose the label bytes, and std's SipHash costs more than the
    /// rest of a cache hit on an agent's 60 to 100 bytes of labels.
    hasher: SeededHash,
    /// Open addressing with linear probing: 0 is empty, otherwise the hash's high 32 bits
    /// above the label set's index plus one. Never more than half full.
    slots: Vec<u64>,
    label_sets: Vec<LabelSet>,
    label_bytes: Vec<u8>,
    series: Vec<CachedSeries>,
    /// Bytes of the series' app, host and metric names.
    series_text_bytes: usize,
    /// Series by their key, so that label sets that name the same series share it.
    by_key: HashMap<Arc<SeriesKey>, u32, SeededHash>,
}

const EMPTY: u64 = 0;
const SMALLEST_TABLE: usize = 1024;

impl SeriesCache {
    /// Label sets remembered.
    pub fn len(&self) -> usize {
        self.label_sets.len()
    }

    /// Bytes of label sets and series text remembered.
    pub fn text_bytes(&self) -> usize {
        self.label_bytes.len() + self.series_text_bytes
    }

    pub fn clear(&mut self) {
        self.slots.clear();
        self.label_sets.clear();
        self.label_bytes.clear();
        self.series.clear();
        self.series_text_bytes = 0;
        self.by_key.clear();
    }

    /// The label set with these bytes, trying first the one that followed `previous` last
    /// time; `previous` then learns what followed it this time.
    pub fn find(&mut self, previous: u32, raw: &[u8]) -> Found {
        let predicted = self
            .label_sets
            .get(previous as usize)
            .map_or(NO_LABEL_SET, |set| set.next);
        if let Some(set) = self.label_sets.get(predicted as usize) {
            if self.label_bytes[set.bytes.clone()] == *raw {
                return Found::Known(predicted);
            }
        }
        let hash = self.hasher.hash_one(raw);
        let found = self.probe(raw, hash);
        if let (Some(index), Some(set)) = (found, self.label_sets.get_mut(previous as usize)) {
            set.next = index;
        }
        match found {
            Some(index) => Found::Known(index),
            None => Found::New(hash),
        }
    }

    fn probe(&self, raw: &[u8], hash: u64) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let tag = hash >> 32;
        let mut slot = hash as usize & mask;
        loop {
            let value = self.slots[slot];
            if value == EMPTY {
                return None;
            }
            if value >> 32 == tag {
                let index = value as u32 - 1;
                let set = &self.label_sets[index as usize];
                if self.label_bytes[set.bytes.clone()] == *raw {
                    return Some(index);
                }
            }
            slot = (slot + 1) & mask;
        }
    }

    pub fn resolution(&self, index: u32) -> &Resolution {
        &self.label_sets[index as usize].resolution
    }

    /// Remembers a label set that [`SeriesCache::find`] did not know, as following `previous`.
    pub fn insert(&mut self, previous: u32, raw: &[u8], hash: u64, resolution: Resolution) -> u32 {
        if (self.label_sets.len() + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let start = self.label_bytes.len();
        self.label_bytes.extend_from_slice(raw);
        let index = self.label_sets.len();
        self.label_sets.push(LabelSet {
            bytes: start..self.label_bytes.len(),
            hash,
            resolution,
            next: NO_LABEL_SET,
        });
        self.place(hash, index);
        // Indexes stay below u32::MAX: the decoder forgets everything long before.
        let index = index as u32;
        if let Some(set) = self.label_sets.get_mut(previous as usize) {
            set.next = index;
        }
        index
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(SMALLEST_TABLE);
        self.slots = vec![EMPTY; size];
        for index in 0..self.label_sets.len() {
            self.place(self.label_sets[index].hash, index);
        }
    }

    fn place(&mut self, hash: u64, index: usize) {
        let mask = self.slots.len() - 1;
        let mut slot = hash as usize & mask;
        while self.slots[slot] != EMPTY {
            slot = (slot + 1) & mask;
        }
        self.slots[slot] = ((hash >> 32) << 32) | (index as u64 + 1);
    }

    /// The id of a series, shared by every label set that names it.
    pub fn intern(&mut self, key: SeriesKey, host_labels: HostLabels) -> u32 {
        if let Some(&id) = self.by_key.get(&key) {
            return id;
        }
        let id = self.series.len() as u32;
        self.series_text_bytes += key.app.len() + key.host.len() + key.metric.len();
        let key = Arc::new(key);
        self.series_text_bytes += host_labels
            .labels
            .iter()
            .map(|(name, value)| name.len() + value.len())
            .sum::<usize>();
        self.series.push(CachedSeries {
            key: Arc::clone(&key),
            host_labels: Arc::new(host_labels),
            request: 0,
            chunk_index: 0,
        });
        self.by_key.insert(key, id);
        id
    }

    /// The index of a series in the chunk of request `request`, added on its first sample
    /// with its host's labels to `host_labels`.
    pub fn chunk_index(
        &mut self,
        id: u32,
        request: u64,
        chunk: &mut MetricChunk,
        host_labels: &mut Vec<Arc<HostLabels>>,
    ) -> u32 {
        let cached = &mut self.series[id as usize];
        if cached.request != request {
            cached.request = request;
            cached.chunk_index = chunk.series.len() as u32;
            chunk.series.push(Arc::clone(&cached.key));
            if !cached.host_labels.labels.is_empty() {
                host_labels.push(Arc::clone(&cached.host_labels));
            }
        }
        cached.chunk_index
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn nearby_label_bytes_hash_apart() {
        let hasher = SeededHash::default();
        let mut keys: HashSet<Vec<u8>> = HashSet::new();
        for length in 0..40usize {
            keys.insert(vec![0u8; length]);
            for flipped in 0..length {
                let mut key = vec![0u8; length];
                key[flipped] = 1;
                keys.insert(key);
            }
        }
        let hashes: HashSet<u64> = keys
            .iter()
            .map(|key| hasher.hash_one(key.as_slice()))
            .collect();
        assert_eq!(hashes.len(), keys.len());
    }

    #[test]
    fn names_hash_apart_and_maps_find_them() {
        let hasher = SeededHash::default();
        let names: Vec<String> = (0..10_000).map(|n| format!("host-{n}")).collect();
        let hashes: HashSet<u64> = names.iter().map(|name| hasher.hash_one(name)).collect();
        assert_eq!(hashes.len(), names.len());
        let mut map: HashMap<String, usize, SeededHash> = HashMap::default();
        for (position, name) in names.iter().enumerate() {
            map.insert(name.clone(), position);
        }
        assert_eq!(map.get("host-4321"), Some(&4321));
        assert_eq!(map.get("host-10000"), None);
    }
}
