//! The guard's evaluators, kept between passes: each observing release's is extended with the
//! steps that changed or arrived since it was read (`Evaluator::extend`), or built anew on the
//! whole window when that is refused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use vigil_analysis::{Evaluator, Settings, Tally};
use vigil_core::release::Release;

use super::locks::{lock, read};
use crate::assemble::{assemble_steps, window_start, Window};
use crate::error::GuardError;
use crate::index::DataIndex;

/// A release's evaluator between passes, and the index generation its data was read at.
#[derive(Debug)]
pub(super) struct Kept {
    pub(super) evaluator: Evaluator,
    /// How often the funnel recommended each signal at the evaluator's steps so far.
    pub(super) tally: Tally,
    pub(super) generation: u64,
    /// The lookback of the window it was built on (see `ReleaseWindow::lookback_with_data`).
    pub(super) lookback: i64,
}

/// Each observing release's evaluator, and how many judgements extended one or built one.
#[derive(Debug, Default)]
pub(super) struct Evaluators {
    pub(super) kept: Mutex<HashMap<String, Kept>>,
    /// Judgements made by extending a kept evaluator, and by building one on the whole window.
    extended: AtomicU64,
    built: AtomicU64,
}

impl Evaluators {
    /// Judgements so far that extended a kept evaluator, and that built one.
    pub(super) fn counts(&self) -> (u64, u64) {
        (
            self.extended.load(Ordering::Relaxed),
            self.built.load(Ordering::Relaxed),
        )
    }

    /// The steps of the kept evaluator of a release, if any.
    pub(super) fn points(&self, release_id: &str) -> Option<usize> {
        lock(&self.kept)
            .get(release_id)
            .map(|kept| kept.evaluator.points())
    }

    /// Takes a release's evaluator out while it is in use: each release is judged by one
    /// thread at a time.
    pub(super) fn take(&self, release_id: &str) -> Option<Kept> {
        lock(&self.kept).remove(release_id)
    }

    pub(super) fn keep(&self, release_id: &str, kept: Kept) {
        lock(&self.kept).insert(release_id.to_string(), kept);
    }

    /// Drops the evaluators of releases no longer observing.
    pub(super) fn retain(&self, observing: impl Fn(&str) -> bool) {
        lock(&self.kept).retain(|id, _| observing(id));
    }

    /// The release's evaluator brought to its window: the kept one extended with the steps
    /// that changed or arrived since it was last read, or, when that is refused, one built on
    /// the whole window. With the index generation its data was read at.
    pub(super) fn evaluator_for(
        &self,
        release: &Release,
        index: &RwLock<DataIndex>,
        window: &Window<'_>,
        settings: &Settings,
        kept: Option<Kept>,
    ) -> Result<(Evaluator, u64, Tally), GuardError> {
        if let Some(mut kept) = kept {
            // What changed and the steps from it, read under one lock: nothing lands between.
            let tail = {
                let index = read(index);
                let from = first_changed_step(release, window, &index, &kept);
                // The step judged again (alerts arrived) with nothing changed: as it was.
                let seen = kept.evaluator.points();
                if from >= seen
                    && seen > 0
                    && kept.evaluator.prepared().time_of(seen - 1) >= window.until
                {
                    let generation = kept.generation;
                    return Ok((kept.evaluator, generation, kept.tally));
                }
                if from >= kept.evaluator.horizon() {
                    Some((
                        assemble_steps(release, &index, window, from)?,
                        from,
                        index.generation(),
                    ))
                } else {
                    None
                }
            };
            if let Some((tail, from, generation)) = tail {
                match kept.evaluator.extend(&tail, from, settings) {
                    Ok(()) => {
                        self.extended.fetch_add(1, Ordering::Relaxed);
                        // Steps it counted whose data changed are counted again from the start.
                        let counted_changed =
                            kept.tally.next_step().is_some_and(|next| from < next);
                        let tally = if counted_changed {
                            Tally::default()
                        } else {
                            kept.tally
                        };
                        return Ok((kept.evaluator, generation, tally));
                    }
                    Err(reason) => {
                        tracing::debug!(release = %release.id, %reason, "guard rebuilds evaluator");
                    }
                }
            }
        }
        let (bundle, generation) = {
            let index = read(index);
            (
                assemble_steps(release, &index, window, 0)?,
                index.generation(),
            )
        };
        self.built.fetch_add(1, Ordering::Relaxed);
        Ok((
            Evaluator::new(&bundle, settings),
            generation,
            Tally::default(),
        ))
    }
}

/// The first step of the window a kept evaluator has to see again: the earliest step whose
/// data changed since it was read (a step `i` holds the data of `(t_i - step, t_i]`), or the
/// first step it has not seen.
fn first_changed_step(
    release: &Release,
    window: &Window<'_>,
    index: &DataIndex,
    kept: &Kept,
) -> usize {
    let seen = kept.evaluator.points();
    let earliest_change = release
        .spec
        .hosts
        .names()
        .iter()
        .chain(window.reference)
        .filter_map(|host| index.earliest_change(host, kept.generation))
        .min();
    let Some(earliest_ms) = earliest_change else {
        return seen;
    };
    let start_ms = window_start(release, window.baseline_seconds) * 1000;
    let step_ms = release.spec.step_seconds.max(1) * 1000;
    let since_start = (earliest_ms - start_ms).max(0);
    let step = usize::try_from((since_start + step_ms - 1) / step_ms).unwrap_or(usize::MAX);
    step.min(seen)
}
