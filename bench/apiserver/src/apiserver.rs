//! The API server over HTTPS with the admin client certificate, as kubectl reaches it: one
//! reqwest client (so one TLS connection, HTTP/2 when the server offers it through ALPN,
//! requests multiplexed on it) for every request, watches included.

use std::time::Duration;

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::backend::{Backend, BackendError, Listed, Watch};
use crate::kubeconfig::AdminAccess;

const TIMEOUT: Duration = Duration::from_secs(120);

pub struct ApiServer {
    client: reqwest::Client,
    server: String,
    namespace: String,
}

#[derive(Deserialize)]
struct ListMeta {
    #[serde(rename = "resourceVersion", default)]
    resource_version: String,
    #[serde(rename = "continue", default)]
    continue_token: Option<String>,
}

#[derive(Deserialize)]
struct List {
    metadata: ListMeta,
    items: Vec<IgnoredAny>,
}

fn http(op: &str) -> impl FnOnce(reqwest::Error) -> BackendError + '_ {
    move |source| BackendError::Http { op: op.to_string(), source }
}

async fn expect(op: &str, response: reqwest::Response, status: u16) -> Result<bytes::Bytes, BackendError> {
    let got = response.status();
    let body = response.bytes().await.map_err(http(op))?;
    if got.as_u16() != status {
        return Err(BackendError::Status { op: op.to_string(), status: got, body: String::from_utf8_lossy(&body).chars().take(300).collect() });
    }
    Ok(body)
}

impl ApiServer {
    pub fn new(access: &AdminAccess, namespace: &str) -> Result<ApiServer, BackendError> {
        let ca = reqwest::Certificate::from_pem(&access.ca_pem).map_err(|e| BackendError::Client(format!("the kubeconfig's CA: {e}")))?;
        let identity = reqwest::Identity::from_pem(&access.identity_pem).map_err(|e| BackendError::Client(format!("the kubeconfig's client certificate: {e}")))?;
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .identity(identity)
            // Go's HTTP/2 client (kubectl's) opens 4 MiB stream windows; h2's 64 KiB default
            // would make a 20 MB list wait for window updates.
            .http2_initial_stream_window_size(4 << 20)
            .http2_initial_connection_window_size(16 << 20)
            .build()
            .map_err(|e| BackendError::Client(e.to_string()))?;
        Ok(ApiServer { client, server: access.server.trim_end_matches('/').to_string(), namespace: namespace.to_string() })
    }

    fn pods(&self) -> String {
        format!("{}/api/v1/namespaces/{}/pods", self.server, self.namespace)
    }

    /// The protocol the server answered with (HTTP/2 expected), for the report.
    pub async fn protocol(&self) -> Result<String, BackendError> {
        let op = "GET /version";
        let response = self.client.get(format!("{}/version", self.server)).timeout(TIMEOUT).send().await.map_err(http(op))?;
        let version = response.version();
        expect(op, response, 200).await?;
        Ok(format!("{version:?}"))
    }
}

impl Backend for ApiServer {
    type Watch = ApiWatch;

    async fn prepare(&self) -> Result<(), BackendError> {
        let op = "creating the namespace";
        let body = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}});
        let url = format!("{}/api/v1/namespaces", self.server);
        let response = self.client.post(url).json_body(&body).timeout(TIMEOUT).send().await.map_err(http(op))?;
        match response.status().as_u16() {
            201 | 409 => Ok(()),
            _ => expect(op, response, 201).await.map(drop),
        }
    }

    async fn create(&self, name: &str) -> Result<(), BackendError> {
        let body = crate::pod::pod(&self.namespace, name);
        let response = self.client.post(self.pods()).json_body(&body).timeout(TIMEOUT).send().await.map_err(http("create"))?;
        expect("create", response, 201).await.map(drop)
    }

    async fn get(&self, name: &str) -> Result<(), BackendError> {
        let response = self.client.get(format!("{}/{name}", self.pods())).timeout(TIMEOUT).send().await.map_err(http("get"))?;
        expect("get", response, 200).await.map(drop)
    }

    async fn list(&self, page: Option<usize>) -> Result<Listed, BackendError> {
        let mut listed = Listed { items: 0, pages: 0 };
        let mut token: Option<String> = None;
        loop {
            let mut query: Vec<(&str, String)> = Vec::new();
            if let Some(limit) = page {
                query.push(("limit", limit.to_string()));
            }
            if let Some(t) = &token {
                query.push(("continue", t.clone()));
            }
            let response = self.client.get(self.pods()).query(&query).timeout(TIMEOUT).send().await.map_err(http("list"))?;
            let body = expect("list", response, 200).await?;
            let list: List = serde_json::from_slice(&body).map_err(|e| BackendError::Unexpected { op: "list".into(), what: e.to_string() })?;
            listed.items += list.items.len();
            listed.pages += 1;
            match list.metadata.continue_token.filter(|t| !t.is_empty()) {
                Some(t) if page.is_some() => token = Some(t),
                _ => return Ok(listed),
            }
        }
    }

    async fn watch(&self) -> Result<ApiWatch, BackendError> {
        // The list's resourceVersion, so the watch starts now instead of replaying every
        // pod as ADDED.
        let op = "list before watch";
        let response = self.client.get(self.pods()).query(&[("limit", "1")]).timeout(TIMEOUT).send().await.map_err(http(op))?;
        let body = expect(op, response, 200).await?;
        let list: List = serde_json::from_slice(&body).map_err(|e| BackendError::Unexpected { op: op.into(), what: e.to_string() })?;
        let query = [("watch", "true"), ("resourceVersion", list.metadata.resource_version.as_str())];
        let response = self.client.get(self.pods()).query(&query).send().await.map_err(http("watch"))?;
        if response.status() != 200 {
            return expect("watch", response, 200).await.map(|_| unreachable!());
        }
        Ok(ApiWatch { response, buffer: Vec::new() })
    }
}

