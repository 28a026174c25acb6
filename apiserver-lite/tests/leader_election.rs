//! Leader election for the control loops: candidates on one in-process server (one leads;
//! a leader that cannot renew stops acting and another takes over; a clean release hands
//! over at once; writes over a changed lease get 409), then real processes: two API servers
//! on one etcd run one controller manager between them and fail over when the leader's
//! process is killed, and the controller manager and scheduler run as processes of their own
//! against an API server that runs neither.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use apiserver_lite::auth::authn::UserInfo;
use apiserver_lite::leader_election::{self, Attempt, LeaderElectionConfig, LeaderElector};
use common::etcd::EtcdProcess;
use common::{eventually, wait_for, Kubectl, ServerProcess, TestServer};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use tower::ServiceExt;

/// A client of the in-process router whose connection the test can cut (every request then
/// fails, as when the API server is unreachable).
fn cuttable_client(app: axum::Router, cut: Arc<AtomicBool>) -> kube::Client {
    let user = UserInfo::new("system:kube-controller-manager", &["system:masters", "system:authenticated"]);
    let service = tower::service_fn(move |mut req: axum::http::Request<kube::client::Body>| {
        let (app, cut, user) = (app.clone(), cut.clone(), user.clone());
        async move {
            if cut.load(Ordering::SeqCst) {
                return Err::<axum::response::Response, tower::BoxError>("connection cut by the test".into());
            }
            req.extensions_mut().insert(user);
            Ok(app.oneshot(req).await.expect("the router is infallible"))
        }
    });
    kube::Client::new(service, "default")
}

/// A client whose requests reach the server but whose answers the test can lose (as when a
/// request is cancelled after it was sent).
fn lossy_client(app: axum::Router, lose: Arc<AtomicBool>) -> kube::Client {
    let user = UserInfo::new("system:kube-controller-manager", &["system:masters", "system:authenticated"]);
    let service = tower::service_fn(move |mut req: axum::http::Request<kube::client::Body>| {
        let (app, lose, user) = (app.clone(), lose.clone(), user.clone());
        async move {
            req.extensions_mut().insert(user);
            let response = app.oneshot(req).await.expect("the router is infallible");
            if lose.load(Ordering::SeqCst) {
                return Err::<axum::response::Response, tower::BoxError>("answer lost by the test".into());
            }
            Ok(response)
        }
    });
    kube::Client::new(service, "default")
}

fn short(name: &str) -> LeaderElectionConfig {
    let mut c = LeaderElectionConfig::new(name, "test-component");
    c.lease_duration = Duration::from_secs(2);
    c.renew_deadline = Duration::from_secs(1);
    c.retry_period = Duration::from_millis(200);
    c
}

/// Set while the candidate's work runs (the work is dropped when leadership ends).
struct Acting(Arc<AtomicBool>);

impl Acting {
    fn new(flag: Arc<AtomicBool>) -> Acting {
        flag.store(true, Ordering::SeqCst);
        Acting(flag)
    }
}

