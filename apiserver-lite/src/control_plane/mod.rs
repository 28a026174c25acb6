//! The scheduler and the controller manager as components: in the apiserver-lite process
//! (their clients call its router) or as processes of their own (`apiserver-lite
//! controller-manager` / `scheduler`, clients from a kubeconfig), either way through the API
//! only. Each runs under leader election on its Lease (`kube-system/kube-controller-manager`,
//! `kube-system/kube-scheduler`), so of several copies only one acts; each term of leadership
//! runs on a runtime of its own (`isolated`), torn down when the lease is lost.

pub mod duration;
pub mod isolated;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::controllers::{self, ControllersConfig};
use crate::leader_election::{self, LeaderElectionConfig};
pub use duration::parse_duration;
use isolated::Isolated;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    ControllerManager,
    Scheduler,
}

impl Component {
    /// The Lease in kube-system, named as upstream's.
    pub fn lease_name(self) -> &'static str {
        match self {
            Component::ControllerManager => "kube-controller-manager",
            Component::Scheduler => "kube-scheduler",
        }
    }

    /// The source of its LeaderElection events: kube-controller-manager's recorder, and the
    /// scheduler's first profile's name (`default-scheduler`), as upstream.
    pub fn event_source(self) -> &'static str {
        match self {
            Component::ControllerManager => "kube-controller-manager",
            Component::Scheduler => crate::scheduler::writes::SCHEDULER_NAME,
        }
    }

    /// Who it acts as in process.
    pub fn user(self) -> &'static str {
        match self {
            Component::ControllerManager => controllers::CONTROLLER_MANAGER_USER,
            Component::Scheduler => controllers::SCHEDULER_USER,
        }
    }

    fn thread_name(self) -> &'static str {
        match self {
            Component::ControllerManager => "controller-manager",
            Component::Scheduler => "scheduler",
        }
    }
}

/// How a component runs (upstream's flags of the same names).
#[derive(Clone, Debug)]
pub struct ComponentOptions {
    /// --leader-elect: act only while holding the lease.
    pub leader_elect: bool,
    /// --leader-elect-lease-duration, --leader-elect-renew-deadline, --leader-elect-retry-period.
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
    pub controllers: ControllersConfig,
}

impl Default for ComponentOptions {
    fn default() -> Self {
        ComponentOptions {
            leader_elect: true,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            controllers: ControllersConfig::default(),
        }
    }
}

impl ComponentOptions {
    /// The checks client-go makes: lease duration > renew deadline > 1.2 retry periods (the
    /// jitter), so a leader stops acting before a standby may take over.
    pub fn validate(&self) -> Result<(), String> {
        if !self.leader_elect {
            return Ok(());
        }
        if self.retry_period.is_zero() {
            return Err("--leader-elect-retry-period must be more than zero".into());
        }
        if self.renew_deadline >= self.lease_duration {
            return Err(format!("--leader-elect-renew-deadline ({:?}) must be less than --leader-elect-lease-duration ({:?})", self.renew_deadline, self.lease_duration));
        }
        if self.renew_deadline <= self.retry_period.mul_f64(1.2) {
            return Err(format!("--leader-elect-renew-deadline ({:?}) must be more than 1.2 × --leader-elect-retry-period ({:?})", self.renew_deadline, self.retry_period));
        }
        Ok(())
    }

    pub fn election(&self, component: Component) -> LeaderElectionConfig {
        let mut config = LeaderElectionConfig::new(component.lease_name(), component.event_source());
        config.lease_duration = self.lease_duration;
        config.renew_deadline = self.renew_deadline;
        config.retry_period = self.retry_period;
        config
    }
}

/// Makes the client a term of leadership works with; called inside the term's runtime.
pub type Connect = Arc<dyn Fn() -> BoxFuture<'static, Result<kube::Client, String>> + Send + Sync>;

/// Clients that call `app` in process, as the component's user.
pub fn in_process(app: axum::Router, component: Component) -> Connect {
    Arc::new(move || {
        let client = controllers::in_process_client(app.clone(), component.user());
        Box::pin(async move { Ok(client) })
    })
}

/// Clients from the kubeconfig at `path`, read afresh for each term.
pub fn from_kubeconfig(path: std::path::PathBuf) -> Connect {
    Arc::new(move || {
        let path = path.clone();
        Box::pin(async move { controllers::kubeconfig_client(&path).await.map_err(|e| e.to_string()) })
    })
}

async fn work(component: Component, client: kube::Client, options: ComponentOptions) {
    match component {
        Component::ControllerManager => controllers::run(client, options.controllers).await,
        Component::Scheduler => crate::scheduler::run(client).await,
    }
}

/// One term: the component's loops on a runtime of their own, until dropped.
fn term(component: Component, connect: &Connect, options: &ComponentOptions) -> Isolated {
    let (connect, options) = (connect.clone(), options.clone());
    Isolated::start(component.thread_name(), 2, async move {
        match connect().await {
            Ok(client) => work(component, client, options).await,
            Err(e) => tracing::error!("{}: no client: {e}", component.thread_name()),
        }
    })
}

/// Run `component` until `shutdown`: under leader election (with `election_client` reading
/// and writing its lease) unless `options.leader_elect` is false. On shutdown the loops
/// stop and the lease is released.
pub async fn run(component: Component, election_client: kube::Client, connect: Connect, options: ComponentOptions, shutdown: impl Future<Output = ()>) {
    if !options.leader_elect {
        tokio::select! {
            _ = shutdown => {}
            () = term(component, &connect, &options) => {}
        }
        return;
    }
    let config = options.election(component);
    tracing::info!(lease = %format!("{}/{}", config.namespace, config.name), identity = %config.identity, "{}: attempting to acquire the leader lease", component.thread_name());
    leader_election::run(election_client, config, shutdown, || term(component, &connect, &options)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn election_timings_are_checked_as_upstream() {
        assert!(ComponentOptions::default().validate().is_ok());
        let with = |lease: u64, renew: u64, retry: u64| ComponentOptions {
            lease_duration: Duration::from_millis(lease),
            renew_deadline: Duration::from_millis(renew),
            retry_period: Duration::from_millis(retry),
            ..Default::default()
        };
        assert!(with(4000, 3000, 500).validate().is_ok());
        assert!(with(10_000, 10_000, 2000).validate().unwrap_err().contains("less than --leader-elect-lease-duration"));
        assert!(with(15_000, 2000, 2000).validate().unwrap_err().contains("1.2"));
        assert!(with(15_000, 10_000, 0).validate().is_err());
        assert!(ComponentOptions { leader_elect: false, ..with(1, 1, 0) }.validate().is_ok(), "unchecked without election");
        let config = with(4000, 3000, 500).election(Component::Scheduler);
        assert_eq!((config.namespace.as_str(), config.name.as_str(), config.event_source.as_str()), ("kube-system", "kube-scheduler", "default-scheduler"));
        assert_eq!(config.lease_duration, Duration::from_secs(4));
        assert!(config.release_on_cancel);
    }
}
