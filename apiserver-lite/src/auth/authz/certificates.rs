//! Who may ask for certificates: upstream's `system:node-bootstrapper` ClusterRole, bound
//! (as kubeadm binds it) to `system:bootstrappers` and, for renewal and serving
//! certificates, to `system:nodes`. Approving and signing stay with the control plane.

use super::Attributes;
use crate::auth::bootstrap_token::BOOTSTRAPPERS_GROUP;

const NODES_GROUP: &str = "system:nodes";

/// Whether `attrs` is a CSR create or read by a bootstrapper or a node.
pub(super) fn authorize(attrs: &Attributes) -> bool {
    let requester = attrs.user.in_group(BOOTSTRAPPERS_GROUP) || attrs.user.in_group(NODES_GROUP);
    requester
        && attrs.api_group == "certificates.k8s.io"
        && attrs.resource == "certificatesigningrequests"
        && attrs.subresource.is_empty()
        && matches!(attrs.verb.as_str(), "create" | "get" | "list" | "watch")
}

#[cfg(test)]
mod tests {
    use super::super::tests::attrs;
    use super::super::{Decision, authorize as decide};
    use crate::auth::authn::{AUTHENTICATED_GROUP, UserInfo};

    fn bootstrapper() -> UserInfo {
        UserInfo::new("system:bootstrap:abcdef", &["system:bootstrappers", AUTHENTICATED_GROUP])
    }

    #[test]
    fn bootstrappers_may_only_create_and_read_csrs() {
        let csr = |verb: &str| attrs(bootstrapper(), verb, "certificates.k8s.io", "certificatesigningrequests", "", "");
        for verb in ["create", "get", "list", "watch"] {
            assert_eq!(decide(&csr(verb)), Decision::Allow, "{verb}");
        }
        for verb in ["update", "patch", "delete", "deletecollection"] {
            assert!(matches!(decide(&csr(verb)), Decision::Deny(_)), "{verb}");
        }
        let mut approval = csr("update");
        approval.subresource = "approval".into();
        assert!(matches!(decide(&approval), Decision::Deny(_)));
        for (group, resource, ns) in [("", "pods", "default"), ("", "secrets", "kube-system"), ("", "nodes", ""), ("coordination.k8s.io", "leases", "kube-node-lease")] {
            for verb in ["get", "list", "create"] {
                let a = attrs(bootstrapper(), verb, group, resource, ns, "");
                assert!(matches!(decide(&a), Decision::Deny(_)), "{verb} {resource}");
            }
        }
    }

    #[test]
    fn nodes_may_create_and_read_csrs_but_not_approve_them() {
        let node = UserInfo::new("system:node:w1", &["system:nodes", AUTHENTICATED_GROUP]);
        let create = attrs(node.clone(), "create", "certificates.k8s.io", "certificatesigningrequests", "", "");
        assert_eq!(decide(&create), Decision::Allow);
        let mut approve = attrs(node, "update", "certificates.k8s.io", "certificatesigningrequests", "", "csr-1");
        approve.subresource = "approval".into();
        assert!(matches!(decide(&approve), Decision::Deny(_)));
        let alice = UserInfo::new("alice", &[AUTHENTICATED_GROUP]);
        assert!(matches!(decide(&attrs(alice, "create", "certificates.k8s.io", "certificatesigningrequests", "", "")), Decision::Deny(_)));
    }
}
