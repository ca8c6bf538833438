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
