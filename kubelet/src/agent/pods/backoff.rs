//! Back-off for restarting crashed containers (CrashLoopBackOff) and for retrying failed
//! image pulls (ImagePullBackOff): 10 s, doubling up to 5 min per key. A crash back-off is
//! forgotten once the container ran for 10 min; an entry untouched for twice the maximum
//! starts over. The clock is injectable so tests do not sleep.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Wall-clock time (CRI times are wall-clock).
pub trait Clock: Send + Sync {
    fn now(&self) -> SystemTime;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock tests move by hand.
pub struct ManualClock(Mutex<SystemTime>);

impl ManualClock {
    pub fn new(start: SystemTime) -> Self {
        ManualClock(Mutex::new(start))
    }
    pub fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
    pub fn set(&self, to: SystemTime) {
        *self.0.lock().unwrap() = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
}

/// (pod uid, container name) for crashes; (pod uid, image) for pulls.
pub type BackoffKey = (String, String);

#[derive(Debug, Clone, Copy)]
struct Entry {
    delay: Duration,
    updated: SystemTime,
}

pub struct Backoff {
    initial: Duration,
    max: Duration,
    /// A container that ran this long before exiting starts its back-off over.
    reset_after: Duration,
    clock: Arc<dyn Clock>,
    entries: Mutex<HashMap<BackoffKey, Entry>>,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, reset_after: Duration, clock: Arc<dyn Clock>) -> Self {
        Backoff { initial, max, reset_after, clock, entries: Mutex::new(HashMap::new()) }
    }

    /// The kubelet's container restart back-off: 10 s doubling to 5 min, reset after 10 min.
    pub fn crash_loop(clock: Arc<dyn Clock>) -> Self {
        Self::new(Duration::from_secs(10), Duration::from_secs(300), Duration::from_secs(600), clock)
    }

    /// The image pull back-off: 10 s doubling to 5 min.
    pub fn image_pull(clock: Arc<dyn Clock>) -> Self {
        Self::new(Duration::from_secs(10), Duration::from_secs(300), Duration::from_secs(600), clock)
    }

    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    fn live(&self, entry: &Entry, now: SystemTime) -> bool {
        now.duration_since(entry.updated).unwrap_or_default() <= self.max * 2
    }

    /// The current delay of `key`, if it is backing off at all.
    pub fn delay(&self, key: &BackoffKey) -> Option<Duration> {
        let now = self.clock.now();
        self.entries.lock().unwrap().get(key).filter(|e| self.live(e, now)).map(|e| e.delay)
    }

    /// How long `key` must still wait when its last failure happened at `since` (the
    /// container's finish time); None: it may go now.
    pub fn remaining(&self, key: &BackoffKey, since: SystemTime) -> Option<Duration> {
        let now = self.clock.now();
        let entries = self.entries.lock().unwrap();
        let entry = entries.get(key).filter(|e| self.live(e, now))?;
        let elapsed = now.duration_since(since).unwrap_or_default();
        (elapsed < entry.delay).then(|| entry.delay - elapsed)
    }

    /// How long `key` must still wait since its last [`Backoff::next`] (image pulls).
    pub fn remaining_since_update(&self, key: &BackoffKey) -> Option<Duration> {
        let updated = self.entries.lock().unwrap().get(key)?.updated;
        self.remaining(key, updated)
    }

    /// Records a restart or failure of `key` now; returns the delay before the next one.
    pub fn next(&self, key: &BackoffKey) -> Duration {
        let now = self.clock.now();
        let mut entries = self.entries.lock().unwrap();
        let delay = match entries.get(key) {
            Some(e) if self.live(e, now) => (e.delay * 2).min(self.max),
            _ => self.initial,
        };
        entries.insert(key.clone(), Entry { delay, updated: now });
        delay
    }

    /// Forgets `key` when the container ran at least the reset time before it exited.
    pub fn reset_if_ran(&self, key: &BackoffKey, ran: Duration) {
        if ran >= self.reset_after {
            self.reset(key);
        }
    }

    pub fn reset(&self, key: &BackoffKey) {
        self.entries.lock().unwrap().remove(key);
    }

    /// Forgets every key of pod `uid` (the pod is gone).
    pub fn forget_pod(&self, uid: &str) {
        self.entries.lock().unwrap().retain(|(u, _), _| u != uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (Arc<ManualClock>, Backoff) {
        let clock = Arc::new(ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000)));
        let b = Backoff::crash_loop(clock.clone());
        (clock, b)
    }

    fn key() -> BackoffKey {
        ("uid".into(), "app".into())
    }

    #[test]
    fn delays_double_up_to_five_minutes() {
        let (_clock, b) = setup();
        let delays: Vec<u64> = (0..8).map(|_| b.next(&key()).as_secs()).collect();
        assert_eq!(delays, vec![10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn no_entry_means_no_wait() {
        let (clock, b) = setup();
        assert_eq!(b.remaining(&key(), clock.now()), None);
        assert_eq!(b.delay(&key()), None);
    }

    #[test]
    fn remaining_counts_from_the_failure_time() {
        let (clock, b) = setup();
        b.next(&key());
        let finished = clock.now();
        clock.advance(Duration::from_secs(4));
        assert_eq!(b.remaining(&key(), finished), Some(Duration::from_secs(6)));
        clock.advance(Duration::from_secs(6));
        assert_eq!(b.remaining(&key(), finished), None);
    }

    #[test]
    fn running_ten_minutes_resets() {
        let (_clock, b) = setup();
        b.next(&key());
        b.next(&key());
        b.reset_if_ran(&key(), Duration::from_secs(599));
        assert_eq!(b.delay(&key()), Some(Duration::from_secs(20)));
        b.reset_if_ran(&key(), Duration::from_secs(600));
        assert_eq!(b.delay(&key()), None);
        assert_eq!(b.next(&key()), Duration::from_secs(10));
    }

    #[test]
    fn an_old_entry_starts_over() {
        let (clock, b) = setup();
        b.next(&key());
        b.next(&key());
        clock.advance(Duration::from_secs(601));
        assert_eq!(b.next(&key()), Duration::from_secs(10));
    }

    #[test]
    fn pull_backoff_counts_from_the_last_failure() {
        let clock = Arc::new(ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(5)));
        let b = Backoff::image_pull(clock.clone());
        let k: BackoffKey = ("uid".into(), "busybox".into());
        assert_eq!(b.remaining_since_update(&k), None);
        b.next(&k);
        clock.advance(Duration::from_secs(3));
        assert_eq!(b.remaining_since_update(&k), Some(Duration::from_secs(7)));
        b.forget_pod("uid");
        assert_eq!(b.remaining_since_update(&k), None);
    }
}
