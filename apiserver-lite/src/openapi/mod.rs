//! OpenAPI v3 documents generated from the upstream types (k8s-openapi's schemars schemas), and
//! the unknown- and duplicate-field checks behind `fieldValidation` (`validate_fields`,
//! `duplicate_fields`).
//!
//! `/openapi/v3` is the index; `/openapi/v3/api/v1`, `/openapi/v3/apis/apps/v1`... are the
//! documents, built once at start and served as bytes. A request carrying the current `hash`
//! is answered as immutable (cacheable for a year), as kube-apiserver does; a stale hash is
//! redirected to the current one.
//!
//! `/openapi/v2` is deliberately not served (404): kubectl 1.33 only fetches it when the v3
//! document lacks what it needs (the `fieldValidation` parameter for create/apply, the kind for
//! explain), and it wants v2 as gnostic protobuf, which would double the memory held here.

mod document;
mod duplicates;
mod kinds;
mod paths;
mod schemas;
mod validate;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::Query;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use time::OffsetDateTime;
use time::macros::format_description;

pub use document::{Documents, api_path, group_version_document};
pub use duplicates::duplicate_fields;
pub use validate::validate_fields;

use crate::discovery::{CachedBody, status_response};
use crate::resources::Registry;

/// Whether the Accept header lets us answer JSON (the only encoding served).
fn accepts_json(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else { return true };
    accept.split(',').any(|range| {
        let essence = range.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        matches!(essence.as_str(), "application/json" | "application/*" | "*/*" | "")
    })
}

fn not_acceptable() -> Response {
    status_response(StatusCode::NOT_ACCEPTABLE, "NotAcceptable", "only application/json is served for OpenAPI v3")
}

/// An HTTP date a year from now, for documents addressed by their hash.
fn expires_in_a_year() -> HeaderValue {
    let when = OffsetDateTime::now_utc() + time::Duration::days(365);
    let text = when
        .format(format_description!("[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"))
        .unwrap_or_default();
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("0"))
}

fn serve_document(path: &str, body: &CachedBody, headers: &HeaderMap, query: &HashMap<String, String>) -> Response {
    if !accepts_json(headers) {
        return not_acceptable();
    }
    let vary = (header::VARY, HeaderValue::from_static("Accept"));
    match query.get("hash") {
        Some(hash) if *hash != body.hash => {
            let location = format!("/openapi/v3/{path}?hash={}", body.hash);
            let location = HeaderValue::from_str(&location).expect("path and hash are header-safe");
            (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, location)]).into_response()
        }
        Some(_) => body.respond(headers, "application/json", &[vary, (header::CACHE_CONTROL, HeaderValue::from_static("public, immutable")), (header::EXPIRES, expires_in_a_year())]),
        None => body.respond(headers, "application/json", &[vary]),
    }
}

/// Hands the heap freed after building documents back to the system. Building them goes
/// through JSON trees several times the size of the bytes kept, and glibc would otherwise keep
/// those pages resident for the life of the server.
pub(crate) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the allocator's arenas to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The OpenAPI routes for everything in `registry`.
pub fn router(registry: Arc<Registry>) -> Router {
    let documents = Documents::build(&registry);
    release_freed_memory();
    tracing::debug!(bytes = documents.size(), "openapi v3 documents built");
    let index = Arc::new(documents.index);
    let mut router = Router::new()
        .route(
            "/openapi/v3",
            get(move |headers: HeaderMap| async move { if accepts_json(&headers) { index.respond(&headers, "application/json", &[]) } else { not_acceptable() } }),
        )
        .route("/openapi/v2", get(|| async { status_response(StatusCode::NOT_FOUND, "NotFound", "OpenAPI v2 is not served; use /openapi/v3") }));
    for (path, body) in documents.group_versions {
        let route = format!("/openapi/v3/{path}");
        let served = Arc::new((path, body));
        router = router.route(
            &route,
            get(move |headers: HeaderMap, Query(query): Query<HashMap<String, String>>| async move { serve_document(&served.0, &served.1, &headers, &query) }),
        );
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

    async fn get(router: &Router, uri: &str, headers: &[(header::HeaderName, &str)]) -> Response {
        let mut req = Request::get(uri);
        for (k, v) in headers {
            req = req.header(k, *v);
        }
        router.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap()
    }

    #[tokio::test]
    async fn index_then_hashed_document_is_immutable() {
        let router = router(Arc::new(builtin()));
        let resp = get(&router, "/openapi/v3", &[]).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let index: serde_json::Value = serde_json::from_slice(&to_bytes(resp.into_body(), usize::MAX).await.unwrap()).unwrap();
        let url = index["paths"]["api/v1"]["serverRelativeURL"].as_str().unwrap().to_string();

        let resp = get(&router, &format!("{url}&timeout=32s"), &[(header::ACCEPT, "application/json")]).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CACHE_CONTROL], "public, immutable");
        assert!(resp.headers()[header::EXPIRES].to_str().unwrap().ends_with("GMT"));
        let doc: serde_json::Value = serde_json::from_slice(&to_bytes(resp.into_body(), usize::MAX).await.unwrap()).unwrap();
        assert!(doc["components"]["schemas"]["io.k8s.api.core.v1.Pod"].is_object());

        let resp = get(&router, "/openapi/v3/api/v1", &[]).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers().get(header::CACHE_CONTROL).is_none());
    }

    #[tokio::test]
    async fn stale_hash_redirects_and_protobuf_is_refused() {
        let router = router(Arc::new(builtin()));
        let resp = get(&router, "/openapi/v3/apis/apps/v1?hash=OLD", &[]).await;
        assert_eq!(resp.status(), StatusCode::MOVED_PERMANENTLY);
        assert!(resp.headers()[header::LOCATION].to_str().unwrap().starts_with("/openapi/v3/apis/apps/v1?hash="));
        let resp = get(&router, "/openapi/v3/apis/apps/v1", &[(header::ACCEPT, "application/com.github.proto-openapi.spec.v3@v1.0+protobuf")]).await;
        assert_eq!(resp.status(), StatusCode::NOT_ACCEPTABLE);
        assert_eq!(get(&router, "/openapi/v2", &[]).await.status(), StatusCode::NOT_FOUND);
    }

    /// What the documents cost: printed for the record, bounded so growth is noticed.
    #[test]
    fn document_sizes() {
        let docs = Documents::build(&builtin());
        for (path, body) in &docs.group_versions {
            println!("{path}: {} bytes", body.bytes.len());
        }
        println!("total: {} bytes", docs.size());
        assert!(docs.size() < 4 * 1024 * 1024, "openapi documents grew to {} bytes", docs.size());
    }
}
