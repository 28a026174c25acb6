//! The pod every create writes: a realistic Deployment-made pod of about 2 KB of JSON
//! (labels, annotations, owner reference, two containers with env, ports, probes, resources
//! and mounts), so storage and serialization costs resemble a real cluster's.

use serde_json::json;

pub fn pod(namespace: &str, name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/name": "web", "app.kubernetes.io/instance": "web-prod", "app.kubernetes.io/component": "frontend", "pod-template-hash": "7d9f8c6b5d", "tier": "frontend"},
            "annotations": {
                "kubectl.kubernetes.io/restartedAt": "2026-12-01T10:00:00Z",
                "prometheus.io/scrape": "true",
                "prometheus.io/port": "9090",
                "checksum/config": "3f2b0c8e9d1a4b7c6e5f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d"
            },
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f8c6b5d", "uid": "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f", "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {
            "containers": [
                {
                    "name": "web",
                    "image": "registry.example.com/team/web:1.27.3",
                    "imagePullPolicy": "IfNotPresent",
                    "args": ["--listen=:8080", "--metrics=:9090", "--log-level=info"],
                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}, {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}],
                    "env": [
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                        {"name": "DATABASE_URL", "value": "postgres://web@db.example.internal:5432/web"},
                        {"name": "CACHE_TTL_SECONDS", "value": "300"}
                    ],
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 5, "timeoutSeconds": 1},
                    "livenessProbe": {"httpGet": {"path": "/livez", "port": 8080}, "initialDelaySeconds": 10, "periodSeconds": 10},
                    "volumeMounts": [{"name": "config", "mountPath": "/etc/web", "readOnly": true}, {"name": "cache", "mountPath": "/var/cache/web"}]
                },
                {
                    "name": "log-shipper",
                    "image": "registry.example.com/infra/log-shipper:2.4.0",
                    "args": ["--input=/var/log/web", "--output=tcp://logs.example.internal:5170"],
                    "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}},
                    "volumeMounts": [{"name": "cache", "mountPath": "/var/log/web", "readOnly": true}]
                }
            ],
            "volumes": [{"name": "config", "configMap": {"name": "web-config"}}, {"name": "cache", "emptyDir": {"sizeLimit": "1Gi"}}],
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
            "terminationGracePeriodSeconds": 30,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 10001, "fsGroup": 10001}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn about_two_kilobytes_with_its_name() {
        let bytes = serde_json::to_vec(&pod("default", "bench-000001")).unwrap();
        assert!((1800..2600).contains(&bytes.len()), "{} bytes", bytes.len());
        let back: k8s_like::Meta = serde_json::from_slice(&bytes).unwrap();
        assert_eq!((back.metadata.name.as_str(), back.metadata.namespace.as_str()), ("bench-000001", "default"));
    }

    mod k8s_like {
        #[derive(serde::Deserialize)]
        pub struct Meta {
            pub metadata: Names,
        }
        #[derive(serde::Deserialize)]
        pub struct Names {
            pub name: String,
            pub namespace: String,
        }
    }
}
