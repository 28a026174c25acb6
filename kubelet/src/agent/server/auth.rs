//! Who may use the kubelet's API: the caller is the subject of its client certificate
//! (CN the user, O the groups, as Kubernetes reads x509 client certificates), verified
//! against the cluster CA during the TLS handshake. Allowed: the group system:masters and
//! the user kube-apiserver-kubelet-client (the API server's name for itself towards
//! kubelets); anyone else is refused with 403, a caller without a certificate with 401.

/// The API server's user towards kubelets, as kubeadm names it.
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";
pub const MASTERS_GROUP: &str = "system:masters";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

/// The identity in a DER certificate: None when it cannot be parsed or names no one.
pub fn identity_from_cert(der: &[u8]) -> Option<Identity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let user = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let groups = subject.iter_organization().filter_map(|o| o.as_str().ok().map(str::to_string)).collect();
    Some(Identity { user, groups })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// No certificate: 401.
    Unauthorized,
    /// A known caller without the right: 403 with upstream's message.
    Forbidden(String),
}

/// The node subresource upstream's kubelet authorizes a path as.
fn subresource(path: &str) -> &'static str {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    match first {
        "stats" => "stats",
        "metrics" => "metrics",
        "logs" => "log",
        "spec" => "spec",
        "checkpoint" => "checkpoint",
        "configz" => "configz",
        "healthz" => "healthz",
        _ => "proxy",
    }
}

fn verb(method: &str) -> &'static str {
    match method {
        "POST" => "create",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "get",
    }
}

pub fn authorize(identity: Option<&Identity>, method: &str, path: &str) -> Decision {
    let Some(id) = identity else { return Decision::Unauthorized };
    if id.user == KUBELET_CLIENT_USER || id.groups.iter().any(|g| g == MASTERS_GROUP) {
        return Decision::Allow;
    }
    Decision::Forbidden(format!("Forbidden (user={}, verb={}, resource=nodes, subresource(s)=[{}])", id.user, verb(method), subresource(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(user: &str, groups: &[&str]) -> Identity {
        Identity { user: user.into(), groups: groups.iter().map(|g| g.to_string()).collect() }
    }

    #[test]
    fn the_api_server_and_masters_are_allowed() {
        assert_eq!(authorize(Some(&id(KUBELET_CLIENT_USER, &[])), "GET", "/containerLogs/a/b/c"), Decision::Allow);
        assert_eq!(authorize(Some(&id("admin", &[MASTERS_GROUP])), "POST", "/exec/a/b/c"), Decision::Allow);
    }

    #[test]
    fn others_are_refused_with_upstreams_words() {
        assert_eq!(authorize(None, "GET", "/pods"), Decision::Unauthorized);
        assert_eq!(
            authorize(Some(&id("system:node:n1", &["system:nodes"])), "POST", "/exec/a/b/c"),
            Decision::Forbidden("Forbidden (user=system:node:n1, verb=create, resource=nodes, subresource(s)=[proxy])".into())
        );
        assert!(matches!(authorize(Some(&id("bob", &[])), "GET", "/stats/summary"), Decision::Forbidden(m) if m.contains("subresource(s)=[stats]")));
        assert!(matches!(authorize(Some(&id("bob", &[])), "GET", "/metrics"), Decision::Forbidden(m) if m.contains("[metrics]")));
    }
}
