//! The guard's locks: one poisoned by a panic elsewhere is used as it is, everywhere in the
//! guard, so that one failed pass does not stop the others.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard};

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn read<T>(rw: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    rw.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}
