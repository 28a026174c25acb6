//! The pods waiting for a node. Active pods go highest priority first, then oldest; a pod
//! that fit nowhere waits (unschedulable) until the cluster changes, then retries after a
//! backoff that doubles per attempt (1 s to 10 s), and at the latest every five minutes.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

use super::cache::PodKey;

pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
pub const UNSCHEDULABLE_FLUSH: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Place {
    Active,
    Backoff(Instant),
    Unschedulable(Instant),
    /// Being scheduled or bound.
    InFlight,
}

#[derive(Debug)]
struct Entry {
    pod: Arc<Pod>,
    attempts: u32,
    place: Place,
    /// Identifies the entry's current heap item (older items are stale).
    seq: u64,
    /// The move count when the pod was taken: a change meanwhile means retry soon.
    moves_when_taken: u64,
}

#[derive(Debug, Default)]
pub struct Queue {
    entries: HashMap<PodKey, Entry>,
    active: BinaryHeap<(i32, Reverse<u64>, PodKey)>,
    backoff: BinaryHeap<Reverse<(Instant, u64, PodKey)>>,
    seq: u64,
    moves: u64,
    /// Keys of the unschedulable entries, so a cluster change costs what is waiting.
    waiting: std::collections::HashSet<PodKey>,
}

pub fn backoff_for(attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(16);
    (INITIAL_BACKOFF * 2u32.pow(exp)).min(MAX_BACKOFF)
}

fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// A change that could make an unschedulable pod fit (its own status does not).
fn changed_for_scheduling(old: &Pod, new: &Pod) -> bool {
    old.spec != new.spec || old.metadata.labels != new.metadata.labels || old.metadata.uid != new.metadata.uid
}

impl Queue {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn push_active(&mut self, key: &str) {
        self.seq += 1;
        self.waiting.remove(key);
        let e = self.entries.get_mut(key).expect("pushed entries exist");
        e.place = Place::Active;
        e.seq = self.seq;
        self.active.push((priority(&e.pod), Reverse(self.seq), key.to_string()));
    }

    fn push_backoff(&mut self, key: &str, until: Instant) {
        self.seq += 1;
        self.waiting.remove(key);
        let e = self.entries.get_mut(key).expect("pushed entries exist");
        e.place = Place::Backoff(until);
        e.seq = self.seq;
        self.backoff.push(Reverse((until, self.seq, key.to_string())));
    }

    /// A pending pod seen by the watch: new ones become active; an unschedulable one whose
    /// spec or labels changed retries.
    pub fn upsert(&mut self, key: &str, pod: Arc<Pod>) {
        match self.entries.get_mut(key) {
            None => {
                self.entries.insert(key.to_string(), Entry { pod, attempts: 0, place: Place::Active, seq: 0, moves_when_taken: 0 });
                self.push_active(key);
            }
            Some(e) => {
                let retry = matches!(e.place, Place::Unschedulable(_)) && changed_for_scheduling(&e.pod, &pod);
                e.pod = pod;
                if retry {
                    self.push_active(key);
                }
            }
        }
    }

    pub fn remove(&mut self, key: &str) {
        self.entries.remove(key);
        self.waiting.remove(key);
    }

    pub fn keys(&self) -> Vec<PodKey> {
        self.entries.keys().cloned().collect()
    }

    /// The next pod to schedule, marked in flight.
    pub fn pop(&mut self, now: Instant) -> Option<(PodKey, Arc<Pod>)> {
        while let Some(Reverse((until, seq, _))) = self.backoff.peek() {
            if *until > now {
                break;
            }
            let seq = *seq;
            let Reverse((_, _, key)) = self.backoff.pop().expect("peeked");
            if self.entries.get(&key).is_some_and(|e| e.seq == seq && matches!(e.place, Place::Backoff(_))) {
                self.push_active(&key);
            }
        }
        let flush: Vec<PodKey> = self.waiting.iter().filter_map(|k| self.entries.get_key_value(k)).filter(|(_, e)| matches!(e.place, Place::Unschedulable(since) if now.duration_since(since) >= UNSCHEDULABLE_FLUSH)).map(|(k, _)| k.clone()).collect();
        for key in flush {
            self.push_active(&key);
        }
        while let Some((_, Reverse(seq), key)) = self.active.pop() {
            let moves = self.moves;
            if let Some(e) = self.entries.get_mut(&key).filter(|e| e.seq == seq && e.place == Place::Active) {
                e.place = Place::InFlight;
                e.moves_when_taken = moves;
                return Some((key, e.pod.clone()));
            }
        }
        None
    }

