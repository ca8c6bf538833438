//! Small robust statistics over `f64` slices where `NaN` means "missing".

/// Median of the finite values, or `NaN` when there are none. Reorders a scratch copy only.
pub fn median(values: &[f64]) -> f64 {
    median_with(values, &mut Vec::new())
}

/// [`median`], with the finite values' order keys written into `keys` (reused across calls).
pub fn median_with(values: &[f64], keys: &mut Vec<i64>) -> f64 {
    keys.clear();
    keys.extend(
        values
            .iter()
            .filter(|value| value.is_finite())
            .map(|&value| total_order_key(value)),
    );
    median_of_keys(keys)
}

/// Median of the values whose [`total_order_key`]s are `keys`, reordering them; `NaN` when
/// empty. The value [`median_in_place`] gives for the values: integers compare faster.
fn median_of_keys(keys: &mut [i64]) -> f64 {
    let count = keys.len();
    if count == 0 {
        return f64::NAN;
    }
    let (lower_half, upper, _) = keys.select_nth_unstable(count / 2);
    let upper_value = from_total_order_key(*upper);
    if count % 2 == 1 {
        return upper_value;
    }
    let lower_value = lower_half
        .iter()
        .copied()
        .max()
        .map_or(f64::NEG_INFINITY, from_total_order_key);
    (lower_value + upper_value) / 2.0
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

/// The median of sorted values without any one of them. Which of equal values is left out does
/// not change what remains, and only the side of the middle it is taken from changes the
/// median: so it is one of three values, and one comparison picks it.
#[derive(Debug, Clone, Copy)]
pub struct LeaveOneOutMedian {
    /// The value at the middle of those that remain once one is left out.
    pivot: f64,
    /// The median when the value left out is below the pivot, equal to it, above it.
    without_lower: f64,
    without_pivot: f64,
    without_upper: f64,
}

impl LeaveOneOutMedian {
    /// For `sorted` (all finite, ascending by `f64::total_cmp`); every median `NaN` when fewer
    /// than two values remain.
    pub fn of_sorted(sorted: &[f64]) -> LeaveOneOutMedian {
        let Some(remaining) = sorted.len().checked_sub(1) else {
            return LeaveOneOutMedian {
                pivot: f64::NAN,
                without_lower: f64::NAN,
                without_pivot: f64::NAN,
                without_upper: f64::NAN,
            };
        };
        let middle = remaining / 2;
        LeaveOneOutMedian {
            pivot: sorted[middle],
            without_lower: median_of_sorted_without(sorted, 0),
            without_pivot: median_of_sorted_without(sorted, middle),
            without_upper: median_of_sorted_without(sorted, remaining),
        }
    }

    /// The median without one value equal to `left_out`, which must be among the values.
    pub fn without(&self, left_out: f64) -> f64 {
        match left_out.total_cmp(&self.pivot) {
            std::cmp::Ordering::Less => self.without_lower,
            std::cmp::Ordering::Equal => self.without_pivot,
            std::cmp::Ordering::Greater => self.without_upper,
        }
    }
}

/// Sorts finite `values` ascending in the order of `f64::total_cmp`, through integer keys that
/// sort the same way and compare faster; `keys` is scratch, reused across calls.
pub fn sort_total(values: &mut [f64], keys: &mut Vec<i64>) {
    keys.clear();
    keys.extend(values.iter().map(|&value| total_order_key(value)));
    keys.sort_unstable();
    for (value, &key) in values.iter_mut().zip(keys.iter()) {
        *value = from_total_order_key(key);
    }
}

/// An integer that orders like `value` under `f64::total_cmp`, by the same transformation:
/// the magnitude bits of a negative number are flipped, so that larger magnitudes sort lower.
fn total_order_key(value: f64) -> i64 {
    let bits = value.to_bits() as i64;
    bits ^ ((((bits >> 63) as u64) >> 1) as i64)
}

/// The value of a [`total_order_key`]: the transformation is its own inverse, since it keeps
/// the sign bit that selects it.
fn from_total_order_key(key: i64) -> f64 {
    f64::from_bits((key ^ ((((key >> 63) as u64) >> 1) as i64)) as u64)
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

/// [`mad_sigma`] of values sorted ascending (all finite): their deviations from `center` grow
/// outwards on either side of it, so the median deviation is found by merging the two sides
/// from the center out, halfway, with no selection.
pub fn mad_sigma_of_sorted(sorted: &[f64], center: f64) -> f64 {
    let count = sorted.len();
    if count == 0 {
        return f64::NAN;
    }
    let deviation = |index: usize| (sorted[index] - center).abs();
    // The next deviation on each side: at `below - 1` (values under the center), at `above`.
    let split = sorted.partition_point(|value| *value < center);
    let mut below = split;
    let mut above = split;
    let mut previous = f64::NAN;
    let mut current = f64::NAN;
    for _ in 0..=count / 2 {
        previous = current;
        let take_below = below > 0 && (above == count || deviation(below - 1) <= deviation(above));
        if take_below {
            below -= 1;
            current = deviation(below);
        } else {
            current = deviation(above);
            above += 1;
        }
    }
    let median = if count % 2 == 1 {
        current
    } else {
        (previous + current) / 2.0
    };
    1.4826 * median
}

/// [`mad_sigma`], with the deviations' order keys written into `keys` (reused across calls).
pub fn mad_sigma_with(values: &[f64], center: f64, keys: &mut Vec<i64>) -> f64 {
    keys.clear();
    keys.extend(
        values
            .iter()
            .filter(|value| value.is_finite())
            .map(|value| total_order_key((value - center).abs())),
    );
    1.4826 * median_of_keys(keys)
}

/// The `q` quantile (0..=1) of the finite values by linear interpolation; `NaN` when none.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut keys: Vec<i64> = values
        .iter()
        .filter(|value| value.is_finite())
        .map(|&value| total_order_key(value))
        .collect();
    if keys.is_empty() {
        return f64::NAN;
    }
    let (below, above, weight) = quantile_position(keys.len(), q);
    // The two order statistics around the position, selected rather than sorted: the value
    // just above the one at `below` is the least of those after it.
    let (_, at_below, after) = keys.select_nth_unstable(below);
    let lower = from_total_order_key(*at_below);
    let upper = if above == below {
        lower
    } else {
        after
            .iter()
            .copied()
            .min()
            .map_or(f64::NAN, from_total_order_key)
    };
    lower * (1.0 - weight) + upper * weight
}

/// The `q` quantile (0..=1) of values already sorted ascending, all finite, by the same linear
/// interpolation as [`quantile`]; `NaN` when there are none. For several quantiles of one set:
/// sort once, then read each.
pub fn quantile_of_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let (below, above, weight) = quantile_position(sorted.len(), q);
    sorted[below] * (1.0 - weight) + sorted[above] * weight
}

