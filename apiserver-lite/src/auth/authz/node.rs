//! What a kubelet may do: Kubernetes' Node authorizer and NodeRestriction admission,
//! roughly. A node is the user `system:node:NAME` in group `system:nodes`. It reads what
//! it needs to run pods, reports events and pod status, and changes only its own Node and
//! its own Lease. Unlike the real Node authorizer, reads are not narrowed to the objects
//! its pods reference: that needs the pod graph, which this server does not keep.

use super::Attributes;

const NODE_USER_PREFIX: &str = "system:node:";
const NODES_GROUP: &str = "system:nodes";
const LEASE_NAMESPACE: &str = "kube-node-lease";

/// Whether `attrs` is something its user, if a node, may do.
pub(super) fn authorize(attrs: &Attributes) -> bool {
    let Some(node) = node_name(attrs) else {
        return false;
    };
    let verb = attrs.verb.as_str();
    let sub = attrs.subresource.as_str();
    let own = attrs.name == node;
    match (attrs.api_group.as_str(), attrs.resource.as_str()) {
        ("", "nodes") => {
            matches!(sub, "" | "status") && (is_read(verb) || (own && mutates_object(verb)))
        }
        ("", "pods") => match sub {
            "" => is_read(verb) || matches!(verb, "create" | "delete"),
            "status" => is_read(verb) || matches!(verb, "update" | "patch"),
            _ => false,
        },
        (
            "",
            "services"
            | "endpoints"
            | "configmaps"
            | "secrets"
            | "persistentvolumes"
            | "persistentvolumeclaims",
        )
        | ("discovery.k8s.io", "endpointslices") => is_read(verb) && matches!(sub, "" | "status"),
        ("" | "events.k8s.io", "events") => {
            sub.is_empty() && matches!(verb, "create" | "patch" | "update")
        }
        ("coordination.k8s.io", "leases") => {
            attrs.namespace == LEASE_NAMESPACE
                && sub.is_empty()
                && match verb {
                    // A create's name comes from the body; an unnamed one cannot be checked.
                    "create" => own || attrs.name.is_empty(),
                    "get" | "update" | "patch" | "delete" => own,
                    _ => false,
                }
        }
        ("", "serviceaccounts") => sub == "token" && verb == "create",
        ("authentication.k8s.io", "tokenreviews")
        | ("authorization.k8s.io", "subjectaccessreviews") => sub.is_empty() && verb == "create",
        _ => false,
    }
}

/// NAME, when the user is `system:node:NAME` in `system:nodes`.
fn node_name(attrs: &Attributes) -> Option<&str> {
    let name = attrs.user.name.strip_prefix(NODE_USER_PREFIX)?;
    (!name.is_empty() && attrs.user.in_group(NODES_GROUP)).then_some(name)
}

fn is_read(verb: &str) -> bool {
    matches!(verb, "get" | "list" | "watch")
}

fn mutates_object(verb: &str) -> bool {
    matches!(verb, "create" | "update" | "patch" | "delete")
}

#[cfg(test)]
mod tests {
    use super::super::tests::attrs;
    use super::super::{Decision, authorize as decide};
    use super::*;
    use crate::auth::authn::{AUTHENTICATED_GROUP, UserInfo};

    fn node_a() -> UserInfo {
        UserInfo::new("system:node:a", &[NODES_GROUP, AUTHENTICATED_GROUP])
    }

    fn allowed(verb: &str, group: &str, resource: &str, sub: &str, ns: &str, name: &str) -> bool {
        allowed_as(node_a(), verb, group, resource, sub, ns, name)
    }

    fn allowed_as(
        user: UserInfo,
        verb: &str,
        group: &str,
        resource: &str,
        sub: &str,
        ns: &str,
        name: &str,
    ) -> bool {
        let mut a = attrs(user, verb, group, resource, ns, name);
        a.subresource = sub.into();
        decide(&a) == Decision::Allow
    }

