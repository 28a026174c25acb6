//! What the CSR controller does with a request, as pure functions: whether a signer of ours
//! may sign it (the subject, names and usages each signer allows) and whether it is
//! approved without an admin (upstream's csrapproving rules for kubelets).

use crate::auth::csr::ParsedCsr;

/// Kubelets' client certificates (to talk to the API server as `system:node:NAME`).
pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// Kubelets' serving certificates (the API server's connections to the kubelet).
pub const KUBELET_SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";

pub const NODE_USER_PREFIX: &str = "system:node:";
pub const NODES_GROUP: &str = "system:nodes";
const BOOTSTRAPPERS_GROUP: &str = crate::auth::bootstrap_token::BOOTSTRAPPERS_GROUP;

const CLIENT_USAGES: &[&str] = &["digital signature", "key encipherment", "client auth"];
const SERVING_USAGES: &[&str] = &["digital signature", "key encipherment", "server auth"];

/// A request as the controller sees it.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub signer: &'a str,
    /// spec.username and spec.groups: who created it (set by the API server).
    pub username: &'a str,
    pub groups: &'a [String],
    pub usages: &'a [String],
    pub csr: &'a ParsedCsr,
}

/// What our signers make of an approved request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signing {
    /// One of ours, and its form is right.
    Sign,
    /// One of ours, but it may not be issued: the reason goes in a Failed condition.
    Refuse(String),
    /// Not a signer of ours: some other signer's business; stays as it is.
    NotOurs,
}

/// Whether `req` fits its signer (approval aside).
pub fn signing(req: &Request<'_>) -> Signing {
    let result = match req.signer {
        KUBELET_CLIENT_SIGNER => kubelet_client(req),
        KUBELET_SERVING_SIGNER => kubelet_serving(req),
        _ => return Signing::NotOurs,
    };
    match result {
        Ok(()) => Signing::Sign,
        Err(why) => Signing::Refuse(why),
    }
}

/// The node a request's subject names: `system:node:NAME` with O=system:nodes alone.
fn node_subject(csr: &ParsedCsr) -> Result<&str, String> {
    let cn = csr.common_name.as_deref().unwrap_or("");
    let node = cn.strip_prefix(NODE_USER_PREFIX).filter(|n| !n.is_empty()).ok_or_else(|| format!("subject common name {cn:?} is not system:node:<name>"))?;
    if csr.organizations != [NODES_GROUP] {
        return Err(format!("subject organizations {:?} must be exactly [\"system:nodes\"]", csr.organizations));
    }
    Ok(node)
}

fn usages_within(usages: &[String], allowed: &[&str], required: &str) -> Result<(), String> {
    if let Some(bad) = usages.iter().find(|u| !allowed.contains(&u.as_str())) {
        return Err(format!("usage {bad:?} is not allowed (only {})", allowed.join(", ")));
    }
    if !usages.iter().any(|u| u == required) {
        return Err(format!("usages must include {required:?}"));
    }
    Ok(())
}

fn kubelet_client(req: &Request<'_>) -> Result<(), String> {
    node_subject(req.csr)?;
    if req.csr.has_sans() {
        return Err("a kubelet client certificate may not have subject alternative names".into());
    }
    usages_within(req.usages, CLIENT_USAGES, "client auth")
}

fn kubelet_serving(req: &Request<'_>) -> Result<(), String> {
    node_subject(req.csr)?;
    if !req.csr.emails.is_empty() || !req.csr.uris.is_empty() {
        return Err("a kubelet serving certificate may only name DNS names and IP addresses".into());
    }
    if req.csr.dns_names.is_empty() && req.csr.ip_addresses.is_empty() {
        return Err("a kubelet serving certificate needs at least one DNS name or IP address".into());
    }
    usages_within(req.usages, SERVING_USAGES, "server auth")
}

