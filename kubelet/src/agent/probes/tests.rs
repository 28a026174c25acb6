use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ExecAction, Pod, PodSpec, Probe};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

use super::*;

/// Exec results scripted per command name (`cmd[0]`); the last one repeats.
#[derive(Default)]
struct FakeExec {
    script: Mutex<HashMap<String, VecDeque<Result<ExecOutput, ExecError>>>>,
    calls: Mutex<Vec<(String, String, Instant)>>,
}

impl FakeExec {
    fn script(&self, cmd: &str, results: &[i32]) {
        let q = results
            .iter()
            .map(|c| Ok(ExecOutput { exit_code: *c, output: format!("exit {c}").into_bytes() }))
            .collect();
        self.script.lock().unwrap().insert(cmd.into(), q);
    }

    fn script_raw(&self, cmd: &str, results: Vec<Result<ExecOutput, ExecError>>) {
        self.script.lock().unwrap().insert(cmd.into(), results.into());
    }

    fn calls(&self, cmd: &str) -> Vec<(String, Instant)> {
        self.calls.lock().unwrap().iter().filter(|c| c.1 == cmd).map(|c| (c.0.clone(), c.2)).collect()
    }
}

#[async_trait::async_trait]
impl ProbeExec for FakeExec {
    async fn exec_sync(&self, container_id: &str, cmd: &[String], _timeout: Duration) -> Result<ExecOutput, ExecError> {
        self.calls.lock().unwrap().push((container_id.into(), cmd[0].clone(), Instant::now()));
        let mut script = self.script.lock().unwrap();
        let q = script.get_mut(&cmd[0]).expect("scripted command");
        if q.len() > 1 { q.pop_front().unwrap() } else { q.front().unwrap().clone() }
    }
}

fn exec_probe(cmd: &str) -> Probe {
    Probe { exec: Some(ExecAction { command: Some(vec![cmd.into()]) }), ..Default::default() }
}

fn pod(container: Container) -> Pod {
    let mut p = Pod::default();
    p.metadata.uid = Some("u1".into());
    p.metadata.name = Some("web-0".into());
    p.metadata.namespace = Some("shop".into());
    p.spec = Some(PodSpec { containers: vec![container], ..Default::default() });
    p
}

fn drain(rx: &mut UnboundedReceiver<ProbeEvent>) -> Vec<ProbeEvent> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        out.push(e);
    }
    out
}

fn kills(events: &[ProbeEvent]) -> Vec<(String, ProbeKind, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            ProbeEvent::Kill { container_id, kind, message, .. } => {
                Some((container_id.clone(), *kind, message.clone()))
            }
            _ => None,
        })
        .collect()
}

