//! From a request's method, path and query to what it asks: verb, resource, namespace, name,
//! subresource (as kube-apiserver's RequestInfo), checked against the registry in one pass.

use std::collections::HashMap;

use axum::http::Method;

use super::status::ApiError;
use crate::resources::{Registry, Resource};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }
}

/// A resource request, resolved.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    pub verb: Verb,
    pub resource: Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// The query parameters, decoded.
pub type Query = HashMap<String, String>;

pub fn parse_query(raw: Option<&str>) -> Query {
    raw.map(form_urlencoded_pairs).unwrap_or_default()
}

fn form_urlencoded_pairs(q: &str) -> Query {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Percent-decoding with `+` as space, as Go's url.ParseQuery.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn truthy(q: &Query, key: &str) -> bool {
    q.get(key).is_some_and(|v| v == "true" || v == "1")
}

/// Resolve a path under `/api` or `/apis`. `None` when the path is not a resource path at
/// all (discovery and the like are served elsewhere).
pub fn resolve(registry: &Registry, method: &Method, path: &str, query: &Query) -> Option<Result<RequestInfo, ApiError>> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] if !rest.is_empty() => ("", *version, rest),
        ["apis", group, version, rest @ ..] if !rest.is_empty() => (*group, *version, rest),
        _ => return None,
    };
    // namespaces/{ns}/{plural}[/{name}[/{sub}]] unless it is the namespaces resource itself
    // (namespaces/{name}[/status|finalize]).
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, tail @ ..] if !(group.is_empty() && (*plural == "status" || *plural == "finalize") && tail.is_empty()) => {
            (Some(*ns), std::iter::once(*plural).chain(tail.iter().copied()).collect::<Vec<_>>())
        }
        _ => (None, rest.to_vec()),
    };
    let Some(plural) = rest.first() else { return Some(Err(ApiError::no_route(path))) };
    let Some(resource) = registry.get(group, version, plural) else { return Some(Err(ApiError::no_route(path))) };
    if namespace.is_some() && !resource.namespaced {
        return Some(Err(ApiError::no_route(path)));
    }
    let name = rest.get(1).map(|s| s.to_string());
    let subresource = rest.get(2).map(|s| s.to_string());
    if rest.len() > 3 && subresource.as_deref() != Some("proxy") {
        return Some(Err(ApiError::no_route(path)));
    }
    if let Some(sub) = &subresource
        && resource.subresource(sub).is_none()
    {
        return Some(Err(ApiError::no_route(path)));
    }
    let verb = match (method, name.is_some()) {
        (&Method::GET, false) if truthy(query, "watch") => Verb::Watch,
        (&Method::GET, false) => Verb::List,
        (&Method::GET, true) if truthy(query, "watch") => Verb::Watch,
        (&Method::GET, true) => Verb::Get,
        (&Method::POST, false) => Verb::Create,
        // POST to an item: a subresource that creates (binding, eviction, exec, token...).
        (&Method::POST, true) if subresource.is_some() => Verb::Create,
        (&Method::PUT, true) => Verb::Update,
        (&Method::PATCH, true) => Verb::Patch,
        (&Method::DELETE, true) => Verb::Delete,
        (&Method::DELETE, false) => Verb::DeleteCollection,
        _ => return Some(Err(ApiError::method_not_allowed(format!("the server does not allow this method on the requested resource ({method} {path})")))),
    };
    let verb_name = if verb == Verb::Watch && name.is_some() { "watch" } else { verb.as_str() };
    let allowed = match &subresource {
        Some(sub) => resource.subresource(sub).is_some_and(|s| s.verbs.iter().any(|v| v == verb_name)),
        None => resource.has_verb(verb_name),
    };
    if !allowed {
        return Some(Err(ApiError::method_not_allowed(format!("the server does not allow this method on the requested resource ({method} {path})"))));
    }
    Some(Ok(RequestInfo { verb, resource: resource.clone(), namespace: namespace.map(str::to_string), name, subresource }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::builtin;

    fn info(method: Method, path: &str, q: &str) -> Result<RequestInfo, ApiError> {
        resolve(&builtin(), &method, path, &parse_query(Some(q))).expect("a resource path")
    }

    #[test]
    fn paths_resolve_as_kube_apiserver_does() {
        let i = info(Method::GET, "/api/v1/namespaces/default/pods", "").unwrap();
        assert_eq!((i.verb, i.resource.plural.as_str(), i.namespace.as_deref(), i.name), (Verb::List, "pods", Some("default"), None));
        let i = info(Method::GET, "/api/v1/pods", "watch=true").unwrap();
        assert_eq!((i.verb, i.namespace), (Verb::Watch, None));
        let i = info(Method::GET, "/api/v1/namespaces/kube-system", "").unwrap();
        assert_eq!((i.verb, i.resource.plural.as_str(), i.name.as_deref()), (Verb::Get, "namespaces", Some("kube-system")));
        let i = info(Method::PUT, "/api/v1/namespaces/x/finalize", "").unwrap();
        assert_eq!((i.resource.plural.as_str(), i.name.as_deref(), i.subresource.as_deref()), ("namespaces", Some("x"), Some("finalize")));
        let i = info(Method::PATCH, "/apis/apps/v1/namespaces/d/deployments/web/scale", "").unwrap();
        assert_eq!((i.verb, i.subresource.as_deref()), (Verb::Patch, Some("scale")));
        let i = info(Method::POST, "/api/v1/namespaces/d/pods/p/binding", "").unwrap();
        assert_eq!(i.verb, Verb::Create);
        let i = info(Method::DELETE, "/api/v1/namespaces/d/configmaps", "labelSelector=a%3Db").unwrap();
        assert_eq!(i.verb, Verb::DeleteCollection);
        assert_eq!(info(Method::GET, "/api/v1/namespaces/d/nodes", "").unwrap_err().code, 404);
        assert_eq!(info(Method::GET, "/apis/apps/v1/namespaces/d/widgets", "").unwrap_err().code, 404);
        assert_eq!(info(Method::PUT, "/api/v1/namespaces/d/pods", "").unwrap_err().code, 405);
        assert!(resolve(&builtin(), &Method::GET, "/apis/apps/v1", &Query::new()).is_none());
    }

    #[test]
    fn queries_decode() {
        let q = parse_query(Some("labelSelector=app%3Dweb%2Ctier+in+%28a%29&limit=5"));
        assert_eq!(q["labelSelector"], "app=web,tier in (a)");
        assert_eq!(q["limit"], "5");
    }
}
