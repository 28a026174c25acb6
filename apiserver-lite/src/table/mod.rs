//! Server-side `Table` output (`meta.k8s.io/v1`): the columns `kubectl get` shows.
//!
//! kubectl asks for `application/json;as=Table;g=meta.k8s.io;v=v1` and prints whatever
//! columns the server sends, so these must be the columns and cell texts kube-apiserver 1.33
//! prints (its pkg/printers/internalversion). Columns of priority 1 are the `-o wide` ones;
//! the server always fills them and kubectl hides them unless asked. Printers work on the
//! stored JSON, not on typed objects, so a partial or odd object still prints.

mod age;
mod cluster;
mod network;
mod selector;
mod workloads;

use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::resources::Resource;

pub use age::{human_duration, since};
pub use selector::{format_label_selector, format_labels};

/// What each row carries besides its cells (`?includeObject=` on the request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeObject {
    /// `object` is null.
    None,
    /// `object` is a `PartialObjectMetadata` (kind, apiVersion meta.k8s.io/v1, metadata).
    Metadata,
    /// `object` is the whole object; kubectl's default (it needs it for `--show-labels`).
    Object,
}

impl IncludeObject {
    /// Reads the query parameter. Absent (or unknown) means `Metadata`, the API's
    /// documented default; kubectl itself always asks for `Object`.
    pub fn from_query(value: Option<&str>) -> IncludeObject {
        match value {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

/// One column definition, as `columnDefinitions[]` carries it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Column {
    pub name: &'static str,
    /// OpenAPI type of the cells: `string`, `integer`, `boolean`, `date`.
    pub kind: &'static str,
    /// `name` for the column holding the object's name, else empty.
    pub format: &'static str,
    pub description: &'static str,
    /// 0 for the default columns, 1 for those only `-o wide` shows.
    pub priority: i32,
}

pub(crate) const fn col(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column { name, kind, format: "", description, priority: 0 }
}

pub(crate) const fn wide(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column { name, kind, format: "", description, priority: 1 }
}

pub(crate) const NAME: Column = Column {
    name: "Name",
    kind: "string",
    format: "name",
    description: "Name must be unique within a namespace. It is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically.",
    priority: 0,
};
pub(crate) const AGE: Column = col("Age", "string", "CreationTimestamp is a timestamp representing the server time when this object was created.");

/// One printed row: its cells (strings, integers) and, for finished pods, the conditions
/// that let kubectl hide them.
#[derive(Debug, Default)]
pub(crate) struct Row {
    pub cells: Vec<Value>,
    pub conditions: Option<Value>,
}

impl Row {
    pub fn new(cells: Vec<Value>) -> Row {
        Row { cells, conditions: None }
    }
}

type Printer = fn(&Value, OffsetDateTime) -> Row;

/// The columns and printer of a resource, or None for the default (NAME, CREATED AT).
fn printer(group: &str, plural: &str) -> Option<(&'static [Column], Printer)> {
    Some(match (group, plural) {
        ("", "pods") => (workloads::POD_COLUMNS, workloads::pod),
        ("apps", "deployments") => (workloads::DEPLOYMENT_COLUMNS, workloads::deployment),
        ("apps", "replicasets") => (workloads::REPLICASET_COLUMNS, workloads::replicaset),
        ("apps", "statefulsets") => (workloads::STATEFULSET_COLUMNS, workloads::statefulset),
        ("apps", "daemonsets") => (workloads::DAEMONSET_COLUMNS, workloads::daemonset),
        ("apps", "controllerrevisions") => (workloads::CONTROLLERREVISION_COLUMNS, workloads::controllerrevision),
        ("batch", "jobs") => (workloads::JOB_COLUMNS, workloads::job),
        ("batch", "cronjobs") => (workloads::CRONJOB_COLUMNS, workloads::cronjob),
        ("", "services") => (network::SERVICE_COLUMNS, network::service),
        ("", "endpoints") => (network::ENDPOINTS_COLUMNS, network::endpoints),
        ("discovery.k8s.io", "endpointslices") => (network::ENDPOINTSLICE_COLUMNS, network::endpointslice),
        ("", "nodes") => (cluster::NODE_COLUMNS, cluster::node),
        ("", "namespaces") => (cluster::NAMESPACE_COLUMNS, cluster::namespace),
        ("", "configmaps") => (cluster::CONFIGMAP_COLUMNS, cluster::configmap),
        ("", "secrets") => (cluster::SECRET_COLUMNS, cluster::secret),
        ("", "serviceaccounts") => (cluster::SERVICEACCOUNT_COLUMNS, cluster::serviceaccount),
        ("", "events") => (cluster::EVENT_COLUMNS, cluster::event),
        ("events.k8s.io", "events") => (cluster::EVENT_COLUMNS, cluster::events_k8s_io_event),
        ("coordination.k8s.io", "leases") => (cluster::LEASE_COLUMNS, cluster::lease),
        ("certificates.k8s.io", "certificatesigningrequests") => (cluster::CSR_COLUMNS, cluster::csr),
        ("", "persistentvolumes") => (cluster::PV_COLUMNS, cluster::persistentvolume),
        ("", "persistentvolumeclaims") => (cluster::PVC_COLUMNS, cluster::persistentvolumeclaim),
        _ => return None,
    })
}

const DEFAULT_COLUMNS: &[Column] = &[
    NAME,
    col("Created At", "date", "CreationTimestamp is a timestamp representing the server time when this object was created."),
];

/// The default row: the name and the creation time in RFC 3339 (UTC).
fn default_row(object: &Value, _now: OffsetDateTime) -> Row {
    let created = str_at(object, "/metadata/creationTimestamp");
    let created = age::parse_timestamp(created)
        .and_then(|t| t.to_offset(time::UtcOffset::UTC).replace_nanosecond(0).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default();
    Row::new(vec![json!(str_at(object, "/metadata/name")), json!(created)])
}

/// The `meta.k8s.io/v1` Table of `objects` (all of `resource`), printed at `now`.
/// `metadata` is left empty for the caller to fill with the list's resourceVersion.
pub fn table(resource: &Resource, objects: &[Value], include: IncludeObject, now: OffsetDateTime) -> Value {
    let (columns, print) = printer(&resource.group, &resource.plural).unwrap_or((DEFAULT_COLUMNS, default_row));
    let column_definitions: Vec<Value> = columns
        .iter()
        .map(|c| json!({"name": c.name, "type": c.kind, "format": c.format, "description": c.description, "priority": c.priority}))
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let row = print(object, now);
            let mut out = Map::new();
            out.insert("cells".into(), Value::Array(row.cells));
            if let Some(conditions) = row.conditions {
                out.insert("conditions".into(), conditions);
            }
            out.insert("object".into(), row_object(object, include));
            Value::Object(out)
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": column_definitions,
        "rows": rows,
    })
}

fn row_object(object: &Value, include: IncludeObject) -> Value {
    match include {
        IncludeObject::None => Value::Null,
        IncludeObject::Object => object.clone(),
        IncludeObject::Metadata => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
        }),
    }
}

