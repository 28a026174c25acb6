//! Authorization: may this user do this? A fixed policy standing in for kube-apiserver's
//! RBAC defaults plus the Node authorizer: `system:masters` may do anything, every
//! authenticated user may read discovery and ask about itself, anyone may read the health
//! and version endpoints, kubelets get what a node needs (`authz/node.rs`), and
//! bootstrappers and nodes may ask for certificates (`authz/certificates.rs`).

mod certificates;
mod node;

use super::authn::{AUTHENTICATED_GROUP, UNAUTHENTICATED_GROUP, UserInfo};
use super::pki::MASTERS_GROUP;

/// What a request wants to do, resolved by the handlers. Empty strings mean "none", as in
/// kube-apiserver's `authorizer.Attributes`: `resource` is empty for non-resource paths
/// (/api, /version, ...), `namespace` is empty for cluster-scoped requests, `name` for
/// collection requests. For `create`, `name` is the name in the submitted object (the node
/// rules check that a kubelet creates only its own Node and Lease).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attributes {
    pub user: UserInfo,
    /// Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
    pub api_group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// The request path, which non-resource rules match.
    pub path: String,
}

impl Attributes {
    pub fn is_resource_request(&self) -> bool {
        !self.resource.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Refused, with kube-apiserver's message (`User "u" cannot get resource ...`).
    Deny(String),
}

/// Decide a request.
pub fn authorize(attrs: &Attributes) -> Decision {
    let allowed = attrs.user.in_group(MASTERS_GROUP)
        || public_info(attrs)
        || (attrs.user.in_group(AUTHENTICATED_GROUP) && (discovery(attrs) || self_review(attrs)))
        || node::authorize(attrs)
        || certificates::authorize(attrs);
    if allowed {
        Decision::Allow
    } else {
        Decision::Deny(forbidden_message(attrs))
    }
}

/// kube-apiserver's system:public-info-viewer, bound to authenticated and unauthenticated.
fn public_info(attrs: &Attributes) -> bool {
    const PATHS: &[&str] = &["/healthz", "/livez", "/readyz", "/version", "/version/"];
    let anyone =
        attrs.user.in_group(AUTHENTICATED_GROUP) || attrs.user.in_group(UNAUTHENTICATED_GROUP);
    anyone && non_resource_get(attrs) && PATHS.contains(&attrs.path.as_str())
}

/// kube-apiserver's system:discovery: the paths clients learn the API from.
fn discovery(attrs: &Attributes) -> bool {
    const PATHS: &[&str] = &[
        "/api",
        "/api/*",
        "/apis",
        "/apis/*",
        "/openapi",
        "/openapi/*",
        "/version",
        "/version/",
        "/healthz",
        "/livez",
        "/readyz",
    ];
    non_resource_get(attrs) && PATHS.iter().any(|rule| path_matches(rule, &attrs.path))
}

/// kube-apiserver's system:basic-user: `kubectl auth can-i` and `kubectl auth whoami`.
fn self_review(attrs: &Attributes) -> bool {
    attrs.verb == "create"
        && attrs.subresource.is_empty()
        && match attrs.api_group.as_str() {
            "authorization.k8s.io" => {
                matches!(
                    attrs.resource.as_str(),
                    "selfsubjectaccessreviews" | "selfsubjectrulesreviews"
                )
            }
            "authentication.k8s.io" => attrs.resource == "selfsubjectreviews",
            _ => false,
        }
}

fn non_resource_get(attrs: &Attributes) -> bool {
    !attrs.is_resource_request() && attrs.verb == "get"
}

/// RBAC non-resource URL rules: exact, or a prefix when the rule ends in `*`.
fn path_matches(rule: &str, path: &str) -> bool {
    match rule.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => rule == path,
    }
}

/// kube-apiserver's wording for a refused request.
pub fn forbidden_message(attrs: &Attributes) -> String {
    let user = &attrs.user.name;
    let verb = &attrs.verb;
    if !attrs.is_resource_request() {
        return format!("User {user:?} cannot {verb} path {:?}", attrs.path);
    }
    let mut resource = attrs.resource.clone();
    if !attrs.subresource.is_empty() {
        resource = format!("{resource}/{}", attrs.subresource);
    }
    let group = &attrs.api_group;
    if attrs.namespace.is_empty() {
        format!(
            "User {user:?} cannot {verb} resource {resource:?} in API group {group:?} at the cluster scope"
        )
    } else {
        format!(
            "User {user:?} cannot {verb} resource {resource:?} in API group {group:?} in the namespace {:?}",
            attrs.namespace
        )
    }
}