/// Why the controller approves `req` on its own, or None (it waits for an admin).
pub fn auto_approval(req: &Request<'_>) -> Option<&'static str> {
    if signing(req) != Signing::Sign {
        return None;
    }
    let cn = req.csr.common_name.as_deref().unwrap_or("");
    let is_node_itself = req.username == cn && req.groups.iter().any(|g| g == NODES_GROUP);
    match req.signer {
        // A joining node (bootstrap token) may ask for any node's client certificate, as
        // upstream's "nodeclient" rule; a node renews only its own ("selfnodeclient").
        KUBELET_CLIENT_SIGNER if req.groups.iter().any(|g| g == BOOTSTRAPPERS_GROUP) => Some("Auto approving kubelet client certificate requested with a bootstrap token"),
        KUBELET_CLIENT_SIGNER if is_node_itself => Some("Auto approving self kubelet client certificate renewal"),
        // Upstream leaves kubelet serving certificates for manual approval (a node could
        // claim any IP). Here the node itself asks, for its own name, so we approve.
        KUBELET_SERVING_SIGNER if is_node_itself => Some("Auto approving kubelet serving certificate requested by the node itself"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::csr::{make_request, parse_pem};

    fn parsed(cn: &str, orgs: &[&str], sans: &[&str]) -> ParsedCsr {
        parse_pem(make_request(cn, orgs, sans).0.as_bytes()).unwrap()
    }

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    fn req<'a>(signer: &'a str, username: &'a str, groups: &'a [String], usages: &'a [String], csr: &'a ParsedCsr) -> Request<'a> {
        Request { signer, username, groups, usages, csr }
    }

    #[test]
    fn kubelet_client_requests_need_the_node_subject_and_client_usages() {
        let groups = strings(&["system:bootstrappers", "system:authenticated"]);
        let usages = strings(&["digital signature", "key encipherment", "client auth"]);
        let good = parsed("system:node:w1", &["system:nodes"], &[]);
        assert_eq!(signing(&req(KUBELET_CLIENT_SIGNER, "system:bootstrap:abcdef", &groups, &usages, &good)), Signing::Sign);
        for (csr, why) in [
            (parsed("system:masters", &["system:nodes"], &[]), "common name"),
            (parsed("system:node:", &["system:nodes"], &[]), "common name"),
            (parsed("system:node:w1", &["system:masters"], &[]), "organizations"),
            (parsed("system:node:w1", &["system:nodes", "system:masters"], &[]), "organizations"),
            (parsed("system:node:w1", &[], &[]), "organizations"),
            (parsed("system:node:w1", &["system:nodes"], &["10.0.0.1"]), "alternative names"),
        ] {
            match signing(&req(KUBELET_CLIENT_SIGNER, "system:bootstrap:abcdef", &groups, &usages, &csr)) {
                Signing::Refuse(r) => assert!(r.contains(why), "{r}"),
                other => panic!("{csr:?}: {other:?}"),
            }
        }
        let server = strings(&["digital signature", "server auth"]);
        assert!(matches!(signing(&req(KUBELET_CLIENT_SIGNER, "u", &groups, &server, &good)), Signing::Refuse(r) if r.contains("server auth")));
        let no_client = strings(&["digital signature"]);
        assert!(matches!(signing(&req(KUBELET_CLIENT_SIGNER, "u", &groups, &no_client, &good)), Signing::Refuse(r) if r.contains("must include")));
        assert_eq!(signing(&req("example.com/other", "u", &groups, &usages, &good)), Signing::NotOurs);
    }

    #[test]
    fn kubelet_serving_requests_name_hosts_and_serve() {
        let groups = strings(&["system:nodes", "system:authenticated"]);
        let usages = strings(&["digital signature", "key encipherment", "server auth"]);
        let good = parsed("system:node:w1", &["system:nodes"], &["10.0.0.5", "w1"]);
        assert_eq!(signing(&req(KUBELET_SERVING_SIGNER, "system:node:w1", &groups, &usages, &good)), Signing::Sign);
        let bare = parsed("system:node:w1", &["system:nodes"], &[]);
        assert!(matches!(signing(&req(KUBELET_SERVING_SIGNER, "system:node:w1", &groups, &usages, &bare)), Signing::Refuse(_)));
        let client = strings(&["client auth"]);
        assert!(matches!(signing(&req(KUBELET_SERVING_SIGNER, "system:node:w1", &groups, &client, &good)), Signing::Refuse(_)));
    }

    #[test]
    fn who_gets_approved_without_an_admin() {
        let bootstrapper = strings(&["system:bootstrappers", "system:authenticated"]);
        let node = strings(&["system:nodes", "system:authenticated"]);
        let alice = strings(&["system:authenticated"]);
        let client = strings(&["digital signature", "key encipherment", "client auth"]);
        let serving = strings(&["digital signature", "server auth"]);
        let w1 = parsed("system:node:w1", &["system:nodes"], &[]);
        let w1_serving = parsed("system:node:w1", &["system:nodes"], &["10.0.0.5"]);
        let masters = parsed("system:node:w1", &["system:masters"], &[]);
        // Joining with a token; renewal by the node itself, for itself only.
        assert!(auto_approval(&req(KUBELET_CLIENT_SIGNER, "system:bootstrap:abcdef", &bootstrapper, &client, &w1)).is_some());
        assert!(auto_approval(&req(KUBELET_CLIENT_SIGNER, "system:node:w1", &node, &client, &w1)).is_some());
        assert!(auto_approval(&req(KUBELET_CLIENT_SIGNER, "system:node:w2", &node, &client, &w1)).is_none());
        assert!(auto_approval(&req(KUBELET_CLIENT_SIGNER, "alice", &alice, &client, &w1)).is_none());
        // A wrong subject is never approved, whoever asks.
        assert!(auto_approval(&req(KUBELET_CLIENT_SIGNER, "system:bootstrap:abcdef", &bootstrapper, &client, &masters)).is_none());
        // Serving: only the node itself, for itself; not a bootstrapper.
        assert!(auto_approval(&req(KUBELET_SERVING_SIGNER, "system:node:w1", &node, &serving, &w1_serving)).is_some());
        assert!(auto_approval(&req(KUBELET_SERVING_SIGNER, "system:node:w2", &node, &serving, &w1_serving)).is_none());
        assert!(auto_approval(&req(KUBELET_SERVING_SIGNER, "system:bootstrap:abcdef", &bootstrapper, &serving, &w1_serving)).is_none());
        // Other signers wait for an admin.
        assert!(auto_approval(&req("example.com/x", "system:node:w1", &node, &client, &w1)).is_none());
    }
}