/// `.json(...)` needs reqwest's json feature; this is the same with serde_json.
trait JsonBody {
    fn json_body(self, value: &serde_json::Value) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, value: &serde_json::Value) -> Self {
        self.header(reqwest::header::CONTENT_TYPE, "application/json").body(serde_json::to_vec(value).expect("a JSON value serializes"))
    }
}

pub struct ApiWatch {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

#[derive(Deserialize)]
struct WatchEvent {
    #[serde(rename = "type")]
    kind: String,
    object: EventObject,
}

#[derive(Deserialize)]
struct EventObject {
    #[serde(default)]
    metadata: Option<ObjectMeta>,
}

#[derive(Deserialize)]
struct ObjectMeta {
    #[serde(default)]
    name: String,
}

/// The first complete event in `buffer`, removed from it; None if it holds only part of one.
fn take_event(buffer: &mut Vec<u8>) -> Result<Option<WatchEvent>, serde_json::Error> {
    let mut events = serde_json::Deserializer::from_slice(buffer).into_iter::<WatchEvent>();
    match events.next() {
        Some(Ok(event)) => {
            let used = events.byte_offset();
            buffer.drain(..used);
            Ok(Some(event))
        }
        Some(Err(e)) if e.is_eof() => Ok(None),
        Some(Err(e)) => Err(e),
        None => Ok(None),
    }
}

impl Watch for ApiWatch {
    async fn next_added(&mut self) -> Result<String, BackendError> {
        loop {
            while let Some(event) = take_event(&mut self.buffer).map_err(|e| BackendError::Unexpected { op: "watch".into(), what: e.to_string() })? {
                match (event.kind.as_str(), event.object.metadata) {
                    ("ADDED", Some(meta)) => return Ok(meta.name),
                    ("ERROR", _) => return Err(BackendError::Unexpected { op: "watch".into(), what: "an ERROR event (the watch expired?)".into() }),
                    _ => {}
                }
            }
            match self.response.chunk().await.map_err(http("watch"))? {
                Some(chunk) => self.buffer.extend_from_slice(&chunk),
                None => return Err(BackendError::Unexpected { op: "watch".into(), what: "the server ended the watch".into() }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_come_out_whole() {
        let stream = b"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}\n{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{}}}\n{\"type\":\"ADDED\",\"obj";
        let mut buffer = stream.to_vec();
        let first = take_event(&mut buffer).unwrap().unwrap();
        assert_eq!((first.kind.as_str(), first.object.metadata.unwrap().name.as_str()), ("ADDED", "a"));
        assert_eq!(take_event(&mut buffer).unwrap().unwrap().kind, "BOOKMARK");
        assert!(take_event(&mut buffer).unwrap().is_none(), "half an event is not an event");
        buffer.extend_from_slice(b"ect\":{\"metadata\":{\"name\":\"b\"}}}\n");
        assert_eq!(take_event(&mut buffer).unwrap().unwrap().object.metadata.unwrap().name, "b");
        assert!(take_event(&mut buffer).unwrap().is_none());
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(take_event(&mut b"<html>".to_vec()).is_err());
    }
}
