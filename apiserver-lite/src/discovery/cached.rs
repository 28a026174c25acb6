//! A response body built once and served as bytes, with a strong ETag so clients that cache
//! (kubectl's HTTP disk cache) revalidate with `If-None-Match` and get `304 Not Modified`.

use std::hash::{Hash, Hasher};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(Clone, Debug)]
pub struct CachedBody {
    pub bytes: Bytes,
    /// Hex content hash; also the `hash` URL parameter of OpenAPI documents.
    pub hash: String,
}

impl CachedBody {
    pub fn new(bytes: Vec<u8>) -> CachedBody {
        let hash = content_hash(&bytes);
        CachedBody { bytes: Bytes::from(bytes), hash }
    }

    /// Serialises a document once. serde_json cannot fail on a `Value`.
    pub fn json(value: &serde_json::Value) -> CachedBody {
        CachedBody::new(serde_json::to_vec(value).expect("a serde_json::Value always serialises"))
    }

    pub fn etag(&self) -> String {
        format!("\"{}\"", self.hash)
    }

    /// `304` when the request's `If-None-Match` names this body, else `200` with the bytes.
    /// `extra` headers are set on both (Vary, Cache-Control...).
    pub fn respond(&self, request: &HeaderMap, content_type: &'static str, extra: &[(header::HeaderName, HeaderValue)]) -> Response {
        let etag = self.etag();
        let not_modified = request
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|tag| {
                let tag = tag.trim();
                tag == "*" || tag.trim_start_matches("W/") == etag
            });
        let mut response = if not_modified { StatusCode::NOT_MODIFIED.into_response() } else { self.bytes.clone().into_response() };
        let headers = response.headers_mut();
        if !not_modified {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        headers.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex is a valid header value"));
        for (name, value) in extra {
            headers.insert(name.clone(), value.clone());
        }
        response
    }
}

/// A 128-bit hex digest of `bytes`. Only needs to change when the content changes and to be the
/// same for the same content in every process of one build (std's SipHash keys are fixed).
pub fn content_hash(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(32);
    for salt in [0x6b75_6265u64, 0x6c69_7465u64] {
        let mut h = std::hash::DefaultHasher::new();
        salt.hash(&mut h);
        bytes.hash(&mut h);
        out.push_str(&format!("{:016X}", h.finish()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_and_content_sensitive() {
        assert_eq!(content_hash(b"abc"), content_hash(b"abc"));
        assert_ne!(content_hash(b"abc"), content_hash(b"abd"));
        assert_eq!(content_hash(b"abc").len(), 32);
    }

    #[test]
    fn if_none_match_gives_304() {
        let body = CachedBody::new(b"{}".to_vec());
        let mut req = HeaderMap::new();
        assert_eq!(body.respond(&req, "application/json", &[]).status(), StatusCode::OK);
        req.insert(header::IF_NONE_MATCH, HeaderValue::from_str(&format!("\"other\", {}", body.etag())).unwrap());
        let resp = body.respond(&req, "application/json", &[]);
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(resp.headers()[header::ETAG], body.etag().as_str());
        req.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"stale\""));
        assert_eq!(body.respond(&req, "application/json", &[]).status(), StatusCode::OK);
    }
}