/// Where the `q` quantile of `count` ordered values lies: the order statistics below and above
/// it, and the weight of the one above.
fn quantile_position(count: usize, q: f64) -> (usize, usize, f64) {
    let position = q.clamp(0.0, 1.0) * (count - 1) as f64;
    let below = position.floor() as usize;
    (below, position.ceil() as usize, position - below as f64)
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
    sort_total(&mut finite, &mut Vec::new());
    finite.dedup();
    finite
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .filter(|gap| *gap > 0.0)
        .reduce(f64::min)
}

/// Whether two neighbours in `values` (all finite, in the order given) differ, by `gap` at
/// most: then the [`resolution`] of the values is at most `gap` too (two distinct values
/// enclose a gap between sorted neighbours no wider than theirs). A check without sorting:
/// `false` says only that no neighbours in this order are that close.
pub fn neighbours_within(values: &[f64], gap: f64) -> bool {
    values.windows(2).any(|pair| {
        let distance = (pair[1] - pair[0]).abs();
        distance > 0.0 && distance <= gap
    })
}

/// Mean of the finite values; `NaN` when none.
pub fn mean(values: &[f64]) -> f64 {
    let (sum, count) = values
        .iter()
        .filter(|value| value.is_finite())
        .fold((0.0, 0usize), |(sum, count), value| {
            (sum + value, count + 1)
        });
    if count == 0 {
        f64::NAN
    } else {
        sum / count as f64
    }
}

