//! The backoff on replacing failed daemon pods, per DaemonSet and node (upstream's
//! failedPodsBackoff, 1 s doubling to 15 min): a kubelet that keeps rejecting a pod would
//! otherwise have the controller delete and recreate it in a hot loop.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const INITIAL: Duration = Duration::from_secs(1);
const MAX: Duration = Duration::from_secs(15 * 60);

#[derive(Default)]
pub struct FailedPodsBackoff {
    entries: Mutex<HashMap<String, (Duration, Instant)>>,
}

impl FailedPodsBackoff {
    /// None when a failed pod on this node may be deleted now (and the next delay starts);
    /// otherwise how long until it may.
    pub fn try_delete(&self, key: &str, now: Instant) -> Option<Duration> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get_mut(key) {
            Some((delay, since)) if now.duration_since(*since) < *delay => Some(*delay - now.duration_since(*since)),
            // Quiet for long enough: start again from the initial delay.
            Some((delay, since)) if now.duration_since(*since) > 2 * MAX => {
                *delay = INITIAL;
                *since = now;
                None
            }
            Some((delay, since)) => {
                *delay = (*delay * 2).min(MAX);
                *since = now;
                None
            }
            None => {
                entries.insert(key.to_string(), (INITIAL, now));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletions_on_one_node_are_spaced_out_doubling() {
        let b = FailedPodsBackoff::default();
        let t0 = Instant::now();
        assert_eq!(b.try_delete("ds/n1", t0), None);
        assert_eq!(b.try_delete("ds/n1", t0 + Duration::from_millis(400)), Some(Duration::from_millis(600)));
        assert_eq!(b.try_delete("ds/n2", t0), None, "another node has its own backoff");
        assert_eq!(b.try_delete("ds/n1", t0 + Duration::from_secs(1)), None);
        assert_eq!(b.try_delete("ds/n1", t0 + Duration::from_secs(2)), Some(Duration::from_secs(1)));
        assert_eq!(b.try_delete("ds/n1", t0 + Duration::from_secs(3)), None);
    }
}
