//! Latency samples and their summary: nearest-rank percentiles in milliseconds.

use std::time::Duration;

/// Sorted latencies, in milliseconds (signed: a watch event may arrive before the write's
/// acknowledgement).
#[derive(Debug, Clone, Default)]
pub struct Samples(Vec<f64>);

impl Samples {
    pub fn from_millis(mut ms: Vec<f64>) -> Samples {
        ms.sort_by(f64::total_cmp);
        Samples(ms)
    }

    pub fn from_durations(ds: &[Duration]) -> Samples {
        Samples::from_millis(ds.iter().map(|d| d.as_secs_f64() * 1000.0).collect())
    }

    /// The nearest-rank `p`th percentile (0 < p <= 100); None without samples.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        if self.0.is_empty() {
            return None;
        }
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        Some(self.0[rank.clamp(1, self.0.len()) - 1])
    }

    pub fn p50(&self) -> Option<f64> {
        self.percentile(50.0)
    }

    pub fn p99(&self) -> Option<f64> {
        self.percentile(99.0)
    }

    pub fn as_slice(&self) -> &[f64] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s = Samples::from_millis((1..=100).rev().map(f64::from).collect());
        assert_eq!(s.p50(), Some(50.0));
        assert_eq!(s.p99(), Some(99.0));
        assert_eq!(s.percentile(100.0), Some(100.0));
        assert_eq!(s.percentile(0.1), Some(1.0));
    }

    #[test]
    fn few_and_no_samples() {
        let one = Samples::from_durations(&[Duration::from_micros(1500)]);
        assert_eq!(one.p50(), Some(1.5));
        assert_eq!(one.p99(), Some(1.5));
        assert_eq!(Samples::default().p50(), None);
        let negative = Samples::from_millis(vec![0.5, -0.2, 0.1]);
        assert_eq!(negative.as_slice(), &[-0.2, 0.1, 0.5]);
    }
}
