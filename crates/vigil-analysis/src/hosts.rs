//! Per-host evidence at one step: a shift that holds, or spikes that keep coming back, after
//! the host's restart has settled.

/// Scores of one signal on one host, indexed by step, and where the host's judged samples start.
#[derive(Debug, Clone, Copy)]
pub struct HostScores<'t> {
    /// Signed standardised difference per step (`NaN` when missing).
    pub z: &'t [f64],
    /// Signed difference on the transformed scale per step.
    pub delta: &'t [f64],
    /// First step judged (deploy plus warm-up).
    pub judged_from: usize,
    /// Steps since the deploy at which a decaying transient is still expected.
    pub transient_until: usize,
    /// Whether samples after the deploy were skipped as warm-up.
    pub warmup_skipped: bool,
}

/// The z a shift must hold, and the z of one spike.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub shift_z: f64,
    pub spike_z: f64,
    /// Consecutive samples a shift must hold.
    pub persistence: usize,
    /// Separate spikes needed within `spike_window` steps.
    pub spikes: usize,
    pub spike_window: usize,
}

/// What a host shows at one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HostEvidence {
    /// The weakest harmful z over the persistence window (shift) or the median spike z.
    pub z: f64,
    /// Typical signed difference on the transformed scale over the same samples.
    pub delta: f64,
    /// First step of the samples behind it.
    pub since: usize,
    /// Last step of the samples behind it: the last spike counted, or the step judged.
    pub until: usize,
    pub intermittent: bool,
}

/// The shape of a run of harmful values, taken oldest first in one pass.
#[derive(Debug, Clone, Copy, PartialEq)]
struct RunShape {
    weakest: f64,
    strongest: f64,
    /// Every value at least the one before it.
    growing: bool,
    /// Every value below the one before it, and the last below 80 % of the first.
    fading: bool,
}

impl RunShape {
    fn of(oldest_first: impl Iterator<Item = f64>) -> RunShape {
        let mut weakest = f64::INFINITY;
        let mut strongest = f64::NEG_INFINITY;
        let mut growing = true;
        let mut falling = true;
        let mut first = None;
        let mut previous = None;
        for value in oldest_first {
            weakest = weakest.min(value);
            strongest = strongest.max(value);
            if let Some(earlier) = previous {
                growing &= value >= earlier;
                falling &= value < earlier;
            }
            first.get_or_insert(value);
            previous = Some(value);
        }
        let fading = match (first, previous) {
            (Some(first), Some(last)) => falling && last < 0.8 * first,
            _ => false,
        };
        RunShape {
            weakest,
            strongest,
            growing,
            fading,
        }
    }
}

/// How harmful a signed value is: positive when it moves the harmful way.
pub fn harmful(sign: f64, value: f64) -> f64 {
    if sign == 0.0 {
        value.abs()
    } else {
        sign * value
    }
}

