//! Small statistics for repeated measurements: median, quartiles, the uncertainty of a
//! median, when two medians differ by more than the noise, and the coefficient of
//! variation used as the one-number evenness of a per-worker distribution.

/// How many standard errors apart two medians must be to be called different.
pub const DISTINCT_SE: f64 = 3.0;

/// The summary of one row's repetitions.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Median.
    pub median: f64,
    /// First quartile.
    pub q1: f64,
    /// Third quartile.
    pub q3: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
}

impl Summary {
    /// Summarises `samples` (empty: all zero, `n` 0).
    pub fn of(samples: &[f64]) -> Summary {
        let mut s: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
        if s.is_empty() {
            return Summary::default();
        }
        s.sort_by(f64::total_cmp);
        Summary {
            n: s.len(),
            median: quantile(&s, 0.5),
            q1: quantile(&s, 0.25),
            q3: quantile(&s, 0.75),
            min: s[0],
            max: s[s.len() - 1],
        }
    }

    /// The standard error of the median: 1.25 σ / √n, with σ taken as the interquartile
    /// range (for normal noise the IQR of 5 to 9 samples is about σ; of many, 1.35 σ), so
    /// one outlier on each side does not widen it and small samples do not flatter it.
    pub fn se(&self) -> f64 {
        if self.n < 2 {
            return f64::INFINITY;
        }
        1.25 * (self.q3 - self.q1) / (self.n as f64).sqrt()
    }

    /// The standard error relative to the median.
    pub fn relative_se(&self) -> f64 {
        if self.median.abs() > 0.0 {
            self.se() / self.median.abs()
        } else {
            f64::INFINITY
        }
    }
}

/// Whether paired differences (one per round) are centred away from zero: their median is
/// more than [`DISTINCT_SE`] standard errors from it, over at least three rounds.
pub fn distinct_from_zero(diffs: &Summary) -> bool {
    diffs.n >= 3 && diffs.median.abs() > DISTINCT_SE * diffs.se()
}

/// The log-ratios `ln(a[k] / b[k])` of the rounds where both were measured and positive:
/// a slowdown of the whole machine during a round scales both and cancels here.
pub fn paired_log(a: &[Option<f64>], b: &[Option<f64>]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .filter_map(|(x, y)| {
            let (x, y) = ((*x)?, (*y)?);
            (x > 0.0 && y > 0.0).then(|| (x / y).ln())
        })
        .collect()
}

/// The differences `a[k] - b[k]` of the rounds where both were measured.
pub fn paired(a: &[Option<f64>], b: &[Option<f64>]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .filter_map(|(x, y)| Some((*x)? - (*y)?))
        .collect()
}

/// Linear-interpolated quantile of sorted samples.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let at = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo as f64)
}

/// Coefficient of variation (population standard deviation over mean); `None` when empty
/// or the mean is zero.
pub fn cv(values: &[u64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<u64>() as f64 / n;
    if mean == 0.0 {
        return None;
    }
    let var = values
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    Some(var.sqrt() / mean)
}
