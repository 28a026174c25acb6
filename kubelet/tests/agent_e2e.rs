//! End to end with the real kubectl against `kubelet-rs --apiserver` (root): pods from the
//! loopback registry run and behave as on a real cluster.

mod common;

use std::time::Duration;

use common::cluster::Cluster;

#[test]
#[ignore = "needs root"]
fn a_pod_from_the_registry_runs_and_kubectl_sees_it() {
    let cluster = Cluster::start();
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: hello\nspec:\n  containers:\n  - name: main\n    image: {}\n    command: [sh, -c, 'echo hello from kubelet-rs; sleep 3600']\n",
        cluster.busybox
    );
    cluster.kubectl.apply(&yaml);
    cluster.wait_phase("hello", "Running", Duration::from_secs(60));
    cluster.wait_for("the pod's log", Duration::from_secs(20), || cluster.kubectl.run(&["logs", "hello"]).stdout.contains("hello from kubelet-rs"));
    assert_eq!(cluster.pod_field("hello", "{.status.containerStatuses[0].ready}"), "true");
    let out = cluster.kubectl.ok(&["exec", "hello", "--", "cat", "/etc/hostname"]);
    assert_eq!(out.trim(), "hello");
    cluster.kubectl.ok(&["delete", "pod", "hello", "--wait=true", "--timeout=60s"]);
}

#[test]
#[ignore = "scratch"]
fn scratch_start() {
    let cluster = Cluster::start();
    println!("{}", cluster.kubectl.ok(&["get", "ns"]));
    println!("{}", cluster.kubectl.ok(&["version"]));
    std::thread::sleep(Duration::from_secs(3));
    println!("{}", cluster.log());
}