/// The upper tail of a statistic, fitted over its top tenth as exponential (peaks over a
/// threshold): what a bar exceeded by a given small share of the values would be, beyond the
/// largest values seen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tail {
    /// The 90th percentile.
    pub threshold: f64,
    /// Mean excess of the values above it.
    pub mean_excess: f64,
}

/// Share of the values above [`Tail::threshold`].
const TAIL_SHARE: f64 = 0.1;

impl Tail {
    /// `None` with fewer than 20 finite values.
    pub fn of(values: &[f64]) -> Option<Tail> {
        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if finite.len() < 20 {
            return None;
        }
        let threshold = quantile(&finite, 1.0 - TAIL_SHARE);
        let excess = mean(
            &finite
                .iter()
                .filter(|value| **value > threshold)
                .map(|value| value - threshold)
                .collect::<Vec<_>>(),
        );
        Some(Tail {
            threshold,
            mean_excess: if excess.is_finite() { excess } else { 0.0 },
        })
    }

    /// The value exceeded by a share `share` of the values.
    pub fn bar_for(&self, share: f64) -> f64 {
        if share >= TAIL_SHARE || share <= 0.0 {
            return self.threshold;
        }
        self.threshold + self.mean_excess * (TAIL_SHARE / share).ln()
    }
}

