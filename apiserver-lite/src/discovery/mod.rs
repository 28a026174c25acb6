//! Discovery: `/api`, `/apis` and their group versions, legacy and aggregated (v2).
//!
//! The registry is fixed when the server starts, so every document is built once and served as
//! bytes. `/api` and `/apis` answer the legacy or the aggregated form according to the Accept
//! header (see `negotiate`), always with `Vary: Accept` so caches keep the two apart.
//!
//! Routes are static paths taken from the registry (`/api/v1`, `/apis/apps`, `/apis/apps/v1`),
//! so any other path under `/api` or `/apis` falls through to the resource handlers.

pub mod cached;
mod documents;
mod negotiate;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub use cached::CachedBody;
pub use negotiate::Representation;

use crate::resources::Registry;

/// `/api` or `/apis`, each in its three representations.
struct Root {
    legacy: CachedBody,
    v2: CachedBody,
    v2beta1: CachedBody,
}

impl Root {
    fn build(registry: &Registry, core: bool) -> Root {
        let legacy = if core { documents::api_versions(registry) } else { documents::api_group_list(registry) };
        Root {
            legacy: CachedBody::json(&legacy),
            v2: CachedBody::json(&documents::aggregated(registry, core, "v2")),
            v2beta1: CachedBody::json(&documents::aggregated(registry, core, "v2beta1")),
        }
    }

    fn serve(&self, request: &HeaderMap) -> Response {
        let accept = request.get(header::ACCEPT).and_then(|v| v.to_str().ok());
        let vary = [(header::VARY, HeaderValue::from_static("Accept"))];
        let Some(representation) = negotiate::choose(accept) else {
            return status_response(StatusCode::NOT_ACCEPTABLE, "NotAcceptable", &format!("only the following media types are accepted: application/json, {}, {}", Representation::AggregatedV2.content_type(), Representation::AggregatedV2Beta1.content_type()));
        };
        let body = match representation {
            Representation::Legacy => &self.legacy,
            Representation::AggregatedV2 => &self.v2,
            Representation::AggregatedV2Beta1 => &self.v2beta1,
        };
        body.respond(request, representation.content_type(), &vary)
    }
}

/// A `meta/v1` Status for errors this router answers itself.
pub(crate) fn status_response(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
    });
    (code, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// The discovery routes for everything in `registry`.
pub fn router(registry: Arc<Registry>) -> Router {
    let api = Arc::new(Root::build(&registry, true));
    let apis = Arc::new(Root::build(&registry, false));
    let mut router = Router::new()
        .route("/api", get(move |headers: HeaderMap| async move { api.serve(&headers) }))
        .route("/apis", get(move |headers: HeaderMap| async move { apis.serve(&headers) }));
    for (group, versions) in registry.groups() {
        if !group.is_empty() {
            let body = Arc::new(CachedBody::json(&documents::api_group(&group, &versions)));
            router = router.route(&format!("/apis/{group}"), get(move |headers: HeaderMap| async move { body.respond(&headers, "application/json", &[]) }));
        }
        for version in &versions {
            let path = if group.is_empty() { format!("/api/{version}") } else { format!("/apis/{group}/{version}") };
            let body = Arc::new(CachedBody::json(&documents::api_resource_list(&registry, &group, version)));
            router = router.route(&path, get(move |headers: HeaderMap| async move { body.respond(&headers, "application/json", &[]) }));
        }
    }
    router
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::builtin;
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get_with(router: &Router, path: &str, accept: Option<&str>) -> (StatusCode, HeaderMap, serde_json::Value) {
        let mut req = Request::get(path);
        if let Some(a) = accept {
            req = req.header(header::ACCEPT, a);
        }
        let resp = router.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        let (parts, body) = resp.into_parts();
        let bytes = to_bytes(body, usize::MAX).await.unwrap();
        let json = if bytes.is_empty() { serde_json::Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        (parts.status, parts.headers, json)
    }

    #[tokio::test]
    async fn apis_negotiates_legacy_and_aggregated() {
        let router = router(Arc::new(builtin()));
        let (status, headers, body) = get_with(&router, "/apis", Some("application/json, */*")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        assert_eq!(headers[header::VARY], "Accept");
        assert_eq!(body["kind"], "APIGroupList");

        let accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        let (_, headers, body) = get_with(&router, "/apis", Some(accept)).await;
        assert_eq!(headers[header::CONTENT_TYPE], Representation::AggregatedV2.content_type());
        assert_eq!(body["kind"], "APIGroupDiscoveryList");
        assert_eq!(body["apiVersion"], "apidiscovery.k8s.io/v2");

        let (status, _, body) = get_with(&router, "/api", Some("application/vnd.kubernetes.protobuf")).await;
        assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
        assert_eq!(body["reason"], "NotAcceptable");
    }

    #[tokio::test]
    async fn etag_revalidation_answers_304() {
        let router = router(Arc::new(builtin()));
        let (_, headers, _) = get_with(&router, "/api", None).await;
        let etag = headers[header::ETAG].to_str().unwrap().to_string();
        let req = Request::get("/api").header(header::IF_NONE_MATCH, &etag).body(Body::empty()).unwrap();
        let resp = router.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    }

    #[tokio::test]
    async fn group_and_group_version_documents() {
        let router = router(Arc::new(builtin()));
        let (_, _, body) = get_with(&router, "/apis/apps", None).await;
        assert_eq!(body["preferredVersion"]["groupVersion"], "apps/v1");
        let (_, _, body) = get_with(&router, "/apis/apps/v1", None).await;
        assert!(body["resources"].as_array().unwrap().iter().any(|r| r["name"] == "deployments/scale"));
        let (_, _, body) = get_with(&router, "/api/v1", None).await;
        assert_eq!(body["groupVersion"], "v1");
        let (status, _, _) = get_with(&router, "/apis/nosuch.example.com", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    /// The lead's resource routes use parameters where these routes are static; axum must
    /// still send `/apis/apps/v1/deployments` to them and `/apis/apps/v1` here.
    #[tokio::test]
    async fn static_discovery_routes_coexist_with_parameter_routes() {
        let resources = Router::new()
            .route("/api/{version}/{resource}", get(|| async { "resource" }))
            .route("/api/{version}/namespaces/{namespace}/{resource}", get(|| async { "resource" }))
            .route("/apis/{group}/{version}/{resource}", get(|| async { "resource" }))
            .route("/apis/{group}/{version}/namespaces/{namespace}/{resource}", get(|| async { "resource" }));
        let router = router(Arc::new(builtin())).merge(resources);
        for path in ["/apis/apps/v1/deployments", "/api/v1/pods", "/api/v1/namespaces/default/pods", "/apis/apps/v1/namespaces/x/deployments"] {
            let resp = router.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
            assert_eq!(&to_bytes(resp.into_body(), 100).await.unwrap()[..], b"resource", "{path}");
        }
        let (_, _, body) = get_with(&router, "/apis/apps/v1", None).await;
        assert_eq!(body["kind"], "APIResourceList");
    }
}