    #[test]
    fn reads_what_it_needs_to_run_pods() {
        for (group, resource, ns) in [
            ("", "nodes", ""),
            ("", "pods", "default"),
            ("", "services", "default"),
            ("", "endpoints", "default"),
            ("discovery.k8s.io", "endpointslices", "default"),
            ("", "configmaps", "kube-system"),
            ("", "secrets", "default"),
            ("", "persistentvolumes", ""),
            ("", "persistentvolumeclaims", "default"),
        ] {
            for verb in ["get", "list", "watch"] {
                assert!(
                    allowed(verb, group, resource, "", ns, ""),
                    "{verb} {resource}"
                );
            }
            assert!(
                !allowed("delete", group, resource, "", ns, "x") || resource == "pods",
                "delete {resource}"
            );
        }
        assert!(!allowed("list", "apps", "deployments", "", "default", ""));
        assert!(!allowed(
            "list",
            "rbac.authorization.k8s.io",
            "clusterroles",
            "",
            "",
            ""
        ));
        assert!(!allowed("get", "", "nodes", "proxy", "", "a"));
    }

    #[test]
    fn changes_only_its_own_node() {
        for verb in ["create", "update", "patch", "delete"] {
            assert!(allowed(verb, "", "nodes", "", "", "a"), "{verb}");
            assert!(!allowed(verb, "", "nodes", "", "", "b"), "{verb}");
        }
        assert!(allowed("patch", "", "nodes", "status", "", "a"));
        assert!(allowed("update", "", "nodes", "status", "", "a"));
        assert!(!allowed("patch", "", "nodes", "status", "", "b"));
        assert!(!allowed("create", "", "nodes", "", "", ""));
        assert!(!allowed("deletecollection", "", "nodes", "", "", ""));
    }

    #[test]
    fn only_its_own_lease_in_kube_node_lease() {
        let lease = |verb: &str, ns: &str, name: &str| {
            allowed(verb, "coordination.k8s.io", "leases", "", ns, name)
        };
        for verb in ["get", "create", "update", "patch", "delete"] {
            assert!(lease(verb, LEASE_NAMESPACE, "a"), "{verb}");
            assert!(!lease(verb, LEASE_NAMESPACE, "b"), "{verb}");
            assert!(!lease(verb, "default", "a"), "{verb}");
        }
        assert!(lease("create", LEASE_NAMESPACE, ""));
        assert!(!lease("list", LEASE_NAMESPACE, ""));
    }

    #[test]
    fn pods_status_events_tokens_and_reviews() {
        assert!(allowed("update", "", "pods", "status", "default", "p"));
        assert!(allowed("patch", "", "pods", "status", "default", "p"));
        assert!(allowed("create", "", "pods", "", "kube-system", "mirror"));
        assert!(allowed("delete", "", "pods", "", "kube-system", "mirror"));
        assert!(!allowed("update", "", "pods", "", "default", "p"));
        assert!(!allowed("create", "", "pods", "exec", "default", "p"));
        assert!(!allowed("create", "", "pods", "eviction", "default", "p"));
        assert!(allowed("create", "", "events", "", "default", ""));
        assert!(allowed(
            "patch",
            "events.k8s.io",
            "events",
            "",
            "default",
            "e"
        ));
        assert!(!allowed("delete", "", "events", "", "default", "e"));
        assert!(allowed(
            "create",
            "",
            "serviceaccounts",
            "token",
            "default",
            "sa"
        ));
        assert!(!allowed(
            "create",
            "",
            "serviceaccounts",
            "",
            "default",
            "sa"
        ));
        assert!(allowed(
            "create",
            "authentication.k8s.io",
            "tokenreviews",
            "",
            "",
            ""
        ));
        assert!(allowed(
            "create",
            "authorization.k8s.io",
            "subjectaccessreviews",
            "",
            "",
            ""
        ));
        assert!(!allowed("update", "", "configmaps", "", "default", "c"));
        assert!(!allowed("create", "", "secrets", "", "default", "s"));
    }

    #[test]
    fn a_node_name_without_the_nodes_group_is_nobody() {
        let impostor = UserInfo::new("system:node:a", &[AUTHENTICATED_GROUP]);
        assert!(!allowed_as(impostor, "get", "", "pods", "", "default", "p"));
        let nameless = UserInfo::new("system:node:", &[NODES_GROUP, AUTHENTICATED_GROUP]);
        assert!(!allowed_as(nameless, "get", "", "pods", "", "default", "p"));
    }
}
