//! What representation a client asked for in `Accept`: the object itself, a server-side
//! `Table` (`kubectl get`), or `PartialObjectMetadata` (metadata only, as controllers ask).

use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::request::Query;
use crate::resources::Resource;
use crate::table::IncludeObject;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Output {
    Object,
    Table(IncludeObject),
    Metadata,
}

/// The first media type in `Accept` that this server can produce, as kube-apiserver picks.
pub fn output(headers: &HeaderMap, query: &Query) -> Output {
    let accept = headers.get(axum::http::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    for media in accept.split(',') {
        let params: Vec<(&str, &str)> = media.split(';').skip(1).filter_map(|p| p.trim().split_once('=')).collect();
        let get = |k: &str| params.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        match (get("as"), get("g")) {
            (Some("Table"), Some("meta.k8s.io")) => return Output::Table(IncludeObject::from_query(query.get("includeObject").map(String::as_str))),
            (Some("PartialObjectMetadata" | "PartialObjectMetadataList"), Some("meta.k8s.io")) => return Output::Metadata,
            (None, _) => return Output::Object,
            _ => continue,
        }
    }
    Output::Object
}

/// An object as `PartialObjectMetadata`.
pub fn partial_metadata(object: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": object["metadata"]})
}

/// A list of objects in the representation asked for.
pub fn list_body(output: Output, resource: &Resource, items: Vec<Value>, list_meta: Value) -> Value {
    match output {
        Output::Object => {
            let items: Vec<Value> = items
                .into_iter()
                .map(|mut o| {
                    // Typed lists carry the kind once, as kube-apiserver encodes them.
                    if let Some(m) = o.as_object_mut() {
                        m.remove("kind");
                        m.remove("apiVersion");
                    }
                    o
                })
                .collect();
            json!({"kind": resource.list_kind(), "apiVersion": resource.api_version(), "metadata": list_meta, "items": items})
        }
        Output::Metadata => json!({
            "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta,
            "items": items.iter().map(partial_metadata).collect::<Vec<_>>(),
        }),
        Output::Table(include) => {
            let mut table = crate::table::table(resource, &items, include, super::objects::now());
            table["metadata"] = list_meta;
            table
        }
    }
}

/// One object in the representation asked for.
pub fn object_body(output: Output, resource: &Resource, object: Value) -> Value {
    match output {
        Output::Object => object,
        Output::Metadata => partial_metadata(&object),
        Output::Table(include) => {
            let mut table = crate::table::table(resource, std::slice::from_ref(&object), include, super::objects::now());
            table["metadata"] = json!({"resourceVersion": object["metadata"]["resourceVersion"]});
            table
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(accept: &str) -> Output {
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::ACCEPT, accept.parse().unwrap());
        output(&h, &Query::new())
    }

    #[test]
    fn kubectl_get_asks_for_a_table() {
        assert!(matches!(out("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"), Output::Table(_)));
        assert_eq!(out("application/json"), Output::Object);
        assert_eq!(out("application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json"), Output::Metadata);
        assert_eq!(out("application/json;as=Widget;g=x.io, application/json"), Output::Object);
        assert_eq!(output(&HeaderMap::new(), &Query::new()), Output::Object);
    }
}
