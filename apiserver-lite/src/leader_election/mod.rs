//! Leader election on a `coordination.k8s.io/v1` Lease, as kube-controller-manager and
//! kube-scheduler do it (client-go's leaderelection with a LeaseLock): candidates try to
//! acquire the lease every retry period (jittered); the leader renews it every retry period
//! and, if it cannot renew within the renew deadline, stops leading; a clean shutdown
//! releases the lease so a standby takes over at once. Every write carries the resourceVersion
//! read (or created), so of two candidates racing only one wins; the other gets 409.
//! `decision` holds the rules (pure); this module reads and writes the lease and runs the
//! loop around a caller's work, which is dropped the moment leadership is lost.

pub mod decision;

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};

use decision::{Candidate, Decision, LeaderRecord, Observation};

/// The namespace kube-controller-manager's and kube-scheduler's leases live in.
pub const LEASE_NAMESPACE: &str = "kube-system";

#[derive(Clone, Debug)]
pub struct LeaderElectionConfig {
    pub namespace: String,
    pub name: String,
    /// `<hostname>_<uuid>`, unique to this process and term of life.
    pub identity: String,
    /// How long a lease is valid after its holder last renewed it (--leader-elect-lease-duration, 15 s).
    pub lease_duration: Duration,
    /// How long a leader keeps trying to renew before it stops leading (--leader-elect-renew-deadline, 10 s).
    pub renew_deadline: Duration,
    /// How often candidates try to acquire, and leaders to renew (--leader-elect-retry-period, 2 s).
    pub retry_period: Duration,
    /// Give the lease up on shutdown (upstream ReleaseOnCancel), so a standby need not wait it out.
    pub release_on_cancel: bool,
    /// The component named as the source of the LeaderElection events.
    pub event_source: String,
}

impl LeaderElectionConfig {
    /// Upstream's defaults for the lease `kube-system/<name>`.
    pub fn new(name: &str, event_source: &str) -> LeaderElectionConfig {
        LeaderElectionConfig {
            namespace: LEASE_NAMESPACE.into(),
            name: name.into(),
            identity: identity(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            release_on_cancel: true,
            event_source: event_source.into(),
        }
    }
}

/// `<hostname>_<uuid>`, as kube-controller-manager and kube-scheduler name themselves.
pub fn identity() -> String {
    format!("{}_{}", hostname(), uuid::Uuid::new_v4())
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it or fails.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let name = if ok { String::from_utf8_lossy(&buf[..buf.iter().position(|b| *b == 0).unwrap_or(buf.len())]).into_owned() } else { String::new() };
    if name.is_empty() { "localhost".into() } else { name }
}

#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    #[error("reading lease {namespace}/{name}: {source}")]
    Read { namespace: String, name: String, source: kube::Error },
    #[error("writing lease {namespace}/{name}: {source}")]
    Write { namespace: String, name: String, source: kube::Error },
}

/// What one attempt to acquire or renew came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// We hold the lease.
    Leading,
    /// Someone else holds it, valid for a while yet.
    HeldBy(String),
    /// Another candidate wrote it between our read and our write (409).
    LostRace,
}

/// One candidate: its view of the lease, and the calls that read and write it.
pub struct LeaderElector {
    api: Api<Lease>,
    events: Api<Event>,
    config: LeaderElectionConfig,
    observation: Observation,
    /// The lease as last read or written by us: its resourceVersion guards the next write.
    lease: Option<Lease>,
}

impl LeaderElector {
    pub fn new(client: kube::Client, config: LeaderElectionConfig) -> LeaderElector {
        LeaderElector {
            api: Api::namespaced(client.clone(), &config.namespace),
            events: Api::namespaced(client, &config.namespace),
            config,
            observation: Observation::default(),
            lease: None,
        }
    }

    pub fn config(&self) -> &LeaderElectionConfig {
        &self.config
    }

    /// Whether the lease, as last seen, names us.
    pub fn is_leader(&self) -> bool {
        self.observation.is_held_by(&self.config.identity)
    }

    fn read_error(&self, source: kube::Error) -> ElectionError {
        ElectionError::Read { namespace: self.config.namespace.clone(), name: self.config.name.clone(), source }
    }

    fn write_error(&self, source: kube::Error) -> ElectionError {
        ElectionError::Write { namespace: self.config.namespace.clone(), name: self.config.name.clone(), source }
    }