/// Natural log of the upper tail P(Z >= z) of a standard normal variable: by the complementary
/// error function's rational approximation (Abramowitz and Stegun 7.1.26) up to 3, by the
/// asymptotic series of Mills' ratio beyond, where the former's relative error grows.
pub fn normal_tail_ln(z: f64) -> f64 {
    if z < 0.0 {
        return (1.0 - normal_tail_ln(-z).exp()).max(f64::MIN_POSITIVE).ln();
    }
    if z < 3.0 {
        let x = z / std::f64::consts::SQRT_2;
        let t = 1.0 / (1.0 + 0.327_591_1 * x);
        let polynomial = t
            * (0.254_829_592
                + t * (-0.284_496_736
                    + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
        return (0.5 * polynomial).ln() - x * x;
    }
    let inverse_square = 1.0 / (z * z);
    -0.5 * z * z - z.ln() - 0.5 * (2.0 * std::f64::consts::PI).ln()
        + (1.0 - inverse_square + 3.0 * inverse_square * inverse_square).ln()
}

/// The bar a standard normal statistic must clear so that its upper tail is `share` of the tail
/// above `bar` (`share` below 1 raises the bar; at 1 or above it stays).
pub fn raised_bar(bar: f64, share: f64) -> f64 {
    if !bar.is_finite() || share.is_nan() || share >= 1.0 || share <= 0.0 {
        return bar;
    }
    let target = normal_tail_ln(bar) + share.ln();
    let (mut low, mut high) = (bar, bar + 64.0);
    for _ in 0..80 {
        let middle = 0.5 * (low + high);
        if normal_tail_ln(middle) > target {
            low = middle;
        } else {
            high = middle;
        }
    }
    high
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quantile_of_sorted_values_is_the_quantile_of_the_values() {
        let values = [7.5, -2.0, 3.25, 0.0, 11.0, 3.25, 42.0, -0.5];
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        for q in [0.0, 0.1, 0.25, 0.5, 0.6, 0.75, 0.9, 1.0] {
            assert_eq!(
                quantile_of_sorted(&sorted, q),
                quantile(&values, q),
                "q = {q}"
            );
        }
        assert!(quantile_of_sorted(&[], 0.5).is_nan());
    }

    #[test]
    fn normal_tails_match_known_values_and_raised_bars_divide_them() {
        for (z, tail) in [
            (0.0, 0.5),
            (1.0, 0.158_655),
            (3.0, 0.001_349_9),
            (4.0, 3.167_1e-5),
            (6.0, 9.866e-10),
        ] {
            let relative = (normal_tail_ln(z).exp() - tail).abs() / tail;
            assert!(
                relative < 0.02,
                "z {z}: {} vs {tail}",
                normal_tail_ln(z).exp()
            );
        }
        let raised = raised_bar(4.0, 1.0 / 25.0);
        let ratio = (normal_tail_ln(4.0) - normal_tail_ln(raised)).exp();
        assert!((ratio - 25.0).abs() < 0.5, "{raised} {ratio}");
        assert_eq!(raised_bar(4.0, 1.0), 4.0);
        assert_eq!(raised_bar(4.0, 3.0), 4.0);
    }

    #[test]
    fn median_skips_missing_values() {
        assert_eq!(median(&[3.0, f64::NAN, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[f64::NAN]).is_nan());
    }

    #[test]
    fn medians_read_off_sorted_values_match_median() {
        let odd = [5.0, -1.0, 3.5, 3.5, 0.25, 8.0, -2.0];
        let even = [4.0, 1.0, 2.0, 3.0, 2.0, 2.0];
        for values in [&odd[..], &even[..], &[7.0], &[7.0, 7.5], &[1.0, 1.0, 1.0]] {
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
                let leave_one_out = LeaveOneOutMedian::of_sorted(&sorted);
                let without_value = leave_one_out.without(sorted[left_out]);
                assert_eq!(without_value.to_bits(), median(&others).to_bits());
            }
        }
        assert!(median_of_sorted(&[]).is_nan());
    }

    #[test]
    fn medians_of_keys_match_medians_of_values() {
        let lists: [&[f64]; 5] = [
            &[3.5, -0.0, 0.0, -7.25, 1e-300, -1e-300, 42.0, -0.0],
            &[0.0, -0.0],
            &[-0.0, 1.0, 0.0, -1.0],
            &[2.0, f64::NAN, 1.0],
            &[],
        ];
        for values in lists {
            let mut finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
            let expected = median_in_place(&mut finite);
            assert_eq!(median(values).to_bits(), expected.to_bits());
            for center in [0.0, 1.5, -2.0] {
                let mut deviations: Vec<f64> = values
                    .iter()
                    .filter(|v| v.is_finite())
                    .map(|v| (v - center).abs())
                    .collect();
                let expected_sigma = 1.4826 * median_in_place(&mut deviations);
                let sigma = mad_sigma(values, center);
                assert_eq!(sigma.to_bits(), expected_sigma.to_bits());
            }
        }
    }

    #[test]
    fn sorting_by_keys_is_sorting_by_total_order() {
        let mut values = vec![3.5, -0.0, 0.0, -7.25, 1e-300, -1e-300, 42.0, -0.0, f64::MAX];
        let mut expected = values.clone();
        expected.sort_by(f64::total_cmp);
        sort_total(&mut values, &mut Vec::new());
        let bits = |values: &[f64]| {
            values
                .iter()
                .map(|value| value.to_bits())
                .collect::<Vec<_>>()
        };
        assert_eq!(bits(&values), bits(&expected));
    }

    #[test]
    fn mad_sigma_of_sorted_values_matches_mad_sigma() {
        let lists: [&[f64]; 5] = [
            &[-3.0, -1.0, 0.5, 0.5, 2.0, 7.0, 7.5],
            &[1.0, 2.0, 4.0, 8.0],
            &[5.0],
            &[2.0, 2.0, 2.0],
            &[-10.0, -9.0, -8.5, 0.0, 0.1],
        ];
        for values in lists {
            let center = median_of_sorted(values);
            for center in [center, center + 0.3, center - 4.0] {
                let merged = mad_sigma_of_sorted(values, center);
                assert_eq!(merged.to_bits(), mad_sigma(values, center).to_bits());
            }
        }
        assert!(mad_sigma_of_sorted(&[], 0.0).is_nan());
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
        assert_eq!(quantile(&[3.0, f64::NAN, 1.0, 2.0], 0.0), 1.0);
        assert_eq!(quantile(&[9.0, 1.0, 5.0, 3.0, 7.0], 0.9), 8.2);
        assert!(quantile(&[f64::NAN], 0.5).is_nan());
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

    #[test]
    fn close_neighbours_bound_the_resolution() {
        let values = [0.0, 3.0, 3.0, 1.0, 1.5];
        assert!(neighbours_within(&values, 0.5));
        assert!(resolution(&values).unwrap() <= 0.5);
        // 1.0 and 1.5 are not neighbours once 3.0 is between them in this order.
        assert!(!neighbours_within(&[0.0, 1.0, 3.0, 1.5], 0.5));
        assert!(!neighbours_within(&[2.0, 2.0], 1.0));
    }
}
