//! Per-object retry backoff for the workload controllers: a reconcile that keeps failing
//! (a template the server refuses, a quota) is retried after 100 ms, 200 ms, 400 ms, ... up to
//! five minutes, as upstream's rate-limited work queues do, instead of every second forever
//! (each failure records an event). A success forgets the object's failures.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

const BASE: Duration = Duration::from_millis(100);
const MAX: Duration = Duration::from_secs(300);

#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// The delay before retrying `key` after one more failure.
    pub fn failed(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key.to_string()).or_insert(0);
        let delay = BASE.saturating_mul(1u32 << (*n).min(16)).min(MAX);
        *n += 1;
        delay
    }

    pub fn succeeded(&self, key: &str) {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_reset_on_success() {
        let b = Backoff::default();
        assert_eq!(b.failed("a"), Duration::from_millis(100));
        assert_eq!(b.failed("a"), Duration::from_millis(200));
        assert_eq!(b.failed("b"), Duration::from_millis(100));
        for _ in 0..20 {
            b.failed("a");
        }
        assert_eq!(b.failed("a"), MAX);
        b.succeeded("a");
        assert_eq!(b.failed("a"), Duration::from_millis(100));
    }
}