impl Drop for Acting {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// A candidate running `leader_election::run` whose work just marks it acting.
struct Candidate {
    identity: String,
    acting: Arc<AtomicBool>,
    cut: Arc<AtomicBool>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Candidate {
    fn start(s: &TestServer, config: LeaderElectionConfig) -> Candidate {
        let (acting, cut) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let identity = config.identity.clone();
        let client = cuttable_client(s.app.clone(), cut.clone());
        let flag = acting.clone();
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let task = tokio::spawn(leader_election::run(client, config, shutdown, move || {
            let flag = flag.clone();
            async move {
                let _acting = Acting::new(flag);
                std::future::pending::<()>().await
            }
        }));
        Candidate { identity, acting, cut, stop, task }
    }

    fn acting(&self) -> bool {
        self.acting.load(Ordering::SeqCst)
    }
}

/// Watches two candidates and notes if both ever act at once.
fn overlap_monitor(a: &Candidate, b: &Candidate) -> Arc<AtomicBool> {
    let overlap = Arc::new(AtomicBool::new(false));
    let (fa, fb, seen) = (a.acting.clone(), b.acting.clone(), overlap.clone());
    tokio::spawn(async move {
        loop {
            if fa.load(Ordering::SeqCst) && fb.load(Ordering::SeqCst) {
                seen.store(true, Ordering::SeqCst);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    overlap
}

async fn lease(s: &TestServer, name: &str) -> Value {
    let (code, lease) = s.get(&format!("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{name}")).await;
    assert!(code.is_success(), "{code} {lease}");
    lease
}

async fn leader_events(s: &TestServer) -> Vec<(String, String)> {
    let (_, events) = s.get("/api/v1/namespaces/kube-system/events").await;
    events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reason"] == "LeaderElection")
        .map(|e| (e["message"].as_str().unwrap_or("").to_string(), e["involvedObject"]["kind"].as_str().unwrap_or("").to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_candidate_leads_and_another_takes_over_when_the_leader_cannot_renew() {
    let s = TestServer::new().await;
    let a = Candidate::start(&s, short("ctl"));
    let b = Candidate::start(&s, short("ctl"));
    let overlap = overlap_monitor(&a, &b);
    let (identity, _) = a.identity.split_once('_').expect("<hostname>_<uuid>");
    assert!(!identity.is_empty());
    assert!(uuid::Uuid::parse_str(a.identity.rsplit_once('_').unwrap().1).is_ok(), "{}", a.identity);

    eventually("a leader", 10, || async { if a.acting() || b.acting() { Ok(()) } else { Err("none".to_string()) } }).await;
    let (leader, standby) = if a.acting() { (&a, &b) } else { (&b, &a) };
    // Longer than a lease: the leader keeps renewing, the standby keeps waiting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(leader.acting() && !standby.acting());
    let l = lease(&s, "ctl").await;
    assert_eq!(l["spec"]["holderIdentity"], leader.identity.as_str(), "{l}");
    assert_eq!(l["spec"]["leaseDurationSeconds"], 2);
    assert_eq!(l["spec"]["leaseTransitions"], 0);
    assert!(l["spec"]["renewTime"].as_str().unwrap() > l["spec"]["acquireTime"].as_str().unwrap(), "renewed since acquired: {l}");
    assert!(l["spec"]["renewTime"].as_str().unwrap().contains('.'), "a MicroTime: {l}");

    // The leader loses the API server: it stops acting within its renew deadline, and the
    // standby takes over once the lease has gone unrenewed for its duration.
    leader.cut.store(true, Ordering::SeqCst);
    eventually("the standby takes over", 15, || async { if standby.acting() { Ok(()) } else { Err(format!("leader acting: {}", leader.acting())) } }).await;
    assert!(!leader.acting(), "the old leader stopped acting");
    assert!(!overlap.load(Ordering::SeqCst), "both acted at once");
    let l = lease(&s, "ctl").await;
    assert_eq!(l["spec"]["holderIdentity"], standby.identity.as_str(), "{l}");
    assert_eq!(l["spec"]["leaseTransitions"], 1, "{l}");

    let events = leader_events(&s).await;
    for id in [&leader.identity, &standby.identity] {
        assert!(events.contains(&(format!("{id} became leader"), "Lease".to_string())), "{events:?}");
    }
    // Back on the network, the old leader waits as a standby.
    leader.cut.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(standby.acting() && !leader.acting());
    assert!(!overlap.load(Ordering::SeqCst));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_shuts_down_releases_the_lease_and_the_standby_takes_over_at_once() {
    let s = TestServer::new().await;
    // A long lease: waiting it out would take 30 s.
    let long = || {
        let mut c = short("sched");
        c.lease_duration = Duration::from_secs(30);
        c.renew_deadline = Duration::from_secs(20);
        c
    };
    let mut a = Candidate::start(&s, long());
    eventually("a leads", 10, || async { if a.acting() { Ok(()) } else { Err("not yet".to_string()) } }).await;
    let b = Candidate::start(&s, long());
    let overlap = overlap_monitor(&a, &b);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!b.acting());

    let released_at = Instant::now();
    a.stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), &mut a.task).await.expect("the leader stops").unwrap();
    assert!(!a.acting());
    eventually("b takes over", 5, || async { if b.acting() { Ok(()) } else { Err("not yet".to_string()) } }).await;
    assert!(released_at.elapsed() < Duration::from_secs(10), "b waited for the lease to expire instead of taking the released one");
    assert!(!overlap.load(Ordering::SeqCst));
    let l = lease(&s, "sched").await;
    assert_eq!(l["spec"]["holderIdentity"], b.identity.as_str(), "{l}");
    assert_eq!(l["spec"]["leaseTransitions"], 1, "{l}");
    let events = leader_events(&s).await;
    assert!(events.contains(&(format!("{} stopped leading", a.identity), "Lease".to_string())), "{events:?}");
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_over_a_changed_lease_get_409_and_the_candidate_stands_down() {
    let s = TestServer::new().await;
    let client = || cuttable_client(s.app.clone(), Arc::new(AtomicBool::new(false)));
    let mut a = LeaderElector::new(client(), short("lock"));
    assert_eq!(a.try_acquire_or_renew().await.unwrap(), Attempt::Leading);
    let api: Api<Lease> = Api::namespaced(client(), "kube-system");
    let first = api.get("lock").await.unwrap();
    assert_eq!(a.try_acquire_or_renew().await.unwrap(), Attempt::Leading, "renewed");
    assert!(a.is_leader());

    // The optimistic concurrency the election rests on: a write with an old resourceVersion is refused.
    let mut stale = first.clone();
    stale.spec.as_mut().unwrap().holder_identity = Some("thief".into());
    match api.replace("lock", &PostParams::default(), &stale).await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 409, "{e:?}"),
        other => panic!("a stale write must get 409: {other:?}"),
    }
    // Another candidate takes the lease over (as after an expiry): a's renewal over the lease
    // it last wrote gets 409, it reads the lease and stands down.
    let mut taken = api.get("lock").await.unwrap();
    taken.spec.as_mut().unwrap().holder_identity = Some("thief".into());
    api.replace("lock", &PostParams::default(), &taken).await.unwrap();
    assert_eq!(a.try_acquire_or_renew().await.unwrap(), Attempt::HeldBy("thief".into()));
    assert!(!a.is_leader());

    // Candidates racing for a new lease: exactly one creates it.
    let mut racers: Vec<LeaderElector> = (0..6).map(|_| LeaderElector::new(client(), short("race"))).collect();
    let results = futures_util::future::join_all(racers.iter_mut().map(|r| r.try_acquire_or_renew())).await;
    let results: Vec<Attempt> = results.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(results.iter().filter(|r| **r == Attempt::Leading).count(), 1, "{results:?}");
    assert_eq!(racers.iter().filter(|r| r.is_leader()).count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_leader_election_a_component_acts_at_once_and_takes_no_lease() {
    use apiserver_lite::control_plane::{self, Component, ComponentOptions};
    let s = TestServer::new().await;
    let options = ComponentOptions { leader_elect: false, ..Default::default() };
    let client = apiserver_lite::controllers::in_process_client(s.app.clone(), Component::Scheduler.user());
    tokio::spawn(control_plane::run(Component::Scheduler, client, control_plane::in_process(s.app.clone(), Component::Scheduler), options, std::future::pending()));
    let resources = json!({"cpu": "4", "memory": "8Gi", "pods": "110"});
    let (code, mut node) = s.post("/api/v1/nodes", json!({"metadata": {"name": "n1"}})).await;
    assert!(code.is_success(), "{node}");
    node["status"] = json!({"capacity": resources, "allocatable": resources, "conditions": [{"type": "Ready", "status": "True"}]});
    let (code, body) = s.put("/api/v1/nodes/n1/status", node).await;
    assert!(code.is_success(), "{body}");
    let (code, body) = s.post("/api/v1/namespaces/default/pods", common::pod("p", json!({}))).await;
    assert!(code.is_success(), "{body}");
    eventually("the pod bound", 10, || async {
        let (_, p) = s.get("/api/v1/namespaces/default/pods/p").await;
        if p["spec"]["nodeName"] == "n1" { Ok(()) } else { Err(p.to_string()) }
    })
    .await;
    let (code, _) = s.get("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler").await;
    assert_eq!(code, 404, "no lease without --leader-elect");
}

// Real processes.

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Leader election fast enough for a test: a 4 s lease.
const FAST_ELECTION: [&str; 3] = ["--leader-elect-lease-duration=4s", "--leader-elect-renew-deadline=3s", "--leader-elect-retry-period=500ms"];

fn holder(k: &Kubectl, lease: &str) -> String {
    k.run(&["get", "lease", "-n", "kube-system", lease, "-o", "jsonpath={.spec.holderIdentity}"]).stdout
}

/// (message, source component) of the events with `reason` in `ns`.
fn events(k: &Kubectl, ns: &str, reason: &str) -> Vec<(String, String)> {
    let list: Value = serde_json::from_str(&k.ok(&["get", "events", "-n", ns, "-o", "json"])).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reason"] == reason)
        .map(|e| (e["message"].as_str().unwrap_or("").to_string(), e["source"]["component"].as_str().unwrap_or("").to_string()))
        .collect()
}

fn names(k: &Kubectl, what: &str) -> Vec<String> {
    k.ok(&["get", what, "-l", "app=web", "-o", "name"]).lines().map(str::to_string).collect()
}

#[test]
fn two_servers_on_one_etcd_run_one_controller_manager_and_fail_over_when_its_process_dies() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(dir.path());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    drop(rt.block_on(etcd.connect("/probe")));
    let mut args = vec!["--storage", "etcd", "--etcd-servers", etcd.endpoint.as_str()];
    args.extend(FAST_ELECTION);
    let a = ServerProcess::start(&dir.path().join("a"), &args);
    copy_dir(&dir.path().join("a/pki"), &dir.path().join("b/pki"));
    let b = ServerProcess::start(&dir.path().join("b"), &args);
    let (ka, kb) = (Kubectl::new(&a.kubeconfig()), Kubectl::new(&b.kubeconfig()));

    let mut holders = Vec::new();
    for lease in ["kube-controller-manager", "kube-scheduler"] {
        wait_for(&format!("{lease} has a holder"), 20, || if holder(&ka, lease).is_empty() { Err("none".into()) } else { Ok(()) });
        holders.push(holder(&ka, lease));
    }
    let cm = holders[0].clone();
    // Each server logs the identity it campaigns under: the holder is one of the two.
    let (leader_is_a, leader_is_b) = (a.log().contains(&cm), b.log().contains(&cm));
    assert!(leader_is_a ^ leader_is_b, "{cm} in a's log: {leader_is_a}, in b's: {leader_is_b}");

    assert!(ka.ok(&["create", "deployment", "web", "--image=nginx:1.27", "--replicas=3"]).contains("created"));
    wait_for("3 pods", 20, || {
        let pods = names(&kb, "pods");
        if pods.len() == 3 { Ok(()) } else { Err(format!("{pods:?}")) }
    });
    // Settled: no second controller made more.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(names(&kb, "pods").len(), 3);
    assert_eq!(names(&kb, "replicasets").len(), 1, "one ReplicaSet");
    wait_for("the controller manager's LeaderElection event", 10, || {
        let events = events(&ka, "kube-system", "LeaderElection");
        if events.contains(&(format!("{cm} became leader"), "kube-controller-manager".to_string())) { Ok(()) } else { Err(format!("{events:?}")) }
    });

    // kill -9 the leader's process: the other server's controller manager takes the lease
    // and acts (a deleted pod is replaced).
    let (mut leader, survivor, k) = if leader_is_a { (a, b, kb) } else { (b, a, ka) };
    leader.kill();
    wait_for("the other server takes the lease", 30, || {
        let h = holder(&k, "kube-controller-manager");
        if !h.is_empty() && h != cm { Ok(()) } else { Err(h) }
    });
    let new = holder(&k, "kube-controller-manager");
    assert!(survivor.log().contains(&new), "the survivor holds it");
    assert_eq!(k.ok(&["get", "lease", "-n", "kube-system", "kube-controller-manager", "-o", "jsonpath={.spec.leaseTransitions}"]), "1");
    let victim = names(&k, "pods").remove(0);
    k.ok(&["delete", &victim, "--wait=false"]);
    wait_for("the deleted pod replaced", 20, || {
        let pods = names(&k, "pods");
        if pods.len() == 3 && !pods.contains(&victim) { Ok(()) } else { Err(format!("{pods:?}")) }
    });
    assert_eq!(names(&k, "replicasets").len(), 1);
}

/// A child process killed (by PID) on drop, its output in a log file.
struct Child {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Child {
    fn start(args: &[&str], log: std::path::PathBuf) -> Child {
        let file = std::fs::File::create(&log).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_apiserver-lite")).args(args).stdout(file.try_clone().unwrap()).stderr(file).spawn().expect("start apiserver-lite");
        Child { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_manager_and_the_scheduler_run_as_processes_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("server"), &["--controllers=false", "--scheduler=false"]);
    let kubeconfig = server.kubeconfig();
    let client = apiserver_lite::controllers::kubeconfig_client(&kubeconfig).await.unwrap();
    // A Ready node with room, as a kubelet registers it.
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}}})).unwrap();
    let mut node = nodes.create(&PostParams::default(), &node).await.unwrap();
    let resources = json!({"cpu": "4", "memory": "8Gi", "pods": "110"});
    node.status = Some(serde_json::from_value(json!({
        "capacity": resources, "allocatable": resources,
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status"}],
    })).unwrap());
    nodes.replace_status("n1", &PostParams::default(), &node).await.unwrap();

    let k = Kubectl::new(&kubeconfig);
    k.ok(&["create", "deployment", "web", "--image=nginx:1.27", "--replicas=2"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(names(&k, "replicasets").is_empty(), "the server alone runs no controllers");
    for lease in ["kube-controller-manager", "kube-scheduler"] {
        assert!(!k.run(&["get", "lease", "-n", "kube-system", lease]).ok, "no {lease} lease without the component");
    }

    let kc = kubeconfig.to_str().unwrap();
    let mut cm_args = vec!["controller-manager", "--kubeconfig", kc, "--leader-elect=true", "--node-monitor-grace-period=50s"];
    cm_args.extend(FAST_ELECTION);
    let cm = Child::start(&cm_args, dir.path().join("cm.log"));
    let mut sched_args = vec!["scheduler", "--kubeconfig", kc];
    sched_args.extend(FAST_ELECTION);
    let sched = Child::start(&sched_args, dir.path().join("sched.log"));

    let k2 = &k;
    eventually("two pods bound to n1", 30, || async move {
        let out = k2.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.spec.nodeName}{\"\\n\"}{end}"]);
        let bound: Vec<&str> = out.lines().collect();
        if bound == ["n1", "n1"] { Ok(()) } else { Err(out) }
    })
    .await;
    assert_eq!(names(&k, "replicasets").len(), 1);
    for (lease, log) in [("kube-controller-manager", cm.log()), ("kube-scheduler", sched.log())] {
        let h = holder(&k, lease);
        assert!(!h.is_empty() && log.contains(&h), "{lease} held by {h:?}; log: {log}");
    }
    // Each event is written after what it tells of (the lease taken, the pod bound).
    eventually("the LeaderElection and Scheduled events", 10, || async move {
        let elected = events(k2, "kube-system", "LeaderElection");
        for (lease, source) in [("kube-controller-manager", "kube-controller-manager"), ("kube-scheduler", "default-scheduler")] {
            if !elected.contains(&(format!("{} became leader", holder(k2, lease)), source.to_string())) {
                return Err(format!("{lease}: {elected:?}"));
            }
        }
        let scheduled = events(k2, "default", "Scheduled");
        if scheduled.iter().filter(|(m, _)| m.ends_with(" to n1")).count() == 2 { Ok(()) } else { Err(format!("{scheduled:?}")) }
    })
    .await;
    // The controller manager publishes the CA its kubeconfig trusts.
    let ca = std::fs::read_to_string(dir.path().join("server/pki/ca.crt")).unwrap();
    let (k2, ca) = (&k, &ca);
    eventually("kube-root-ca.crt with the cluster CA", 10, || async move {
        let out = k2.run(&["get", "configmap", "kube-root-ca.crt", "-o", "jsonpath={.data.ca\\.crt}"]);
        let got = out.stdout.clone();
        if got.trim() == ca.trim() { Ok(()) } else { Err(got) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_last_renewal_answer_was_lost_still_releases_the_lease() {
    let s = TestServer::new().await;
    let lose = Arc::new(AtomicBool::new(false));
    let mut a = LeaderElector::new(lossy_client(s.app.clone(), lose.clone()), short("lossy"));
    assert_eq!(a.try_acquire_or_renew().await.unwrap(), Attempt::Leading);
    // The renewal reaches the server but its answer does not come back (a shutdown cancelled
    // it in flight): the lease's resourceVersion moved on without the leader knowing.
    lose.store(true, Ordering::SeqCst);
    assert!(a.try_acquire_or_renew().await.is_err());
    lose.store(false, Ordering::SeqCst);
    assert!(a.is_leader());
    a.release().await;
    let l = lease(&s, "lossy").await;
    assert_eq!(l["spec"]["holderIdentity"], "", "the lease must be released, not left to expire: {l}");
}