    /// Write `record` over the lease last seen (its resourceVersion as precondition).
    async fn replace(&mut self, base: Lease, record: &LeaderRecord) -> Result<Attempt, ElectionError> {
        let mut lease = base;
        record.write_to(lease.spec.get_or_insert_with(Default::default));
        match self.api.replace(&self.config.name, &PostParams::default(), &lease).await {
            Ok(written) => {
                self.observation.observe(record, Instant::now());
                self.lease = Some(written);
                Ok(Attempt::Leading)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::LostRace),
            Err(e) => Err(self.write_error(e)),
        }
    }

    /// One try at acquiring or renewing the lease (client-go's tryAcquireOrRenew).
    pub async fn try_acquire_or_renew(&mut self) -> Result<Attempt, ElectionError> {
        // The leader's fast path: write over the lease it last wrote, without reading first;
        // if that fails (someone else wrote it, or the server is away) read and decide anew.
        if self.is_leader() && !self.observation.valid_for(Instant::now()).is_zero()
            && let (Some(lease), Some(observed)) = (self.lease.clone(), self.observation.record().cloned())
        {
            let record = LeaderRecord { renew_time: Some(decision::micro(Timestamp::now())), ..observed };
            match self.replace(lease, &record).await {
                Ok(Attempt::Leading) => return Ok(Attempt::Leading),
                Ok(_) => tracing::debug!(lease = %self.config.name, "leader election: the lease changed underneath; reading it"),
                Err(e) => tracing::warn!("leader election: renewing optimistically failed, reading the lease: {e}"),
            }
        }
        let current = match self.api.get_opt(&self.config.name).await {
            Ok(l) => l,
            Err(e) => return Err(self.read_error(e)),
        };
        let record = current.as_ref().map(|l| LeaderRecord::from_spec(&l.spec.clone().unwrap_or_default()));
        let candidate = Candidate { identity: &self.config.identity, lease_duration: self.config.lease_duration };
        match decision::decide(candidate, record.as_ref(), &mut self.observation, Instant::now(), Timestamp::now()) {
            Decision::Create(record) => {
                let mut lease = Lease { metadata: ObjectMeta { name: Some(self.config.name.clone()), namespace: Some(self.config.namespace.clone()), ..Default::default() }, spec: Some(Default::default()) };
                record.write_to(lease.spec.as_mut().expect("set above"));
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(created) => {
                        self.observation.observe(&record, Instant::now());
                        self.lease = Some(created);
                        Ok(Attempt::Leading)
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::LostRace),
                    Err(e) => Err(self.write_error(e)),
                }
            }
            Decision::Acquire(record) | Decision::Renew(record) => self.replace(current.expect("decided on a lease read"), &record).await,
            Decision::Wait { holder, .. } => {
                self.lease = current;
                Ok(Attempt::HeldBy(holder))
            }
        }
    }

    /// Try every retry period (with client-go's jitter of up to 1.2 periods more) until the
    /// lease is ours.
    pub async fn acquire(&mut self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Leading) => {
                    tracing::info!(lease = %format!("{}/{}", self.config.namespace, self.config.name), identity = %self.config.identity, "leader election: acquired the lease");
                    return;
                }
                Ok(Attempt::HeldBy(holder)) => tracing::debug!(lease = %self.config.name, %holder, "leader election: the lease is held"),
                Ok(Attempt::LostRace) => tracing::debug!(lease = %self.config.name, "leader election: another candidate wrote the lease first"),
                Err(e) => tracing::warn!("leader election: {e}"),
            }
            tokio::time::sleep(jittered(self.config.retry_period)).await;
        }
    }

    /// Renew every retry period for as long as that succeeds within the renew deadline;
    /// returns when leadership is lost.
    pub async fn keep_renewing(&mut self) {
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            let deadline = tokio::time::Instant::now() + self.config.renew_deadline;
            let renewed = tokio::time::timeout_at(deadline, async {
                loop {
                    match self.try_acquire_or_renew().await {
                        Ok(Attempt::Leading) => return,
                        Ok(other) => tracing::warn!(lease = %self.config.name, "leader election: could not renew: {other:?}"),
                        Err(e) => tracing::warn!("leader election: could not renew: {e}"),
                    }
                    tokio::time::sleep(self.config.retry_period).await;
                }
            })
            .await;
            if renewed.is_err() {
                tracing::warn!(lease = %format!("{}/{}", self.config.namespace, self.config.name), identity = %self.config.identity, "leader election lost: the lease was not renewed within the renew deadline");
                return;
            }
        }
    }

    /// Give the lease up if we hold it (best effort: a lease that cannot be released expires).
    pub async fn release(&mut self) {
        if !self.is_leader() {
            return;
        }
        let (Some(lease), Some(observed)) = (self.lease.clone(), self.observation.record().cloned()) else { return };
        let record = decision::released(&observed, Timestamp::now());
        let outcome = match self.replace(lease, &record).await {
            // A renewal cancelled by the shutdown may have reached the server after all, so the
            // lease we last saw is stale: read it again and release it if it still names us.
            Ok(Attempt::LostRace) => self.release_current(&record).await,
            other => other,
        };
        match outcome {
            Ok(Attempt::Leading) => tracing::info!(lease = %self.config.name, "leader election: released the lease"),
            Ok(_) => tracing::info!(lease = %self.config.name, "leader election: the lease was no longer ours to release"),
            Err(e) => tracing::warn!("leader election: releasing: {e}"),
        }
    }

    async fn release_current(&mut self, record: &LeaderRecord) -> Result<Attempt, ElectionError> {
        let current = match self.api.get_opt(&self.config.name).await {
            Ok(Some(l)) => l,
            Ok(None) => return Ok(Attempt::LostRace),
            Err(e) => return Err(self.read_error(e)),
        };
        let holder = current.spec.as_ref().and_then(|s| s.holder_identity.clone()).unwrap_or_default();
        if holder != self.config.identity {
            return Ok(Attempt::HeldBy(holder));
        }
        self.replace(current, record).await
    }

    /// A `LeaderElection` event on the lease, "<identity> <what>", as client-go's LeaseLock
    /// records them; best effort.
    pub async fn event(&self, what: &str) {
        let now = Timestamp::now();
        let name = &self.config.name;
        let involved = ObjectReference {
            api_version: Some("coordination.k8s.io/v1".into()),
            kind: Some("Lease".into()),
            namespace: Some(self.config.namespace.clone()),
            name: Some(name.clone()),
            uid: self.lease.as_ref().and_then(|l| l.metadata.uid.clone()),
            resource_version: self.lease.as_ref().and_then(|l| l.metadata.resource_version.clone()),
            ..Default::default()
        };
        let event = Event {
            metadata: ObjectMeta { name: Some(format!("{name}.{:x}", now.as_nanosecond())), namespace: Some(self.config.namespace.clone()), ..Default::default() },
            involved_object: involved,
            reason: Some("LeaderElection".into()),
            message: Some(format!("{} {what}", self.config.identity)),
            type_: Some("Normal".into()),
            source: Some(EventSource { component: Some(self.config.event_source.clone()), host: None }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            reporting_component: Some(self.config.event_source.clone()),
            reporting_instance: Some(self.config.identity.clone()),
            ..Default::default()
        };
        if let Err(e) = self.events.create(&PostParams::default(), &event).await {
            tracing::debug!("leader election event {what:?}: {e}");
        }
    }
}

