//! A fast seeded hash for the maps that ingestion fills from what senders name: raw label
//! bytes in the remote-write decoder's series cache, host and metric names in the guard's data
//! index.
//!
//! std's SipHash costs more than the rest of a cache hit on the 60 to 100 bytes of an agent's
//! label set. This hash folds 16 bytes at a time through a 128-bit multiply, with two seeds
//! drawn from std's random state per map, so a sender cannot aim collisions at it without
//! knowing the seeds.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

#[derive(Debug, Clone)]
pub struct FastHashBuilder {
    seeds: [u64; 2],
}

impl Default for FastHashBuilder {
    fn default() -> Self {
        let random = RandomState::new();
        let first = random.hash_one(0x9e37_79b9_7f4a_7c15_u64);
        let second = random.hash_one(first);
        FastHashBuilder {
            seeds: [first, second | 1],
        }
    }
}

impl BuildHasher for FastHashBuilder {
    type Hasher = FastHasher;

    fn build_hasher(&self) -> FastHasher {
        FastHasher {
            state: self.seeds[0],
            seeds: self.seeds,
        }
    }
}

#[derive(Debug)]
pub struct FastHasher {
    state: u64,
    seeds: [u64; 2],
}

fn folded_multiply(left: u64, right: u64) -> u64 {
    let full = u128::from(left) * u128::from(right);
    (full as u64) ^ ((full >> 64) as u64)
}

/// The first 8 bytes of `bytes`, which has at least 8.
fn first_eight(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(word)
}

/// The first 4 bytes of `bytes`, which has at least 4.
fn first_four(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[..4]);
    u64::from(u32::from_le_bytes(word))
}

/// The 1 to 15 bytes after the last whole block as two words, read in fixed-size pieces (the
/// first and last 8 or 4 bytes, which may overlap) rather than copied byte by byte; the length,
/// mixed in afterwards, tells apart the inputs that overlapping reads alone would not.
fn tail_words(rest: &[u8]) -> (u64, u64) {
    let length = rest.len();
    if length >= 8 {
        return (first_eight(rest), first_eight(&rest[length - 8..]));
    }
    if length >= 4 {
        return (first_four(rest), first_four(&rest[length - 4..]));
    }
    let spread = u64::from(rest[0]) | u64::from(rest[length / 2]) << 8;
    (spread | u64::from(rest[length - 1]) << 16, 0)
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut state = self.state;
        let mut blocks = bytes.chunks_exact(16);
        for block in &mut blocks {
            let low = first_eight(block);
            let high = first_eight(&block[8..]);
            state = folded_multiply(low ^ state ^ self.seeds[0], high ^ self.seeds[1]);
        }
        let rest = blocks.remainder();
        if !rest.is_empty() {
            let (low, high) = tail_words(rest);
            state = folded_multiply(low ^ state ^ self.seeds[0], high ^ self.seeds[1]);
        }
        self.state = state.rotate_left(23) ^ bytes.len() as u64;
    }

    fn write_u8(&mut self, value: u8) {
        self.write_u64(u64::from(value));
    }

    fn write_u32(&mut self, value: u32) {
        self.write_u64(u64::from(value));
    }

    fn write_u64(&mut self, value: u64) {
        self.state = folded_multiply(self.state ^ value, self.seeds[1]);
    }

    fn write_usize(&mut self, value: usize) {
        self.write_u64(value as u64);
    }

    fn finish(&self) -> u64 {
        folded_multiply(self.state, self.seeds[1] ^ self.seeds[0].rotate_left(32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn nearby_keys_hash_apart() {
        let builder = FastHashBuilder::default();
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
            .map(|key| builder.hash_one(key.as_slice()))
            .collect();
        assert_eq!(hashes.len(), keys.len());
    }

    #[test]
    fn names_hash_apart_and_maps_find_them() {
        let builder = FastHashBuilder::default();
        let names: Vec<String> = (0..10_000).map(|n| format!("host-{n}")).collect();
        let hashes: HashSet<u64> = names.iter().map(|name| builder.hash_one(name)).collect();
        assert_eq!(hashes.len(), names.len());
        let mut map: std::collections::HashMap<String, usize, FastHashBuilder> =
            std::collections::HashMap::default();
        for (position, name) in names.iter().enumerate() {
            map.insert(name.clone(), position);
        }
        assert_eq!(map.get("host-4321"), Some(&4321));
        assert_eq!(map.get("host-10000"), None);
    }
}
