//! watch: a stream of `{"type": ..., "object": ...}` lines from a resource version (or the
//! current state as ADDED events first), with selectors applied to both the old and new
//! object (an object leaving the selection is DELETED for the watcher), bookmarks,
//! `timeoutSeconds`, and 410 Expired as an ERROR event when the history is gone.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::negotiate::{self, Output};
use super::objects::{decode, parse_revision};
use super::selectors::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::{Api, Call};
use crate::resources::Resource;
use crate::storage::{Event, Revision};

/// What a watcher is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Added,
    Modified,
    Deleted,
    Bookmark,
    Error,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Added => "ADDED",
            Kind::Modified => "MODIFIED",
            Kind::Deleted => "DELETED",
            Kind::Bookmark => "BOOKMARK",
            Kind::Error => "ERROR",
        }
    }
}

struct Filter {
    resource: Resource,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn matches(&self, o: &Value) -> bool {
        self.labels.matches(o) && self.fields.matches(o)
    }

    /// The watch event a store event is for this watcher, if any.
    fn translate(&self, event: &Event) -> Result<Option<(Kind, Value)>, ApiError> {
        match event {
            Event::Put { kv, prev } => {
                let object = decode(&self.resource, kv, kv.mod_revision)?;
                let now = self.matches(&object);
                let before = match prev {
                    Some(p) => Some(self.matches(&decode(&self.resource, p, p.mod_revision)?)),
                    None => None,
                };
                Ok(match (before, now) {
                    (None | Some(false), true) => Some((Kind::Added, object)),
                    (Some(true), true) => Some((Kind::Modified, object)),
                    (Some(true), false) => Some((Kind::Deleted, object)),
                    (_, false) => None,
                })
            }
            Event::Delete { revision, prev, .. } => {
                let object = decode(&self.resource, prev, *revision)?;
                Ok(self.matches(&object).then_some((Kind::Deleted, object)))
            }
        }
    }
}

/// Renders events as the client asked (objects or one-row tables).
struct Renderer {
    output: Output,
    resource: Resource,
    columns_sent: bool,
}

impl Renderer {
    fn line(&mut self, kind: Kind, object: Value) -> Vec<u8> {
        let object = match (kind, self.output) {
            (Kind::Bookmark | Kind::Error, _) => object,
            (_, Output::Object) => object,
            (_, output) => {
                let mut body = negotiate::object_body(output, &self.resource, object);
                // Column definitions go with the first table only, as kube-apiserver sends them.
                if matches!(output, Output::Table(_)) {
                    if self.columns_sent {
                        body["columnDefinitions"] = Value::Null;
                    }
                    self.columns_sent = true;
                }
                body
            }
        };
        let mut line = serde_json::to_vec(&json!({"type": kind.as_str(), "object": object})).expect("JSON serializes");
        line.push(b'\n');
        line
    }
}

fn bookmark(resource: &Resource, revision: Revision, initial_events_end: bool) -> Value {
    let mut meta = json!({"resourceVersion": revision.to_string()});
    if initial_events_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"kind": resource.kind, "apiVersion": resource.api_version(), "metadata": meta})
}