/// `period` plus up to 1.2 periods more, at random (client-go's JitterUntil with factor 1.2),
/// so candidates that start together do not retry in step.
fn jittered(period: Duration) -> Duration {
    let mut byte = [0u8; 2];
    let r = if getrandom::fill(&mut byte).is_ok() { u16::from_le_bytes(byte) as f64 / u16::MAX as f64 } else { 0.5 };
    period + period.mul_f64(1.2 * r)
}

enum Ended {
    Shutdown,
    Lost,
    WorkDone,
}

/// Run `lead()`'s work whenever this candidate holds the lease `config` names: acquire,
/// start the work, keep renewing; when renewing fails the work is dropped (cancelled) and
/// the candidate goes back to acquiring. When `shutdown` completes the work is dropped and
/// the lease released. Returns on shutdown, or when the work ends by itself.
pub async fn run<F, W>(client: kube::Client, config: LeaderElectionConfig, shutdown: impl Future<Output = ()>, mut lead: F)
where
    F: FnMut() -> W,
    W: Future<Output = ()>,
{
    let mut elector = LeaderElector::new(client, config);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            () = elector.acquire() => {}
        }
        elector.event("became leader").await;
        let ended = {
            let work = lead();
            tokio::select! {
                _ = &mut shutdown => Ended::Shutdown,
                () = elector.keep_renewing() => Ended::Lost,
                () = work => Ended::WorkDone,
            }
        };
        elector.event("stopped leading").await;
        if elector.config.release_on_cancel {
            elector.release().await;
        }
        if !matches!(ended, Ended::Lost) {
            return;
        }
    }
}
