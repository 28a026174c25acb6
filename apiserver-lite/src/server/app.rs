//! The HTTP application: version and health, discovery, OpenAPI, and every resource path.

use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::handlers::Api;

/// The Kubernetes version this server speaks: the installed kubectl picks its own version
/// from `minor`.
pub const KUBERNETES_MINOR: &str = "33";
pub const GIT_VERSION: &str = "v1.33.0";

fn version_body() -> serde_json::Value {
    json!({
        "major": "1", "minor": KUBERNETES_MINOR, "gitVersion": GIT_VERSION,
        "gitCommit": env!("CARGO_PKG_VERSION"), "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z", "goVersion": "none (apiserver-lite, Rust)", "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }),
    })
}

async fn version() -> Response {
    crate::handlers::json_response(StatusCode::OK, &version_body())
}

async fn ok() -> Response {
    let mut resp = (StatusCode::OK, "ok").into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

/// The whole API as one router (no TLS, no authentication: `serve` adds those).
pub fn app(api: Arc<Api>) -> axum::Router {
    let registry = api.registry.clone();
    axum::Router::new()
        .route("/version", get(version))
        .route("/healthz", get(ok))
        .route("/livez", get(ok))
        .route("/readyz", get(ok))
        .route(crate::handlers::self_review::PATH, post(crate::handlers::self_review::create))
        .merge(crate::discovery::router(registry.clone()))
        .merge(crate::openapi::router(registry))
        .merge(crate::handlers::router(api))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_says_33() {
        let v = version_body();
        assert_eq!((v["major"].as_str(), v["minor"].as_str()), (Some("1"), Some("33")));
        assert!(v["gitVersion"].as_str().unwrap().starts_with("v1.33."));
    }
}
