//! What a candidate does next, given the lease it read and the time: pure, so each rule of
//! the election is tested without a server. The rules are client-go's `tryAcquireOrRenew`:
//! no lease, create one; our own lease, renew it (keeping acquireTime and leaseTransitions);
//! someone else's lease still valid, wait; otherwise take it over (acquireTime now,
//! leaseTransitions + 1). Validity is judged by when this candidate saw the record change,
//! on its own clock, plus the record's leaseDurationSeconds, so clock skew between
//! candidates does not matter.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;

/// The election's fields of a Lease's spec.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaderRecord {
    pub holder_identity: String,
    pub lease_duration_seconds: i32,
    pub acquire_time: Option<Timestamp>,
    pub renew_time: Option<Timestamp>,
    pub lease_transitions: i32,
}

impl LeaderRecord {
    pub fn from_spec(spec: &LeaseSpec) -> LeaderRecord {
        LeaderRecord {
            holder_identity: spec.holder_identity.clone().unwrap_or_default(),
            lease_duration_seconds: spec.lease_duration_seconds.unwrap_or(0),
            acquire_time: spec.acquire_time.as_ref().map(|t| t.0),
            renew_time: spec.renew_time.as_ref().map(|t| t.0),
            lease_transitions: spec.lease_transitions.unwrap_or(0),
        }
    }

    /// Written into `spec`; other fields (strategy, preferredHolder) are left as they are.
    pub fn write_to(&self, spec: &mut LeaseSpec) {
        spec.holder_identity = Some(self.holder_identity.clone());
        spec.lease_duration_seconds = Some(self.lease_duration_seconds);
        spec.acquire_time = self.acquire_time.map(MicroTime);
        spec.renew_time = self.renew_time.map(MicroTime);
        spec.lease_transitions = Some(self.lease_transitions);
    }
}

/// The last record this candidate read or wrote, and when it first saw it so.
#[derive(Clone, Debug, Default)]
pub struct Observation {
    record: Option<LeaderRecord>,
    at: Option<Instant>,
}

impl Observation {
    /// Note the record read at `now`; the clock restarts only when it changed.
    pub fn observe(&mut self, record: &LeaderRecord, now: Instant) {
        if self.record.as_ref() != Some(record) {
            self.record = Some(record.clone());
            self.at = Some(now);
        }
    }

    pub fn record(&self) -> Option<&LeaderRecord> {
        self.record.as_ref()
    }

    /// Whether the observed record names `identity` as holder.
    pub fn is_held_by(&self, identity: &str) -> bool {
        self.record.as_ref().is_some_and(|r| !identity.is_empty() && r.holder_identity == identity)
    }

    /// How long the observed record stays valid after `now` (zero once expired).
    pub fn valid_for(&self, now: Instant) -> Duration {
        match (&self.record, self.at) {
            (Some(r), Some(at)) => (at + Duration::from_secs(r.lease_duration_seconds.max(0) as u64)).saturating_duration_since(now),
            _ => Duration::ZERO,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// There is no lease: create it holding this record.
    Create(LeaderRecord),
    /// Take over a lease that expired or was released.
    Acquire(LeaderRecord),
    /// Renew our own lease.
    Renew(LeaderRecord),
    /// Someone else holds the lease for a while yet.
    Wait { holder: String, valid_for: Duration },
}

/// Who is deciding, and for how long a lease it asks.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a> {
    pub identity: &'a str,
    pub lease_duration: Duration,
}

impl Candidate<'_> {
    fn record(&self, acquire_time: Timestamp, renew_time: Timestamp, lease_transitions: i32) -> LeaderRecord {
        LeaderRecord {
            holder_identity: self.identity.to_string(),
            lease_duration_seconds: whole_seconds(self.lease_duration),
            acquire_time: Some(acquire_time),
            renew_time: Some(renew_time),
            lease_transitions,
        }
    }
}

/// leaseDurationSeconds for a duration: whole seconds, rounded up, at least one.
pub fn whole_seconds(d: Duration) -> i32 {
    (d.as_millis().div_ceil(1000)).clamp(1, i32::MAX as u128) as i32
}

/// A wall-clock time as a MicroTime keeps it, so what is written compares equal to what is read back.
pub fn micro(t: Timestamp) -> Timestamp {
    Timestamp::from_microsecond(t.as_microsecond()).unwrap_or(t)
}

/// What to do about `current` (None: no lease exists), observed into `observation` at
/// `now` (monotonic) and `wall` (for the timestamps written).
pub fn decide(candidate: Candidate<'_>, current: Option<&LeaderRecord>, observation: &mut Observation, now: Instant, wall: Timestamp) -> Decision {
    let wall = micro(wall);
    let Some(current) = current else {
        return Decision::Create(candidate.record(wall, wall, 0));
    };
    observation.observe(current, now);
    if current.holder_identity == candidate.identity {
        let acquired = current.acquire_time.unwrap_or(wall);
        return Decision::Renew(candidate.record(acquired, wall, current.lease_transitions));
    }
    let valid_for = observation.valid_for(now);
    if !current.holder_identity.is_empty() && !valid_for.is_zero() {
        return Decision::Wait { holder: current.holder_identity.clone(), valid_for };
    }
    Decision::Acquire(candidate.record(wall, wall, current.lease_transitions + 1))
}

