//! The service environment variables Kubernetes gives every container: `<NAME>_SERVICE_HOST`,
//! `<NAME>_SERVICE_PORT[_<PORTNAME>]` and the Docker-links style `<NAME>_PORT...` for the
//! services of the pod's namespace (unless enableServiceLinks is false) and the API server's
//! `kubernetes` service in `default`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;

/// The namespace and name of the API server's own service, which every pod sees.
pub const MASTER_NAMESPACE: &str = "default";
pub const MASTER_SERVICE: &str = "kubernetes";

/// The services a pod in `namespace` gets variables for, by name: its namespace's (when
/// `links`) and `default/kubernetes`, which a same-named service of the pod's namespace
/// overrides. Services without a cluster IP (headless, ExternalName) have none.
pub fn visible_services(
    namespace: &str,
    links: bool,
    own: Vec<Service>,
    default_ns: Vec<Service>,
) -> Vec<Service> {
    let mut by_name: BTreeMap<String, Service> = BTreeMap::new();
    for service in default_ns
        .into_iter()
        .filter(|s| s.metadata.name.as_deref() == Some(MASTER_SERVICE))
    {
        by_name.insert(MASTER_SERVICE.to_string(), service);
    }
    if links {
        for service in own.into_iter().filter(|s| {
            s.metadata
                .namespace
                .as_deref()
                .is_none_or(|ns| ns == namespace)
        }) {
            by_name.insert(service.metadata.name.clone().unwrap_or_default(), service);
        }
    }
    by_name.into_values().filter(has_cluster_ip).collect()
}

fn has_cluster_ip(service: &Service) -> bool {
    let ip = service
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .unwrap_or("");
    !ip.is_empty() && ip != "None"
}

fn variable_name(name: &str) -> String {
    name.to_uppercase().replace('-', "_")
}

/// The variables of `services`, in order.
pub fn service_variables(services: &[Service]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for service in services {
        let Some(spec) = service.spec.as_ref() else {
            continue;
        };
        let ip = spec.cluster_ip.clone().unwrap_or_default();
        let ports = spec.ports.as_deref().unwrap_or_default();
        if ip.is_empty() || ip == "None" || ports.is_empty() {
            continue;
        }
        let prefix = variable_name(service.metadata.name.as_deref().unwrap_or_default());
        out.push((format!("{prefix}_SERVICE_HOST"), ip.clone()));
        out.push((format!("{prefix}_SERVICE_PORT"), ports[0].port.to_string()));
        for port in ports {
            if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((
                    format!("{prefix}_SERVICE_PORT_{}", variable_name(name)),
                    port.port.to_string(),
                ));
            }
        }
        let host = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.clone()
        };
        for (i, port) in ports.iter().enumerate() {
            let protocol = port
                .protocol
                .as_deref()
                .filter(|p| !p.is_empty())
                .unwrap_or("TCP");
            let url = format!("{}://{host}:{}", protocol.to_lowercase(), port.port);
            if i == 0 {
                out.push((format!("{prefix}_PORT"), url.clone()));
            }
            let port_prefix = format!("{prefix}_PORT_{}_{}", port.port, protocol.to_uppercase());
            out.push((format!("{port_prefix}_PROTO"), protocol.to_lowercase()));
            out.push((format!("{port_prefix}_PORT"), port.port.to_string()));
            out.push((format!("{port_prefix}_ADDR"), ip.clone()));
            out.push((port_prefix, url));
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};

    pub(crate) fn service(
        namespace: &str,
        name: &str,
        ip: &str,
        ports: &[(i32, Option<&str>)],
    ) -> Service {
        let mut s = Service::default();
        s.metadata.name = Some(name.into());
        s.metadata.namespace = Some(namespace.into());
        s.spec = Some(ServiceSpec {
            cluster_ip: Some(ip.into()),
            ports: Some(
                ports
                    .iter()
                    .map(|(port, name)| ServicePort {
                        port: *port,
                        name: name.map(str::to_string),
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        });
        s
    }

    #[test]
    fn web_with_http_and_443() {
        let vars: BTreeMap<String, String> = service_variables(&[service(
            "ns",
            "web",
            "10.0.0.5",
            &[(80, Some("http")), (443, None)],
        )])
        .into_iter()
        .collect();
        let expected: BTreeMap<String, String> = [
            ("WEB_SERVICE_HOST", "10.0.0.5"),
            ("WEB_SERVICE_PORT", "80"),
            ("WEB_SERVICE_PORT_HTTP", "80"),
            ("WEB_PORT", "tcp://10.0.0.5:80"),
            ("WEB_PORT_80_TCP", "tcp://10.0.0.5:80"),
            ("WEB_PORT_80_TCP_PROTO", "tcp"),
            ("WEB_PORT_80_TCP_PORT", "80"),
            ("WEB_PORT_80_TCP_ADDR", "10.0.0.5"),
            ("WEB_PORT_443_TCP", "tcp://10.0.0.5:443"),
            ("WEB_PORT_443_TCP_PROTO", "tcp"),
            ("WEB_PORT_443_TCP_PORT", "443"),
            ("WEB_PORT_443_TCP_ADDR", "10.0.0.5"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(vars, expected);
    }

    #[test]
    fn dashes_ipv6_and_headless() {
        let vars = service_variables(&[
            service("ns", "my-db", "fd00::5", &[(5432, Some("pg-main"))]),
            service("ns", "headless", "None", &[(80, None)]),
        ]);
        let vars: BTreeMap<String, String> = vars.into_iter().collect();
        assert_eq!(vars["MY_DB_SERVICE_PORT_PG_MAIN"], "5432");
        assert_eq!(vars["MY_DB_PORT"], "tcp://[fd00::5]:5432");
        assert!(!vars.keys().any(|k| k.starts_with("HEADLESS")));
    }

    #[test]
    fn links_off_keeps_only_the_api_service() {
        let own = vec![service("ns", "web", "10.0.0.5", &[(80, None)])];
        let default = vec![
            service("default", "kubernetes", "10.0.0.1", &[(443, Some("https"))]),
            service("default", "other", "10.0.0.9", &[(1, None)]),
        ];
        let names = |v: Vec<Service>| {
            v.into_iter()
                .map(|s| s.metadata.name.unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(visible_services("ns", false, own.clone(), default.clone())),
            ["kubernetes"]
        );
        assert_eq!(
            names(visible_services("ns", true, own, default)),
            ["kubernetes", "web"]
        );
    }
}