/// The 403 `Status` kube-apiserver sends for a denied request, around `message` (from
/// [`Decision::Deny`]): `pods "x" is forbidden: User ...`.
pub fn forbidden_status(attrs: &Attributes, message: &str) -> serde_json::Value {
    let qualified = match (attrs.resource.as_str(), attrs.api_group.as_str()) {
        ("", _) => String::new(),
        (resource, "") => resource.to_string(),
        (resource, group) => format!("{resource}.{group}"),
    };
    let full = if qualified.is_empty() {
        format!("forbidden: {message}")
    } else if attrs.name.is_empty() {
        format!("{qualified} is forbidden: {message}")
    } else {
        format!("{qualified} {:?} is forbidden: {message}", attrs.name)
    };
    let mut details = serde_json::Map::new();
    for (key, value) in [
        ("name", &attrs.name),
        ("group", &attrs.api_group),
        ("kind", &attrs.resource),
    ] {
        if !value.is_empty() {
            details.insert(key.to_string(), value.clone().into());
        }
    }
    serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": full,
        "reason": "Forbidden",
        "details": details,
        "code": 403,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::authn::ANONYMOUS_USER;

    pub(super) fn attrs(
        user: UserInfo,
        verb: &str,
        group: &str,
        resource: &str,
        ns: &str,
        name: &str,
    ) -> Attributes {
        Attributes {
            user,
            verb: verb.into(),
            api_group: group.into(),
            resource: resource.into(),
            namespace: ns.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    fn path(user: UserInfo, verb: &str, path: &str) -> Attributes {
        Attributes {
            user,
            verb: verb.into(),
            path: path.into(),
            ..Default::default()
        }
    }

    fn alice() -> UserInfo {
        UserInfo::new("alice", &["dev", AUTHENTICATED_GROUP])
    }

    #[test]
    fn masters_may_do_anything() {
        let admin = UserInfo::new("kubernetes-admin", &[MASTERS_GROUP, AUTHENTICATED_GROUP]);
        for a in [
            attrs(admin.clone(), "delete", "", "nodes", "", "n1"),
            attrs(
                admin.clone(),
                "create",
                "apps",
                "deployments",
                "default",
                "d",
            ),
            path(admin, "get", "/metrics"),
        ] {
            assert_eq!(authorize(&a), Decision::Allow, "{a:?}");
        }
    }

    #[test]
    fn authenticated_users_read_discovery_only() {
        for p in [
            "/api",
            "/api/v1",
            "/apis",
            "/apis/apps/v1",
            "/openapi/v3",
            "/openapi/v2",
            "/version",
            "/readyz",
        ] {
            assert_eq!(authorize(&path(alice(), "get", p)), Decision::Allow, "{p}");
        }
        assert!(matches!(
            authorize(&path(alice(), "get", "/metrics")),
            Decision::Deny(_)
        ));
        assert!(matches!(
            authorize(&path(alice(), "post", "/api")),
            Decision::Deny(_)
        ));
        assert!(matches!(
            authorize(&attrs(alice(), "list", "", "pods", "default", "")),
            Decision::Deny(_)
        ));
    }

    #[test]
    fn anyone_reads_health_and_version_but_not_discovery() {
        let anon = UserInfo::anonymous();
        assert_eq!(anon.name, ANONYMOUS_USER);
        for p in ["/healthz", "/livez", "/readyz", "/version"] {
            assert_eq!(
                authorize(&path(anon.clone(), "get", p)),
                Decision::Allow,
                "{p}"
            );
        }
        assert!(matches!(
            authorize(&path(anon, "get", "/api")),
            Decision::Deny(_)
        ));
    }

    #[test]
    fn authenticated_users_may_review_themselves() {
        let ssar = attrs(
            alice(),
            "create",
            "authorization.k8s.io",
            "selfsubjectaccessreviews",
            "",
            "",
        );
        assert_eq!(authorize(&ssar), Decision::Allow);
        let ssr = attrs(
            alice(),
            "create",
            "authentication.k8s.io",
            "selfsubjectreviews",
            "",
            "",
        );
        assert_eq!(authorize(&ssr), Decision::Allow);
        let sar = attrs(
            alice(),
            "create",
            "authorization.k8s.io",
            "subjectaccessreviews",
            "",
            "",
        );
        assert!(matches!(authorize(&sar), Decision::Deny(_)));
    }

    #[test]
    fn deny_messages_have_kube_apiserver_wording() {
        let node = UserInfo::new("system:node:a", &["system:nodes", AUTHENTICATED_GROUP]);
        let cluster = attrs(node.clone(), "update", "", "nodes", "", "b");
        assert_eq!(
            authorize(&cluster),
            Decision::Deny(
                r#"User "system:node:a" cannot update resource "nodes" in API group "" at the cluster scope"#.into()
            )
        );
        let mut namespaced = attrs(node, "update", "", "pods", "default", "p");
        namespaced.subresource = "ephemeralcontainers".into();
        assert_eq!(
            forbidden_message(&namespaced),
            r#"User "system:node:a" cannot update resource "pods/ephemeralcontainers" in API group "" in the namespace "default""#
        );
        assert_eq!(
            forbidden_message(&path(alice(), "get", "/metrics")),
            r#"User "alice" cannot get path "/metrics""#
        );
    }

    #[test]
    fn forbidden_status_names_the_object() {
        let a = attrs(alice(), "get", "apps", "deployments", "default", "web");
        let Decision::Deny(message) = authorize(&a) else {
            panic!("allowed")
        };
        let status = forbidden_status(&a, &message);
        assert_eq!(status["code"], 403);
        assert_eq!(status["reason"], "Forbidden");
        assert_eq!(
            status["message"],
            format!(r#"deployments.apps "web" is forbidden: {message}"#)
        );
        assert_eq!(
            status["details"],
            serde_json::json!({"name": "web", "group": "apps", "kind": "deployments"})
        );
        let p = path(alice(), "get", "/metrics");
        assert_eq!(forbidden_status(&p, "m")["message"], "forbidden: m");
    }
}