/// The string at a JSON pointer, or "" (upstream prints a Go zero value).
pub(crate) fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The integer at a JSON pointer, or 0.
pub(crate) fn int_at(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// The array at a JSON pointer, or an empty slice.
pub(crate) fn array_at<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// The AGE cell of an object.
pub(crate) fn age_of(v: &Value, now: OffsetDateTime) -> Value {
    json!(since(v.pointer("/metadata/creationTimestamp").and_then(Value::as_str), now))
}

/// Container names and images of a pod spec, each comma-joined (the CONTAINERS and IMAGES
/// wide columns of the workload kinds).
pub(crate) fn container_cells(pod_spec: Option<&Value>) -> (Value, Value) {
    let containers = pod_spec.and_then(|s| s.get("containers")).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    let names: Vec<&str> = containers.iter().map(|c| str_at(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(c, "/image")).collect();
    (json!(names.join(",")), json!(images.join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::builtin;
    use time::macros::datetime;

    fn resource(group: &str, plural: &str) -> Resource {
        builtin().iter().find(|r| r.group == group && r.plural == plural).cloned().expect("a built-in resource")
    }

    #[test]
    fn include_object_parses_the_query_values() {
        assert_eq!(IncludeObject::from_query(Some("None")), IncludeObject::None);
        assert_eq!(IncludeObject::from_query(Some("Object")), IncludeObject::Object);
        assert_eq!(IncludeObject::from_query(Some("Metadata")), IncludeObject::Metadata);
        assert_eq!(IncludeObject::from_query(None), IncludeObject::Metadata);
    }

    #[test]
    fn rows_carry_the_object_as_asked() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "default"}, "data": {"k": "v"}});
        let now = datetime!(2025-01-01 0:00 UTC);
        let r = resource("", "configmaps");
        let t = table(&r, std::slice::from_ref(&cm), IncludeObject::Object, now);
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(t["rows"][0]["object"], cm);
        let t = table(&r, std::slice::from_ref(&cm), IncludeObject::Metadata, now);
        assert_eq!(t["rows"][0]["object"], json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": {"name": "a", "namespace": "default"}}));
        let t = table(&r, std::slice::from_ref(&cm), IncludeObject::None, now);
        assert_eq!(t["rows"][0]["object"], Value::Null);
        assert_eq!(t["columnDefinitions"][0], json!({"name": "Name", "type": "string", "format": "name", "description": NAME.description, "priority": 0}));
    }

    #[test]
    fn other_kinds_print_name_and_created_at() {
        let mut r = resource("", "configmaps");
        r.group = "example.com".into();
        r.plural = "widgets".into();
        let w = json!({"metadata": {"name": "w1", "creationTimestamp": "2024-06-01T10:00:00Z"}});
        let t = table(&r, &[w], IncludeObject::None, datetime!(2025-01-01 0:00 UTC));
        let names: Vec<&str> = t["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["Name", "Created At"]);
        assert_eq!(t["columnDefinitions"][1]["type"], "date");
        assert_eq!(t["rows"][0]["cells"], json!(["w1", "2024-06-01T10:00:00Z"]));
    }

    #[test]
    fn every_column_set_has_name_first_and_rows_as_wide_as_columns() {
        let empty = json!({"metadata": {"name": "x"}});
        let now = datetime!(2025-01-01 0:00 UTC);
        for r in builtin().iter() {
            let t = table(r, std::slice::from_ref(&empty), IncludeObject::None, now);
            let columns = t["columnDefinitions"].as_array().unwrap();
            assert_eq!(t["rows"][0]["cells"].as_array().unwrap().len(), columns.len(), "{}", r.plural);
            assert!(columns.iter().any(|c| c["format"] == "name"), "{} has a name column", r.plural);
        }
    }
}
