//! The kubelet's own metrics, in the Prometheus text format at `/metrics`: counters and
//! gauges the pod sync updates through a shared [`Metrics`].

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Upstream's buckets for kubelet_pod_start_duration_seconds.
pub const POD_START_BUCKETS: [f64; 25] =
    [0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0, 240.0, 300.0, 360.0, 480.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0];

#[derive(Debug, Default)]
struct Histogram {
    /// Per bucket (not cumulative), plus one for +Inf.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// Shared between the server and the pod sync (in an `Arc`).
#[derive(Debug)]
pub struct Metrics {
    node_name: String,
    running_pods: AtomicI64,
    running_containers: AtomicI64,
    pod_start: Mutex<Histogram>,
    runtime_operations: Mutex<BTreeMap<String, u64>>,
    runtime_errors: Mutex<BTreeMap<String, u64>>,
}

impl Metrics {
    pub fn new(node_name: impl Into<String>) -> Metrics {
        Metrics {
            node_name: node_name.into(),
            running_pods: AtomicI64::new(0),
            running_containers: AtomicI64::new(0),
            pod_start: Mutex::new(Histogram { counts: vec![0; POD_START_BUCKETS.len() + 1], ..Default::default() }),
            runtime_operations: Mutex::new(BTreeMap::new()),
            runtime_errors: Mutex::new(BTreeMap::new()),
        }
    }

    /// Pods with a running sandbox.
    pub fn set_running_pods(&self, n: i64) {
        self.running_pods.store(n, Ordering::Relaxed);
    }

    pub fn set_running_containers(&self, n: i64) {
        self.running_containers.store(n, Ordering::Relaxed);
    }

    /// From the pod's creation to all its containers running, as upstream measures it.
    pub fn observe_pod_start(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let mut h = self.pod_start.lock().unwrap();
        let i = POD_START_BUCKETS.iter().position(|le| secs <= *le).unwrap_or(POD_START_BUCKETS.len());
        h.counts[i] += 1;
        h.sum += secs;
        h.count += 1;
    }

    /// One CRI call of `operation` (e.g. `create_container`), failed or not.
    pub fn runtime_operation(&self, operation: &str, failed: bool) {
        *self.runtime_operations.lock().unwrap().entry(operation.to_string()).or_default() += 1;
        if failed {
            *self.runtime_errors.lock().unwrap().entry(operation.to_string()).or_default() += 1;
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# HELP kubelet_node_name The node's name. The count is always 1.\n# TYPE kubelet_node_name gauge");
        let _ = writeln!(s, "kubelet_node_name{{node=\"{}\"}} 1", escape(&self.node_name));
        let _ = writeln!(s, "# HELP kubelet_running_pods Number of pods that have a running pod sandbox\n# TYPE kubelet_running_pods gauge");
        let _ = writeln!(s, "kubelet_running_pods {}", self.running_pods.load(Ordering::Relaxed));
        let _ = writeln!(s, "# HELP kubelet_running_containers Number of containers currently running\n# TYPE kubelet_running_containers gauge");
        let _ = writeln!(s, "kubelet_running_containers{{container_state=\"running\"}} {}", self.running_containers.load(Ordering::Relaxed));
        {
            let h = self.pod_start.lock().unwrap();
            let _ = writeln!(s, "# HELP kubelet_pod_start_duration_seconds Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run\n# TYPE kubelet_pod_start_duration_seconds histogram");
            let mut cumulative = 0;
            for (i, le) in POD_START_BUCKETS.iter().enumerate() {
                cumulative += h.counts[i];
                let _ = writeln!(s, "kubelet_pod_start_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}");
            }
            cumulative += h.counts[POD_START_BUCKETS.len()];
            let _ = writeln!(s, "kubelet_pod_start_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}");
            let _ = writeln!(s, "kubelet_pod_start_duration_seconds_sum {}", h.sum);
            let _ = writeln!(s, "kubelet_pod_start_duration_seconds_count {}", h.count);
        }
        for (name, help, map) in [
            ("kubelet_runtime_operations_total", "Cumulative number of runtime operations by operation type.", &self.runtime_operations),
            ("kubelet_runtime_operations_errors_total", "Cumulative number of runtime operation errors by operation type.", &self.runtime_errors),
        ] {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter");
            for (op, n) in map.lock().unwrap().iter() {
                let _ = writeln!(s, "{name}{{operation_type=\"{}\"}} {n}", escape(op));
            }
        }
        s
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new("node-a");
        m.set_running_pods(2);
        m.set_running_containers(3);
        m.observe_pod_start(Duration::from_millis(700));
        m.observe_pod_start(Duration::from_secs(5000));
        m.runtime_operation("create_container", false);
        m.runtime_operation("create_container", true);
        let text = m.render();
        assert!(text.contains("kubelet_node_name{node=\"node-a\"} 1\n"));
        assert!(text.contains("kubelet_running_pods 2\n"));
        assert!(text.contains("kubelet_running_containers{container_state=\"running\"} 3\n"));
        assert!(text.contains("kubelet_pod_start_duration_seconds_bucket{le=\"0.5\"} 0\n"));
        assert!(text.contains("kubelet_pod_start_duration_seconds_bucket{le=\"1\"} 1\n"));
        assert!(text.contains("kubelet_pod_start_duration_seconds_bucket{le=\"3600\"} 1\n"));
        assert!(text.contains("kubelet_pod_start_duration_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("kubelet_pod_start_duration_seconds_count 2\n"));
        assert!(text.contains("kubelet_runtime_operations_total{operation_type=\"create_container\"} 2\n"));
        assert!(text.contains("kubelet_runtime_operations_errors_total{operation_type=\"create_container\"} 1\n"));
    }
}
