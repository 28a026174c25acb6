//! Resources served in one form and stored in another: events.k8s.io/v1 Events are stored as
//! core/v1 Events (as kube-apiserver stores them), so an event written through either API is
//! seen through both. The field renames are events.k8s.io's.

use serde_json::{Map, Value, json};

use crate::resources::Resource;

/// (events.k8s.io/v1 name, core/v1 name) of the fields that differ.
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
    ("reportingController", "reportingComponent"),
];

fn is_new_event(r: &Resource) -> bool {
    r.group == "events.k8s.io" && r.plural == "events"
}

fn rename(object: Value, pairs: impl Iterator<Item = (&'static str, &'static str)>, api_version: &str) -> Value {
    let Value::Object(mut map) = object else { return object };
    let mut out = Map::new();
    let pairs: Vec<(&str, &str)> = pairs.collect();
    for (k, v) in std::mem::take(&mut map) {
        let k = pairs.iter().find(|(from, _)| *from == k).map(|(_, to)| to.to_string()).unwrap_or(k);
        out.insert(k, v);
    }
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!("Event"));
    Value::Object(out)
}

/// A stored object as the resource serves it.
pub fn to_served(r: &Resource, object: Value) -> Value {
    if !is_new_event(r) {
        return object;
    }
    rename(object, EVENT_FIELDS.iter().map(|(new, old)| (*old, *new)), "events.k8s.io/v1")
}

/// A served object as it is stored.
pub fn to_stored(r: &Resource, object: Value) -> Value {
    if !is_new_event(r) {
        return object;
    }
    rename(object, EVENT_FIELDS.iter().copied(), "v1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::builtin;

    #[test]
    fn events_round_trip_between_the_two_apis() {
        let reg = builtin();
        let new_api = reg.get("events.k8s.io", "v1", "events").unwrap();
        let served = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"}, "regarding": {"kind": "Pod", "name": "p"}, "note": "pulled", "reason": "Pulled", "reportingController": "kubelet", "deprecatedCount": 2});
        let stored = to_stored(new_api, served.clone());
        assert_eq!(stored["apiVersion"], "v1");
        assert_eq!(stored["involvedObject"]["name"], "p");
        assert_eq!(stored["message"], "pulled");
        assert_eq!(stored["reportingComponent"], "kubelet");
        assert_eq!(stored["count"], 2);
        assert!(stored.get("note").is_none());
        assert_eq!(to_served(new_api, stored), served);
        let core = reg.get("", "v1", "events").unwrap();
        assert_eq!(to_served(core, json!({"message": "m"})), json!({"message": "m"}));
    }
}
