//! Sample summaries: min / median / p90, in milliseconds.

use std::time::Duration;

/// A summary of one series of samples.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub median: f64,
    pub p90: f64,
}

/// Milliseconds as a float.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Summary {
    /// Median is the mean of the two middle values for an even count; p90 is the
    /// nearest-rank value (the ceil(0.9 n)-th smallest), as the LXD anchor's
    /// summarize.sh computes them. `None` for an empty series.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 };
        let rank = (0.9 * n as f64).ceil() as usize;
        let p90 = s[rank.clamp(1, n) - 1];
        Some(Summary { n, min: s[0], median, p90 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_matches_summarize_sh() {
        let s = Summary::of(&[5.0, 1.0, 4.0, 2.0, 3.0, 10.0, 9.0, 8.0, 7.0, 6.0]).unwrap();
        assert_eq!((s.n, s.min), (10, 1.0));
        assert_eq!(s.median, 5.5);
        assert_eq!(s.p90, 9.0);
        let one = Summary::of(&[3.0]).unwrap();
        assert_eq!((one.median, one.p90), (3.0, 3.0));
        assert!(Summary::of(&[]).is_none());
    }
}
