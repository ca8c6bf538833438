//! Bundles the analysis tests read: the examples kept in the repository, or a corpus folder.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use vigil_core::Bundle;

pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Every bundle of `dir/releases`, in file name order.
pub fn bundles_in(dir: &Path) -> Vec<Bundle> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir.join("releases"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| Bundle::read(path).unwrap())
        .collect()
}

/// A deterministic noise source, roughly normal with mean 0 and sd 1 (a sum of uniforms; no
/// dependency needed for a few thousand numbers).
pub struct Noise(pub u64);

impl Noise {
    pub fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut sum = 0.0;
        for shift in [0, 16, 32, 48] {
            sum += ((self.0 >> shift) & 0xffff) as f64 / 65535.0;
        }
        (sum - 2.0) * 1.7
    }
}
