//! list: label and field selectors, `limit` with `continue` tokens that page through one
//! consistent snapshot, and `resourceVersion`/`resourceVersionMatch`.

use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use serde_json::{Value, json};

use super::objects::{decode, parse_revision};
use super::selectors::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::{Api, Call, json_response, negotiate};
use crate::storage::Revision;

/// Where a paged list goes on: the snapshot's revision and the last key returned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Continue {
    rv: Revision,
    start: String,
}

fn encode_continue(c: &Continue) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(c).expect("serializable"))
}

fn decode_continue(token: &str, prefix: &str) -> Result<Continue, ApiError> {
    let bad = || ApiError::bad_request(format!("continue key is not valid: {token:?}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let c: Continue = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    // A token from another collection must not walk this one.
    if !c.start.starts_with(prefix) {
        return Err(bad());
    }
    Ok(c)
}

/// The selectors of a list or watch call.
pub(crate) fn selectors(call: &Call) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(call.query.get("labelSelector").map(String::as_str).unwrap_or(""))?;
    let fields = FieldSelector::parse(call.query.get("fieldSelector").map(String::as_str).unwrap_or(""), &call.info.resource.kind)?;
    Ok((labels, fields))
}

/// The matching objects of the call's collection, paged: (items, revision, continue token,
/// remaining count if known).
pub(crate) async fn read(api: &Api, call: &Call) -> Result<(Vec<Value>, Revision, Option<String>), ApiError> {
    let info = &call.info;
    let prefix = info.resource.key_prefix(info.namespace.as_deref());
    let (labels, fields) = selectors(call)?;
    let limit: usize = match call.query.get("limit").filter(|l| !l.is_empty()) {
        Some(l) => l.parse().map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
        None => 0,
    };
    let (mut revision, mut start) = match call.query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let c = decode_continue(token, &prefix)?;
            (c.rv, Some(c.start))
        }
        None => {
            let exact = call.query.get("resourceVersionMatch").is_some_and(|m| m == "Exact");
            match call.query.get("resourceVersion").filter(|v| exact && !v.is_empty()) {
                Some(v) => (parse_revision(v)?, None),
                None => (0, None),
            }
        }
    };
    let mut items = Vec::new();
    loop {
        // Fill a page even when selectors drop items: read ahead in chunks.
        let chunk = if limit == 0 { 0 } else { (limit - items.len()).max(64) };
        let page = api.store.list(&prefix, start.as_deref(), chunk, revision).await.map_err(|e| match e {
            crate::storage::StorageError::Compacted { .. } if call.query.contains_key("continue") => ApiError::expired(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
            ),
            e => ApiError::from_storage(e, &info.resource.group, &info.resource.plural, ""),
        })?;
        revision = page.revision;
        let more = page.more;
        for kv in &page.items {
            start = Some(kv.key.clone());
            let object = decode(&info.resource, kv, kv.mod_revision)?;
            if labels.matches(&object) && fields.matches(&object) {
                items.push(object);
                if limit != 0 && items.len() == limit {
                    let last = kv.key.clone();
                    let rest_exists = more || page.items.last().is_some_and(|l| l.key != last);
                    let token = rest_exists.then(|| encode_continue(&Continue { rv: revision, start: last }));
                    return Ok((items, revision, token));
                }
            }
        }
        if !more || limit == 0 {
            return Ok((items, revision, None));
        }
    }
}

pub(crate) async fn list(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let (items, revision, token) = read(api, call).await?;
    let mut meta = json!({"resourceVersion": revision.to_string()});
    if let Some(t) = token {
        meta["continue"] = json!(t);
    }
    let output = negotiate::output(&call.headers, &call.query);
    Ok(json_response(StatusCode::OK, &negotiate::list_body(output, &call.info.resource, items, meta)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_stay_in_their_collection() {
        let c = Continue { rv: 42, start: "/registry/core/pods/default/web-3".into() };
        let t = encode_continue(&c);
        assert_eq!(decode_continue(&t, "/registry/core/pods/default/").unwrap(), c);
        assert_eq!(decode_continue(&t, "/registry/core/secrets/").unwrap_err().code, 400);
        assert_eq!(decode_continue("%%%", "/").unwrap_err().code, 400);
    }
}
