//! Small robust statistics over `f64` slices where `NaN` means "missing".

/// Median of the finite values, or `NaN` when there are none. Reorders a scratch copy only.
pub fn median(values: &[f64]) -> f64 {
    median_with(values, &mut Vec::new())
}

/// [`median`], with the finite values copied into `scratch` (reused across calls).
pub fn median_with(values: &[f64], scratch: &mut Vec<f64>) -> f64 {
    scratch.clear();
    scratch.extend(values.iter().copied().filter(|value| value.is_finite()));
    median_in_place(scratch)
}

/// Median of `values` (all finite), reordering them; `NaN` when empty.
pub fn median_in_place(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let middle = values.len() / 2;
    let (_, upper, _) = values.select_nth_unstable_by(middle, f64::total_cmp);
    let upper = *upper;
    if values.len() % 2 == 1 {
        return upper;
    }
    let lower = values[..middle]
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    (lower + upper) / 2.0
}

/// Median of `sorted` (all finite, ascending by `f64::total_cmp`); `NaN` when empty. The same
/// value as [`median_in_place`] gives for the same values.
pub fn median_of_sorted(sorted: &[f64]) -> f64 {
    middle_of_sorted(sorted.len(), |index| sorted[index])
}

/// Median of `sorted` (all finite, ascending) without the element at `left_out`: the
/// leave-one-out median, read off the sorted order of all elements.
pub fn median_of_sorted_without(sorted: &[f64], left_out: usize) -> f64 {
    let Some(remaining) = sorted.len().checked_sub(1) else {
        return f64::NAN;
    };
    middle_of_sorted(remaining, |index| {
        if index < left_out {
            sorted[index]
        } else {
            sorted[index + 1]
        }
    })
}

/// Median of `len` ascending values, the `index`-th read by `nth`.
fn middle_of_sorted(len: usize, nth: impl Fn(usize) -> f64) -> f64 {
    if len == 0 {
        return f64::NAN;
    }
    let middle = len / 2;
    let upper = nth(middle);
    if len % 2 == 1 {
        return upper;
    }
    (nth(middle - 1) + upper) / 2.0
}

/// Median absolute deviation around `center`, scaled to estimate a normal standard deviation.
pub fn mad_sigma(values: &[f64], center: f64) -> f64 {
    mad_sigma_with(values, center, &mut Vec::new())
}

/// [`mad_sigma`], with the deviations written into `scratch` (reused across calls).
pub fn mad_sigma_with(values: &[f64], center: f64, scratch: &mut Vec<f64>) -> f64 {
    scratch.clear();
    scratch.extend(
        values
            .iter()
            .filter(|value| value.is_finite())
            .map(|value| (value - center).abs()),
    );
    1.4826 * median_in_place(scratch)
}

/// The `q` quantile (0..=1) of the finite values by linear interpolation; `NaN` when none.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut finite: Vec<f64> = values
        .iter()
        .copied()
        .filter(|value| value.is_finite())
        .collect();
    if finite.is_empty() {
        return f64::NAN;
    }
    finite.sort_by(f64::total_cmp);
    let position = q.clamp(0.0, 1.0) * (finite.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = position.ceil() as usize;
    let weight = position - below as f64;
    finite[below] * (1.0 - weight) + finite[above] * weight
}

/// Natural log of the upper tail P(X >= observed) of a Poisson variable with mean `expected`,
/// by the Chernoff bound (tight enough to rank evidence, never optimistic).
pub fn poisson_upper_tail_ln(observed: f64, expected: f64) -> f64 {
    if observed <= expected || expected <= 0.0 {
        return if expected <= 0.0 && observed > 0.0 {
            f64::NEG_INFINITY
        } else {
            0.0
        };
    }
    -(observed * (observed / expected).ln() - observed + expected)
}

/// The smallest positive gap between distinct finite values: the resolution of a quantised
/// series (counts per step divided by the step, say). `None` when every value is the same.
pub fn resolution(values: &[f64]) -> Option<f64> {
    let mut finite: Vec<f64> = values
        .iter()
        .copied()
        .filter(|value| value.is_finite())
        .collect();
    finite.sort_by(f64::total_cmp);
    finite.dedup();
    finite
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .filter(|gap| *gap > 0.0)
        .reduce(f64::min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_skips_missing_values() {
        assert_eq!(median(&[3.0, f64::NAN, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[f64::NAN]).is_nan());
    }

    #[test]
    fn medians_read_off_sorted_values_match_median() {
        let odd = [5.0, -1.0, 3.5, 3.5, 0.25, 8.0, -2.0];
        let even = [4.0, 1.0, 2.0, 3.0];
        for values in [&odd[..], &even[..], &[7.0]] {
            let mut sorted = values.to_vec();
            sorted.sort_by(f64::total_cmp);
            assert_eq!(
                median_of_sorted(&sorted).to_bits(),
                median(values).to_bits()
            );
            for left_out in 0..sorted.len() {
                let mut others = sorted.clone();
                others.remove(left_out);
                let without = median_of_sorted_without(&sorted, left_out);
                assert_eq!(without.to_bits(), median(&others).to_bits());
            }
        }
        assert!(median_of_sorted(&[]).is_nan());
    }

    #[test]
    fn mad_sigma_matches_normal_scale() {
        let values = [-1.0, 0.0, 1.0];
        assert!((mad_sigma(&values, 0.0) - 1.4826).abs() < 1e-9);
    }

    #[test]
    fn quantile_interpolates() {
        assert_eq!(quantile(&[0.0, 10.0], 0.5), 5.0);
        assert_eq!(quantile(&[1.0, 2.0, 3.0], 1.0), 3.0);
    }

    #[test]
    fn poisson_tail_is_small_for_large_surplus() {
        assert!(poisson_upper_tail_ln(50.0, 5.0) < -40.0);
        assert_eq!(poisson_upper_tail_ln(3.0, 5.0), 0.0);
    }

    #[test]
    fn resolution_finds_the_quantum() {
        let values = [0.0, 1.0 / 60.0, 3.0 / 60.0, 1.0 / 60.0];
        assert!((resolution(&values).unwrap() - 1.0 / 60.0).abs() < 1e-12);
        assert_eq!(resolution(&[2.0, 2.0]), None);
    }
}