fn unhealthy(events: &[ProbeEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            ProbeEvent::Unhealthy { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

async fn sleep(secs: f64) {
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
}

#[tokio::test(start_paused = true)]
async fn liveness_kills_after_the_failure_threshold_and_waits_for_a_new_container() {
    let exec = Arc::new(FakeExec::default());
    exec.script("live", &[0, 1, 1, 0, 1, 1, 1]);
    let mut probe = exec_probe("live");
    probe.period_seconds = Some(5);
    probe.initial_delay_seconds = Some(3);
    let c = Container { name: "web".into(), liveness_probe: Some(probe), ..Default::default() };
    let (m, mut rx) = ProbeManager::new(exec.clone());
    let start = Instant::now();
    m.add_container(&pod(c), "web", "c1", "10.0.0.5");
    assert!(m.ready("u1", "web") && m.started("u1", "web"), "no readiness or startup probe");
    sleep(3.5 + 6.0 * 5.0).await;
    let times: Vec<u64> = exec.calls("live").iter().map(|(_, t)| (*t - start).as_secs()).collect();
    // 0 1 1 (two failures: not yet) 0 (streak reset) 1 1 1 -> killed at the 7th probe, then on hold.
    assert_eq!(times, vec![3, 8, 13, 18, 23, 28, 33]);
    let events = drain(&mut rx);
    assert_eq!(unhealthy(&events), vec!["Liveness probe failed: exit 1"; 5]);
    assert_eq!(
        kills(&events),
        vec![("c1".into(), ProbeKind::Liveness, "Container web failed liveness probe, will be restarted".into())]
    );
    sleep(60.0).await;
    assert_eq!(exec.calls("live").len(), 7, "on hold until the container is replaced");
}

#[tokio::test(start_paused = true)]
async fn a_new_container_id_restarts_the_probes_and_the_same_id_does_nothing() {
    let exec = Arc::new(FakeExec::default());
    exec.script("ready", &[0]);
    let mut probe = exec_probe("ready");
    probe.success_threshold = Some(2);
    let p = pod(Container { name: "web".into(), readiness_probe: Some(probe), ..Default::default() });
    let (m, mut rx) = ProbeManager::new(exec.clone());
    m.add_container(&p, "web", "c1", "");
    assert!(!m.ready("u1", "web"), "readiness starts false");
    sleep(5.0).await;
    assert!(!m.ready("u1", "web"), "one success of two");
    sleep(10.0).await;
    assert!(m.ready("u1", "web"));
    m.add_container(&p, "web", "c1", "");
    assert!(m.ready("u1", "web"), "same container: unchanged");
    m.add_container(&p, "web", "c2", "");
    assert!(!m.ready("u1", "web"), "a new container starts unready");
    assert_eq!(m.probed_container_id("u1", "web").as_deref(), Some("c2"));
    sleep(15.0).await;
    assert!(m.ready("u1", "web"));
    let ids: Vec<String> = exec.calls("ready").into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, vec!["c1", "c1", "c2", "c2"]);
    let changed: Vec<(String, bool)> = drain(&mut rx)
        .into_iter()
        .filter_map(|e| match e {
            ProbeEvent::Changed { container_id, kind: ProbeKind::Readiness, success, pod, .. } => {
                assert_eq!((pod.namespace.as_str(), pod.name.as_str()), ("shop", "web-0"));
                Some((container_id, success))
            }
            _ => None,
        })
        .collect();
    assert_eq!(changed, vec![("c1".into(), true), ("c2".into(), true)]);
}

#[tokio::test(start_paused = true)]
async fn readiness_failures_make_unready_without_a_kill() {
    let exec = Arc::new(FakeExec::default());
    exec.script("ready", &[0, 1, 1, 1, 0]);
    let p = pod(Container { name: "web".into(), readiness_probe: Some(exec_probe("ready")), ..Default::default() });
    let (m, mut rx) = ProbeManager::new(exec.clone());
    m.add_container(&p, "web", "c1", "");
    sleep(1.0).await;
    assert!(m.ready("u1", "web"));
    sleep(20.0).await;
    assert!(m.ready("u1", "web"), "two failures of three");
    sleep(10.0).await;
    assert!(!m.ready("u1", "web"));
    sleep(10.0).await;
    assert!(m.ready("u1", "web"));
    let events = drain(&mut rx);
    assert!(kills(&events).is_empty());
    assert_eq!(unhealthy(&events), vec!["Readiness probe failed: exit 1"; 3]);
}

#[tokio::test(start_paused = true)]
async fn startup_gates_liveness_and_readiness() {
    let exec = Arc::new(FakeExec::default());
    exec.script("start", &[1, 1, 0]);
    exec.script("live", &[0]);
    exec.script("ready", &[0]);
    let mut startup = exec_probe("start");
    startup.period_seconds = Some(2);
    startup.failure_threshold = Some(5);
    let c = Container {
        name: "web".into(),
        startup_probe: Some(startup),
        liveness_probe: Some(exec_probe("live")),
        readiness_probe: Some(exec_probe("ready")),
        ..Default::default()
    };
    let (m, mut rx) = ProbeManager::new(exec.clone());
    let start = Instant::now();
    m.add_container(&pod(c), "web", "c1", "");
    sleep(3.0).await;
    assert!(!m.started("u1", "web") && !m.ready("u1", "web"));
    assert!(exec.calls("live").is_empty() && exec.calls("ready").is_empty(), "gated");
    sleep(2.0).await;
    assert!(m.started("u1", "web"), "started at the third startup probe (t=4)");
    sleep(20.0).await;
    assert!(m.ready("u1", "web"));
    assert_eq!(exec.calls("start").len(), 3, "the startup probe stops once it succeeded");
    let first_live = (exec.calls("live")[0].1 - start).as_secs();
    assert_eq!(first_live, 10, "the first period after the start");
    let events = drain(&mut rx);
    assert_eq!(unhealthy(&events), vec!["Startup probe failed: exit 1"; 2]);
    assert!(kills(&events).is_empty());
}

#[tokio::test(start_paused = true)]
async fn startup_failure_kills() {
    let exec = Arc::new(FakeExec::default());
    exec.script("start", &[1]);
    let mut startup = exec_probe("start");
    startup.failure_threshold = Some(2);
    startup.termination_grace_period_seconds = Some(5);
    let (m, mut rx) = ProbeManager::new(exec.clone());
    m.add_container(
        &pod(Container { name: "web".into(), startup_probe: Some(startup), ..Default::default() }),
        "web",
        "c1",
        "",
    );
    sleep(30.0).await;
    let events = drain(&mut rx);
    assert_eq!(
        kills(&events),
        vec![("c1".into(), ProbeKind::Startup, "Container web failed startup probe, will be restarted".into())]
    );
    assert!(events.iter().any(|e| matches!(e, ProbeEvent::Kill { grace_period: Some(5), .. })));
    assert_eq!(exec.calls("start").len(), 2);
    assert!(!m.started("u1", "web"));
}

#[tokio::test(start_paused = true)]
async fn exec_errors_do_not_count_and_timeouts_do() {
    let exec = Arc::new(FakeExec::default());
    exec.script_raw(
        "live",
        vec![
            Err(ExecError::Failed("container not found".into())),
            Err(ExecError::Failed("container not found".into())),
            Err(ExecError::Failed("container not found".into())),
            Err(ExecError::Timeout),
        ],
    );
    let mut probe = exec_probe("live");
    probe.failure_threshold = Some(1);
    let (m, mut rx) = ProbeManager::new(exec.clone());
    m.add_container(
        &pod(Container { name: "web".into(), liveness_probe: Some(probe), ..Default::default() }),
        "web",
        "c1",
        "",
    );
    sleep(25.0).await;
    let events = drain(&mut rx);
    assert!(kills(&events).is_empty(), "errors are not failures");
    assert_eq!(unhealthy(&events), vec!["Liveness probe errored: container not found"; 3]);
    sleep(10.0).await;
    let events = drain(&mut rx);
    assert_eq!(unhealthy(&events), vec!["Liveness probe failed: command \"live\" timed out"]);
    assert_eq!(kills(&events).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn removing_stops_the_workers() {
    let exec = Arc::new(FakeExec::default());
    exec.script("ready", &[0]);
    let p = pod(Container { name: "web".into(), readiness_probe: Some(exec_probe("ready")), ..Default::default() });
    let (m, _rx) = ProbeManager::new(exec.clone());
    m.add_container(&p, "web", "c1", "");
    sleep(15.0).await;
    assert_eq!(exec.calls("ready").len(), 2);
    m.remove_pod("u1");
    sleep(60.0).await;
    assert_eq!(exec.calls("ready").len(), 2);
    assert!(m.ready("u1", "web"), "no probes known: the caller decides by the container's state");
    m.add_container(&p, "web", "c2", "");
    sleep(1.0).await;
    assert_eq!(exec.calls("ready").len(), 3, "the first probe runs at once");
    m.remove_container("u1", "web");
    sleep(60.0).await;
    assert_eq!(exec.calls("ready").len(), 3);
}

#[tokio::test(start_paused = true)]
async fn per_container_id_answers_from_the_spec() {
    let exec = Arc::new(FakeExec::default());
    exec.script("ready", &[0]);
    exec.script("start", &[0]);
    let c = Container {
        name: "web".into(),
        readiness_probe: Some(exec_probe("ready")),
        startup_probe: Some(exec_probe("start")),
        ..Default::default()
    };
    let p = pod(c);
    let (m, _rx) = ProbeManager::new(exec.clone());
    assert!(!m.container_ready(&p, "web", "c1") && !m.container_started(&p, "web", "c1"), "not told of it yet");
    assert!(m.ready("u1", "web"), "the plain query knows nothing of the spec");
    m.add_container(&p, "web", "c1", "");
    sleep(1.0).await;
    assert!(m.container_started(&p, "web", "c1") && m.container_ready(&p, "web", "c1"));
    assert!(!m.container_ready(&p, "web", "c2"), "another container of that name");
    let plain = pod(Container { name: "web".into(), ..Default::default() });
    assert!(m.container_ready(&plain, "web", "c9") && m.container_started(&plain, "web", "c9"));
}

#[tokio::test(start_paused = true)]
async fn the_initial_delay_counts_from_the_container_start() {
    let exec = Arc::new(FakeExec::default());
    exec.script("ready", &[0]);
    let mut probe = exec_probe("ready");
    probe.initial_delay_seconds = Some(30);
    let p = pod(Container { name: "web".into(), readiness_probe: Some(probe), ..Default::default() });
    let (m, _rx) = ProbeManager::new(exec.clone());
    let started = std::time::SystemTime::now() - Duration::from_secs(20);
    let start = Instant::now();
    m.add_container_started_at(&p, "web", "c1", "", started);
    sleep(11.0).await;
    assert!(m.ready("u1", "web"));
    let first = (exec.calls("ready")[0].1 - start).as_secs();
    assert!((9..=10).contains(&first), "30 s after the start, 20 s of which had passed: {first}");
    m.add_container_started_at(&p, "web", "c2", "", std::time::SystemTime::now() - Duration::from_secs(3600));
    sleep(0.5).await;
    assert_eq!(exec.calls("ready").last().unwrap().0, "c2", "long past the delay: probed at once");
}
