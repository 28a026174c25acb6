//! The agent on containerd (root): `kubelet-rs --apiserver --container-runtime-endpoint`
//! drives a private containerd 1.6 through the same CRI calls, and kubectl sees the pod run,
//! its logs and exec, as with the built-in runtime.

mod common;

use std::time::Duration;

use common::cluster::{Cluster, Runtime};

#[test]
#[ignore = "needs root"]
fn pods_run_on_containerd() {
    test_support::containerd::require_containerd();
    let cluster = Cluster::start_with(Runtime::Containerd);
    let version = cluster.kubectl.ok(&["get", "node", common::cluster::NODE, "-o", "jsonpath={.status.nodeInfo.containerRuntimeVersion}"]);
    assert!(version.starts_with("containerd://"), "{version}");
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: on-containerd\nspec:\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: main\n    image: {}\n    command: [sh, -c, 'echo hello from containerd; sleep 3600']\n    readinessProbe: {{exec: {{command: ['true']}}, periodSeconds: 1}}\n",
        cluster.busybox
    );
    cluster.kubectl.apply(&yaml);
    cluster.wait_phase("on-containerd", "Running", Duration::from_secs(90));
    assert!(cluster.pod_field("on-containerd", "{.status.containerStatuses[0].containerID}").starts_with("containerd://"));
    cluster.wait_for("the pod to be Ready", Duration::from_secs(30), || cluster.pod_field("on-containerd", "{.status.containerStatuses[0].ready}") == "true");
    cluster.wait_for("the pod's log", Duration::from_secs(20), || cluster.kubectl.run(&["logs", "on-containerd"]).stdout.contains("hello from containerd"));
    assert_eq!(cluster.kubectl.ok(&["exec", "on-containerd", "--", "cat", "/etc/hostname"]).trim(), "on-containerd");
    cluster.kubectl.ok(&["delete", "pod", "on-containerd", "--wait=true", "--timeout=60s"]);
}