pub(crate) async fn watch(api: Arc<Api>, call: Call) -> Response {
    match start(api, call).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn start(api: Arc<Api>, call: Call) -> Result<Response, ApiError> {
    let info = &call.info;
    let resource = info.resource.clone();
    let (labels, mut fields) = super::list::selectors(&call)?;
    if let Some(name) = &info.name {
        // GET .../pods/NAME?watch=true: a watch of that one object.
        fields = FieldSelector::parse(&format!("metadata.name={name}"), &resource.kind)?;
    }
    let filter = Filter { resource: resource.clone(), labels, fields };
    let q = |k: &str| call.query.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let bookmarks = q("allowWatchBookmarks") == Some("true");
    let send_initial = q("sendInitialEvents") == Some("true");
    let timeout = match q("timeoutSeconds") {
        Some(t) => Duration::from_secs(t.parse().map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {t:?}")))?),
        None => api.watch_timeout,
    };
    let prefix = resource.key_prefix(info.namespace.as_deref());
    let output = negotiate::output(&call.headers, &call.query);
    let mut renderer = Renderer { output, resource: resource.clone(), columns_sent: false };

    // The initial state, as ADDED events: when no resource version is given (or "0"), or when
    // asked with sendInitialEvents.
    let rv = q("resourceVersion");
    let mut initial: Vec<Vec<u8>> = Vec::new();
    let after: Revision = if rv.is_none() || rv == Some("0") || send_initial {
        let mut start_key: Option<String> = None;
        let mut revision = 0;
        loop {
            let page = api.store.list(&prefix, start_key.as_deref(), 500, revision).await.map_err(|e| ApiError::from_storage(e, &resource.group, &resource.plural, ""))?;
            revision = page.revision;
            for kv in &page.items {
                let object = decode(&resource, kv, kv.mod_revision)?;
                if filter.matches(&object) {
                    initial.push(renderer.line(Kind::Added, object));
                }
            }
            start_key = page.items.last().map(|kv| kv.key.clone());
            if !page.more {
                break;
            }
        }
        if send_initial && bookmarks {
            initial.push(renderer.line(Kind::Bookmark, bookmark(&resource, revision, true)));
        }
        revision
    } else {
        parse_revision(rv.unwrap_or("0"))?
    };

    let events = match api.store.watch(&prefix, after).await {
        Ok(s) => s,
        Err(e) => {
            // History is gone: kube-apiserver answers with one ERROR event carrying 410.
            let status = ApiError::from_storage(e, &resource.group, &resource.plural, "").to_status();
            let line = renderer.line(Kind::Error, status);
            return Ok(stream_response(futures_util::stream::iter(vec![Ok::<_, std::io::Error>(line)]).boxed()));
        }
    };

    let bookmark_every = api.bookmark_interval;
    let state = (events, filter, renderer, after, tokio::time::Instant::now() + timeout, tokio::time::Instant::now() + bookmark_every, false);
    let live = futures_util::stream::unfold(state, move |(mut events, filter, mut renderer, mut last, deadline, mut next_bookmark, done)| {
        let resource = resource.clone();
        async move {
            if done {
                return None;
            }
            loop {
                let sleep_until = if bookmarks { next_bookmark.min(deadline) } else { deadline };
                tokio::select! {
                    item = events.next() => match item {
                        None => return None,
                        Some(Err(e)) => {
                            let status = ApiError::from_storage(e, &resource.group, &resource.plural, "").to_status();
                            let line = renderer.line(Kind::Error, status);
                            return Some((Ok::<_, std::io::Error>(line), (events, filter, renderer, last, deadline, next_bookmark, true)));
                        }
                        Some(Ok(event)) => {
                            last = event.revision();
                            match filter.translate(&event) {
                                Ok(Some((kind, object))) => {
                                    let line = renderer.line(kind, object);
                                    return Some((Ok(line), (events, filter, renderer, last, deadline, next_bookmark, false)));
                                }
                                Ok(None) => continue,
                                Err(e) => {
                                    let line = renderer.line(Kind::Error, e.to_status());
                                    return Some((Ok(line), (events, filter, renderer, last, deadline, next_bookmark, true)));
                                }
                            }
                        }
                    },
                    _ = tokio::time::sleep_until(sleep_until) => {
                        if tokio::time::Instant::now() >= deadline {
                            return None;
                        }
                        next_bookmark = tokio::time::Instant::now() + bookmark_every;
                        let line = renderer.line(Kind::Bookmark, bookmark(&resource, last, false));
                        return Some((Ok(line), (events, filter, renderer, last, deadline, next_bookmark, false)));
                    }
                }
            }
        }
    });
    let initial = futures_util::stream::iter(initial.into_iter().map(Ok::<_, std::io::Error>));
    Ok(stream_response(initial.chain(live).boxed()))
}

fn stream_response(stream: futures_util::stream::BoxStream<'static, Result<Vec<u8>, std::io::Error>>) -> Response {
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(axum::http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::KeyValue;

    fn kv(rev: Revision, labels: Value) -> KeyValue {
        let o = json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p", "namespace": "d", "labels": labels}});
        KeyValue { key: "/registry/core/pods/d/p".into(), value: serde_json::to_vec(&o).unwrap(), create_revision: 1, mod_revision: rev }
    }

    #[test]
    fn objects_entering_and_leaving_a_selection() {
        let pods = crate::resources::builtin().get("", "v1", "pods").unwrap().clone();
        let f = Filter { resource: pods, labels: LabelSelector::parse("app=web").unwrap(), fields: FieldSelector::default() };
        let web = json!({"app": "web"});
        let db = json!({"app": "db"});
        let ev = |prev: Option<KeyValue>, now: KeyValue| f.translate(&Event::Put { kv: now, prev }).unwrap().map(|(k, o)| (k, o["metadata"]["resourceVersion"].clone()));
        assert_eq!(ev(None, kv(2, web.clone())), Some((Kind::Added, json!("2"))));
        assert_eq!(ev(Some(kv(2, web.clone())), kv(3, web.clone())), Some((Kind::Modified, json!("3"))));
        assert_eq!(ev(Some(kv(3, web.clone())), kv(4, db.clone())), Some((Kind::Deleted, json!("4"))));
        assert_eq!(ev(Some(kv(4, db.clone())), kv(5, web.clone())), Some((Kind::Added, json!("5"))));
        assert_eq!(ev(Some(kv(5, db.clone())), kv(6, db.clone())), None);
        let del = f.translate(&Event::Delete { key: "k".into(), revision: 9, prev: kv(5, web) }).unwrap().unwrap();
        assert_eq!((del.0, del.1["metadata"]["resourceVersion"].as_str()), (Kind::Deleted, Some("9")));
    }
}