/// What a leader writes to give the lease up at once (client-go's release): no holder, a
/// one-second duration, the transitions kept.
pub fn released(observed: &LeaderRecord, wall: Timestamp) -> LeaderRecord {
    let wall = micro(wall);
    LeaderRecord { holder_identity: String::new(), lease_duration_seconds: 1, acquire_time: Some(wall), renew_time: Some(wall), lease_transitions: observed.lease_transitions }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: Candidate<'static> = Candidate { identity: "host_me", lease_duration: Duration::from_secs(15) };

    fn held_by(holder: &str, transitions: i32) -> LeaderRecord {
        let t = Timestamp::from_second(1_000).unwrap();
        LeaderRecord { holder_identity: holder.into(), lease_duration_seconds: 15, acquire_time: Some(t), renew_time: Some(t), lease_transitions: transitions }
    }

    fn wall() -> Timestamp {
        Timestamp::from_second(2_000).unwrap()
    }

    #[test]
    fn no_lease_is_created_holding_it() {
        let mut obs = Observation::default();
        let Decision::Create(r) = decide(ME, None, &mut obs, Instant::now(), wall()) else { panic!() };
        assert_eq!(r, LeaderRecord { holder_identity: "host_me".into(), lease_duration_seconds: 15, acquire_time: Some(wall()), renew_time: Some(wall()), lease_transitions: 0 });
    }

    #[test]
    fn a_lease_renewed_by_another_is_respected_while_it_keeps_changing() {
        let mut obs = Observation::default();
        let t0 = Instant::now();
        let mut other = held_by("host_other", 3);
        assert_eq!(decide(ME, Some(&other), &mut obs, t0, wall()), Decision::Wait { holder: "host_other".into(), valid_for: Duration::from_secs(15) });
        // Renewed 10 s later: valid for 15 s from when the change was seen, not from the first sight.
        other.renew_time = Some(Timestamp::from_second(1_010).unwrap());
        let Decision::Wait { valid_for, .. } = decide(ME, Some(&other), &mut obs, t0 + Duration::from_secs(10), wall()) else { panic!() };
        assert_eq!(valid_for, Duration::from_secs(15));
        let Decision::Wait { valid_for, .. } = decide(ME, Some(&other), &mut obs, t0 + Duration::from_secs(24), wall()) else { panic!() };
        assert_eq!(valid_for, Duration::from_secs(1));
    }

    #[test]
    fn an_expired_lease_is_taken_over_and_the_transition_counted() {
        let mut obs = Observation::default();
        let t0 = Instant::now();
        let other = held_by("host_other", 3);
        assert!(matches!(decide(ME, Some(&other), &mut obs, t0, wall()), Decision::Wait { .. }));
        // Unchanged for the whole lease duration: expired, whatever its renewTime says.
        let Decision::Acquire(r) = decide(ME, Some(&other), &mut obs, t0 + Duration::from_secs(15), wall()) else { panic!() };
        assert_eq!((r.holder_identity.as_str(), r.lease_transitions), ("host_me", 4));
        assert_eq!((r.acquire_time, r.renew_time), (Some(wall()), Some(wall())));
    }

    #[test]
    fn a_lease_first_seen_is_given_its_full_duration_whatever_its_timestamps() {
        // A candidate that just started cannot tell how stale the lease is: it waits it out.
        let mut obs = Observation::default();
        let stale = held_by("host_other", 0);
        assert!(matches!(decide(ME, Some(&stale), &mut obs, Instant::now(), wall()), Decision::Wait { .. }));
    }

    #[test]
    fn our_own_lease_is_renewed_keeping_acquire_time_and_transitions() {
        let mut obs = Observation::default();
        let mine = held_by("host_me", 2);
        let Decision::Renew(r) = decide(ME, Some(&mine), &mut obs, Instant::now(), wall()) else { panic!() };
        assert_eq!(r.acquire_time, mine.acquire_time);
        assert_eq!(r.renew_time, Some(wall()));
        assert_eq!(r.lease_transitions, 2);
    }

    #[test]
    fn a_released_lease_is_taken_at_once_and_counts_as_a_transition() {
        let mut obs = Observation::default();
        let released = released(&held_by("host_other", 5), wall());
        assert_eq!((released.holder_identity.as_str(), released.lease_duration_seconds, released.lease_transitions), ("", 1, 5));
        let Decision::Acquire(r) = decide(ME, Some(&released), &mut obs, Instant::now(), wall()) else { panic!() };
        assert_eq!(r.lease_transitions, 6);
    }

    #[test]
    fn records_round_trip_through_a_lease_spec() {
        let r = held_by("host_me", 7);
        let mut spec = LeaseSpec { strategy: Some("OldestEmulationVersion".into()), ..Default::default() };
        r.write_to(&mut spec);
        assert_eq!(LeaderRecord::from_spec(&spec), r);
        assert_eq!(spec.strategy.as_deref(), Some("OldestEmulationVersion"));
        assert_eq!(whole_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(whole_seconds(Duration::from_millis(10)), 1);
        let t = Timestamp::from_nanosecond(1_700_000_000_123_456_789).unwrap();
        assert_eq!(micro(t).as_nanosecond(), 1_700_000_000_123_456_000);
    }
}