/// The evidence on one host at step `now`, or `None`.
pub fn host_evidence(
    scores: HostScores<'_>,
    sign: f64,
    now: usize,
    thresholds: Thresholds,
) -> Option<HostEvidence> {
    if now < scores.judged_from {
        return None;
    }
    let persistence = thresholds.persistence.max(1);
    let present = |step: usize| scores.z[step].is_finite();
    // The last `persistence` present samples within a little more than that many steps.
    let lookback_start = now.saturating_sub(persistence + 1).max(scores.judged_from);
    let recent_newest_first = || {
        (lookback_start..=now)
            .rev()
            .filter(|&step| present(step))
            .take(persistence)
    };
    let (recent_count, oldest) =
        recent_newest_first().fold((0, now), |(count, _), step| (count + 1, step));
    if recent_count == persistence && present(now) {
        // The same samples, oldest first: every present one from the oldest on.
        let RunShape {
            weakest,
            strongest,
            growing,
            fading,
        } = RunShape::of(
            (oldest..=now)
                .filter(|&step| present(step))
                .map(|step| harmful(sign, scores.z[step])),
        );
        let same_side = sign != 0.0
            || recent_newest_first().all(|step| scores.z[step].signum() == scores.z[now].signum());
        // While a restart transient may still be settling, a shift must look like a new level
        // (its samples agree within a factor of two) or keep growing; a peak that is fading is
        // the restart, not the release.
        let settled = (weakest >= 0.5 * strongest && !fading) || growing;
        let decaying = now < scores.transient_until && !settled;
        if weakest >= thresholds.shift_z && same_side && !decaying {
            let mut deltas: Vec<f64> = recent_newest_first()
                .map(|step| scores.delta[step])
                .collect();
            let delta = crate::stats::median_in_place(&mut deltas);
            return Some(HostEvidence {
                z: weakest,
                delta,
                since: oldest,
                until: now,
                intermittent: false,
            });
        }
    }
    // Intermittent: large spikes that keep coming back. Spikes are counted as separate
    // excursions, each starting from a sample below the bar, so a restart peak that is already
    // there when judging starts, and that fades over several samples, counts for nothing.
    let first_candidate = if thresholds.spikes == 1 {
        scores.judged_from
    } else {
        scores.judged_from + 1
    };
    let window_start = now
        .saturating_sub(thresholds.spike_window.saturating_sub(1))
        .max(first_candidate);
    let is_spike = |step: usize| {
        scores.z[step].is_finite() && harmful(sign, scores.z[step]) >= thresholds.spike_z
    };
    let mut excursions: Vec<usize> = Vec::new();
    for step in window_start..=now {
        if !is_spike(step) {
            continue;
        }
        let previous = (scores.judged_from..step)
            .rev()
            .find(|&earlier| scores.z[earlier].is_finite());
        let starts_an_excursion = match previous {
            Some(previous) => !is_spike(previous),
            // At the first judged sample only a lone spike counts, and only when the warm-up
            // skipped nothing: after skipped samples, a peak still there is the restart's.
            None => thresholds.spikes == 1 && !scores.warmup_skipped,
        };
        if starts_an_excursion {
            excursions.push(step);
        }
    }
    if excursions.len() >= thresholds.spikes.max(1) {
        let mut zs: Vec<f64> = excursions
            .iter()
            .map(|&step| harmful(sign, scores.z[step]))
            .collect();
        let mut deltas: Vec<f64> = excursions.iter().map(|&step| scores.delta[step]).collect();
        return Some(HostEvidence {
            z: crate::stats::median_in_place(&mut zs),
            delta: crate::stats::median_in_place(&mut deltas),
            since: excursions[0],
            until: excursions[excursions.len() - 1],
            intermittent: true,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        shift_z: 4.0,
        spike_z: 8.0,
        persistence: 3,
        spikes: 2,
        spike_window: 10,
    };

    fn scores<'a>(z: &'a [f64], delta: &'a [f64]) -> HostScores<'a> {
        HostScores {
            z,
            delta,
            judged_from: 2,
            transient_until: 10,
            warmup_skipped: true,
        }
    }

    #[test]
    fn a_held_shift_is_evidence() {
        let z = [0.0, 0.0, 9.0, 9.5, 9.2, 9.1];
        let evidence = host_evidence(scores(&z, &z), 1.0, 5, T).unwrap();
        assert!(evidence.z >= 9.0 && !evidence.intermittent);
    }

    #[test]
    fn a_decaying_warm_up_tail_is_not() {
        let z = [0.0, 0.0, 30.0, 15.0, 7.0, 4.5];
        assert_eq!(host_evidence(scores(&z, &z), 1.0, 4, T), None);
        assert_eq!(host_evidence(scores(&z, &z), 1.0, 5, T), None);
    }

    #[test]
    fn a_restart_peak_fading_over_several_samples_is_not_intermittent() {
        let z = [0.0, 0.0, 40.0, 30.0, 20.0, 12.0, 9.0, 3.0, 1.0, 0.0];
        assert_eq!(host_evidence(scores(&z, &z), 1.0, 9, T), None);
    }

    #[test]
    fn samples_inside_the_warm_up_are_not_judged() {
        let z = [50.0, 50.0, 0.0, 0.0];
        assert_eq!(host_evidence(scores(&z, &z), 1.0, 3, T), None);
    }

    #[test]
    fn an_improvement_is_not_harmful() {
        let z = [0.0, 0.0, -9.0, -9.5, -9.2, -9.1];
        assert_eq!(host_evidence(scores(&z, &z), 1.0, 5, T), None);
    }

    #[test]
    fn recurring_spikes_are_intermittent_evidence() {
        let z = [0.0, 0.0, 0.0, 20.0, 0.0, 15.0, 0.0, 0.0, 18.0, 0.0];
        let evidence = host_evidence(scores(&z, &z), 1.0, 9, T).unwrap();
        assert!(evidence.intermittent);
        assert_eq!(evidence.since, 3);
    }
}