    /// When the next backoff or flush is due.
    pub fn next_due(&self) -> Option<Instant> {
        let backoff = self.backoff.peek().map(|Reverse((t, _, _))| *t);
        let flush = self.waiting.iter().filter_map(|k| match self.entries.get(k)?.place {
            Place::Unschedulable(since) => Some(since + UNSCHEDULABLE_FLUSH),
            _ => None,
        });
        backoff.into_iter().chain(flush).min()
    }

    /// The pod fit nowhere: it waits for a cluster change, or backs off if one came while
    /// it was being scheduled.
    pub fn unschedulable(&mut self, key: &str, now: Instant) {
        let moves = self.moves;
        let Some(e) = self.entries.get_mut(key) else { return };
        e.attempts += 1;
        if e.moves_when_taken != moves {
            let until = now + backoff_for(e.attempts);
            self.push_backoff(key, until);
        } else {
            e.place = Place::Unschedulable(now);
            self.waiting.insert(key.to_string());
        }
    }

    /// Scheduling or binding failed for another reason: retry after a backoff.
    pub fn error(&mut self, key: &str, now: Instant) {
        let Some(e) = self.entries.get_mut(key) else { return };
        e.attempts += 1;
        let until = now + backoff_for(e.attempts);
        self.push_backoff(key, until);
    }

    /// The cluster changed: every unschedulable pod retries once its backoff has passed.
    pub fn move_all(&mut self, now: Instant) {
        self.moves += 1;
        let waiting: Vec<(PodKey, u32, Instant)> = self.waiting.iter().filter_map(|k| self.entries.get(k).map(|e| (k, e))).filter_map(|(k, e)| if let Place::Unschedulable(since) = e.place { Some((k.clone(), e.attempts, since)) } else { None }).collect();
        for (key, attempts, since) in waiting {
            let until = since + backoff_for(attempts);
            if until <= now {
                self.push_active(&key);
            } else {
                self.push_backoff(&key, until);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, priority: i32) -> Arc<Pod> {
        Arc::new(serde_json::from_value(json!({"metadata": {"name": name, "uid": name}, "spec": {"containers": [], "priority": priority}})).unwrap())
    }

    #[test]
    fn priority_then_age() {
        let mut q = Queue::default();
        let now = Instant::now();
        q.upsert("a", pod("a", 0));
        q.upsert("b", pod("b", 10));
        q.upsert("c", pod("c", 0));
        let order: Vec<_> = std::iter::from_fn(|| q.pop(now).map(|(k, _)| k)).collect();
        assert_eq!(order, vec!["b", "a", "c"]);
    }

    #[test]
    fn unschedulable_pods_wait_for_a_change_then_back_off() {
        let mut q = Queue::default();
        let now = Instant::now();
        q.upsert("a", pod("a", 0));
        assert!(q.pop(now).is_some());
        q.unschedulable("a", now);
        assert!(q.pop(now).is_none(), "no busy loop: nothing changed");
        q.upsert("a", pod("a", 0));
        assert!(q.pop(now).is_none(), "an update that changes nothing relevant does not retry");
        q.move_all(now);
        assert!(q.pop(now).is_none(), "the first backoff (1 s) has not passed");
        assert_eq!(q.next_due(), Some(now + Duration::from_secs(1)));
        assert!(q.pop(now + Duration::from_secs(1)).is_some());
        // A change during the attempt sends the pod to backoff instead of waiting.
        q.move_all(now);
        q.unschedulable("a", now);
        assert_eq!(q.next_due(), Some(now + Duration::from_secs(2)), "the second attempt backs off 2 s");
        assert!(q.pop(now + Duration::from_secs(2)).is_some());
        q.remove("a");
        assert!(q.is_empty());
    }

    #[test]
    fn backoff_doubles_up_to_ten_seconds() {
        assert_eq!(backoff_for(1), Duration::from_secs(1));
        assert_eq!(backoff_for(3), Duration::from_secs(4));
        assert_eq!(backoff_for(10), MAX_BACKOFF);
    }

    #[test]
    fn spec_changes_retry_at_once() {
        let mut q = Queue::default();
        let now = Instant::now();
        q.upsert("a", pod("a", 0));
        q.pop(now);
        q.unschedulable("a", now);
        q.upsert("a", pod("a", 5));
        assert!(q.pop(now).is_some());
    }
}
