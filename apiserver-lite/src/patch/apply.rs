//! Server-side apply and the field ownership every write records in
//! `metadata.managedFields`.
//!
//! Each managed-fields entry is one manager's set of fields for one operation: `Apply`
//! entries hold what the manager last applied, `Update` entries what its non-apply writes
//! changed. An apply merges the configuration into the live object, refuses (409) to change a
//! field another entry owns unless forced (forcing takes the field over), and removes the
//! fields the manager applied before but no longer does, when no one else owns them. An
//! update takes the fields it changes from everyone, without conflicts.

use serde_json::{Map, Value, json};

use super::fieldset::{self, FieldSet, Path};
use super::metadata::{self, Field};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("invalid apply configuration: {0}")]
    Malformed(String),
    #[error("fieldManager is required for apply requests")]
    MissingManager,
    #[error("{}", conflicts_message(.0))]
    Conflicts(Vec<Conflict>),
}

impl ApplyError {
    /// The HTTP status of the Status answering this error.
    pub fn code(&self) -> u16 {
        match self {
            ApplyError::Malformed(_) | ApplyError::MissingManager => 400,
            ApplyError::Conflicts(_) => 409,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            ApplyError::Malformed(_) | ApplyError::MissingManager => "BadRequest",
            ApplyError::Conflicts(_) => "Conflict",
        }
    }
}

/// A field the apply would change that another manager owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    /// The apiVersion the owner wrote the field with.
    pub api_version: String,
    /// `.spec.replicas`, `.spec.containers[name="web"].image`.
    pub path: String,
}

impl Conflict {
    /// The message of the Status cause (type `FieldManagerConflict`, field [`Conflict::path`]).
    pub fn message(&self) -> String {
        format!("conflict with {:?} using {}", self.manager, self.api_version)
    }
}

/// Kube-apiserver's wording: one conflict on one line, several grouped by manager.
fn conflicts_message(conflicts: &[Conflict]) -> String {
    if let [c] = conflicts {
        return format!("Apply failed with 1 conflict: {}: {}", c.message(), c.path);
    }
    let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
    for c in conflicts {
        let owner = format!("conflicts with {:?} using {}", c.manager, c.api_version);
        match groups.iter_mut().find(|(o, _)| *o == owner) {
            Some((_, paths)) => paths.push(&c.path),
            None => groups.push((owner, vec![&c.path])),
        }
    }
    let body: Vec<String> = groups
        .iter()
        .map(|(owner, paths)| format!("{owner}:\n{}", paths.iter().map(|p| format!("- {p}")).collect::<Vec<_>>().join("\n")))
        .collect();
    format!("Apply failed with {} conflicts: {}", conflicts.len(), body.join("\n"))
}

/// Parses an `application/apply-patch+yaml` body (YAML, of which JSON is a subset).
pub fn parse_apply_body(body: &[u8]) -> Result<Value, ApplyError> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Ok(v);
    }
    serde_yaml::from_slice::<Value>(body).map_err(|e| ApplyError::Malformed(e.to_string()))
}

/// One `metadata.managedFields` entry.
#[derive(Clone, Debug, PartialEq)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: Option<String>,
    subresource: Option<String>,
    fields: FieldSet,
}

impl Entry {
    fn is(&self, manager: &str, operation: &str) -> bool {
        self.manager == manager && self.operation == operation && self.subresource.is_none()
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), json!(self.manager));
        m.insert("operation".into(), json!(self.operation));
        m.insert("apiVersion".into(), json!(self.api_version));
        if let Some(t) = &self.time {
            m.insert("time".into(), json!(t));
        }
        m.insert("fieldsType".into(), json!("FieldsV1"));
        m.insert("fieldsV1".into(), fieldset::encode(&self.fields));
        if let Some(s) = &self.subresource {
            m.insert("subresource".into(), json!(s));
        }
        Value::Object(m)
    }
}

/// The entries of an object; ones this server cannot read (another fieldsType) are dropped,
/// as kube-apiserver resets unreadable managed fields.
fn entries_of(managed: Option<&Value>) -> Vec<Entry> {
    let Some(Value::Array(items)) = managed else { return Vec::new() };
    items
        .iter()
        .filter(|e| e.get("fieldsType").and_then(Value::as_str).unwrap_or("FieldsV1") == "FieldsV1")
        .filter_map(|e| {
            let s = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
            Some(Entry {
                manager: s("manager")?,
                operation: s("operation")?,
                api_version: s("apiVersion").unwrap_or_default(),
                time: s("time"),
                subresource: s("subresource"),
                fields: e.get("fieldsV1").map(fieldset::decode).unwrap_or_default(),
            })
        })
        .collect()
}

fn managed_fields(object: &Value) -> Option<&Value> {
    object.get("metadata")?.get("managedFields")
}

/// Writes `entries` (empty ones dropped) into the object's metadata.
fn set_managed_fields(object: &mut Value, entries: Vec<Entry>) {
    let entries: Vec<Value> = entries.into_iter().filter(|e| !e.fields.is_empty()).map(|e| e.to_json()).collect();
    let Value::Object(obj) = object else { return };
    let meta = obj.entry("metadata").or_insert_with(|| json!({}));
    if let Value::Object(meta) = meta {
        if entries.is_empty() {
            meta.shift_remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(entries));
        }
    }
}

/// The merge metadata root of an object, from its apiVersion and kind.
fn root_of(object: &Value) -> Option<&'static str> {
    let api_version = object.get("apiVersion")?.as_str()?;
    let kind = object.get("kind")?.as_str()?;
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    metadata::root_type(group, kind)
}

/// The paths of `after` whose value differs from `before`'s. A list item or an empty object
/// counts as changed only when it appears; changes inside it are its fields' own.
fn changed(before: &Value, after: &Value, paths: &FieldSet) -> FieldSet {
    paths
        .iter()
        .filter(|p| {
            let last = p.last().map(String::as_str).unwrap_or("");
            let old = fieldset::get(before, p);
            let new = fieldset::get(after, p);
            if last.starts_with("k:") || last.starts_with("v:") || new.is_some_and(|v| v.as_object().is_some_and(Map::is_empty)) {
                old.is_none()
            } else {
                old != new
            }
        })
        .cloned()
        .collect()
}

/// Server-side apply of `applied` by `manager` to `existing` (`None`: the object is being
/// created). Returns the new object with its managed fields; `now` is the RFC 3339 time
/// recorded for the manager.
pub fn server_side_apply(existing: Option<&Value>, applied: &Value, manager: &str, force: bool, now: &str) -> Result<Value, ApplyError> {
    if manager.is_empty() {
        return Err(ApplyError::MissingManager);
    }
    if !applied.is_object() {
        return Err(ApplyError::Malformed("the configuration must be an object".into()));
    }
    let api_version = applied.get("apiVersion").and_then(Value::as_str).filter(|s| !s.is_empty());
    let kind = applied.get("kind").and_then(Value::as_str).filter(|s| !s.is_empty());
    let (Some(api_version), Some(_)) = (api_version, kind) else {
        return Err(ApplyError::Malformed("apiVersion and kind must be set".into()));
    };
    if let (Some(live_kind), Some(kind)) = (existing.and_then(|e| e.get("kind")).and_then(Value::as_str), kind)
        && live_kind != kind
    {
        return Err(ApplyError::Malformed(format!("the configuration is a {kind}, the object a {live_kind}")));
    }
    let mut applied = without_nulls(applied);
    if let Some(Value::Object(meta)) = applied.get_mut("metadata") {
        meta.shift_remove("managedFields");
    }
    let root = root_of(&applied);

    let mut live = existing.cloned().unwrap_or_else(|| json!({}));
    let mut entries = entries_of(managed_fields(&live));
    if let Some(Value::Object(meta)) = live.get_mut("metadata") {
        meta.shift_remove("managedFields");
    }
    let applied_set = fieldset::fields_of(&applied, root);
    let mut merged = live.clone();
    merge_into(&mut merged, &applied, root, None, true);

    let mine = |e: &Entry| e.is(manager, "Apply");
    let changes = changed(&live, &merged, &applied_set);
    let mut conflicts = Vec::new();
    for e in entries.iter().filter(|e| !mine(e)) {
        for p in changes.intersection(&e.fields) {
            conflicts.push(Conflict { manager: e.manager.clone(), api_version: e.api_version.clone(), path: fieldset::display(p) });
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(ApplyError::Conflicts(conflicts));
    }
    // Forced (or uncontested): the applier alone owns what it changes.
    for e in entries.iter_mut().filter(|e| !mine(e)) {
        e.fields.retain(|p| !changes.contains(p));
    }

    // Fields applied before and not now go, unless someone else owns them (or below them).
    let previous = entries.iter().find(|e| mine(e)).map(|e| e.fields.clone()).unwrap_or_default();
    let others: FieldSet = entries.iter().filter(|e| !mine(e)).flat_map(|e| e.fields.iter().cloned()).collect();
    let dropped: Vec<&Path> = previous
        .iter()
        .filter(|p| !fieldset::covers(&applied_set, p) && !fieldset::covers(&others, p) && !fieldset::is_item_key(p))
        .collect();
    // Removing an item removes its fields: those go only with it (an item without its key
    // fields could no longer be found).
    let outermost = dropped.iter().filter(|p| !dropped.iter().any(|q| q.len() < p.len() && p.starts_with(q)));
    for p in outermost {
        fieldset::remove(&mut merged, p);
    }

    match entries.iter_mut().find(|e| mine(e)) {
        Some(e) => {
            e.fields = applied_set;
            e.api_version = api_version.to_string();
            e.time = Some(now.to_string());
        }
        None => entries.push(Entry {
            manager: manager.to_string(),
            operation: "Apply".into(),
            api_version: api_version.to_string(),
            time: Some(now.to_string()),
            subresource: None,
            fields: applied_set,
        }),
    }
    set_managed_fields(&mut merged, entries);
    Ok(merged)
}

/// Records a non-apply write (create, update, patch) of `new` over `old` (`Value::Null` or
/// `{}` for a create) by `manager`: its `Update` entry gains the fields the write changed,
/// which every other entry loses. Returns `new` with its managed fields.
///
/// A write whose `metadata.managedFields` differs from the stored one sets them (that is how
/// a client resets them); `[]` clears them.
pub fn record_update(old: &Value, new: &Value, manager: &str, now: &str) -> Value {
    let old_managed = managed_fields(old);
    let new_managed = managed_fields(new);
    let mut out = new.clone();
    if let Some(Value::Array(items)) = new_managed
        && new_managed != old_managed
    {
        if items.is_empty() {
            set_managed_fields(&mut out, Vec::new());
        }
        return out;
    }
    let mut entries = entries_of(old_managed);
    let root = root_of(new).or_else(|| root_of(old));
    let old_set = fieldset::fields_of(old, root);
    let new_set = fieldset::fields_of(new, root);
    let taken: FieldSet = changed(old, new, &new_set).union(&old_set.difference(&new_set).cloned().collect()).cloned().collect();
    if taken.is_empty() {
        set_managed_fields(&mut out, entries);
        return out;
    }
    let api_version = new.get("apiVersion").and_then(Value::as_str).unwrap_or_default().to_string();
    for e in entries.iter_mut().filter(|e| !e.is(manager, "Update")) {
        e.fields.retain(|p| !taken.contains(p));
    }
    let gained: FieldSet = taken.intersection(&new_set).cloned().collect();
    match entries.iter_mut().find(|e| e.is(manager, "Update")) {
        Some(e) => {
            e.fields.retain(|p| new_set.contains(p));
            e.fields.extend(gained);
            e.time = Some(now.to_string());
            e.api_version = api_version;
        }
        None => entries.push(Entry {
            manager: manager.to_string(),
            operation: "Update".into(),
            api_version,
            time: Some(now.to_string()),
            subresource: None,
            fields: gained,
        }),
    }
    set_managed_fields(&mut out, entries);
    out
}

/// An apply configuration without its null fields: null means "not set" there.
fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), without_nulls(v))).collect()),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        v => v.clone(),
    }
}

/// Merges an apply configuration into the live object: objects key by key, list-maps item by
/// key, sets as unions; everything else (scalars, atomic lists) is replaced.
fn merge_into(live: &mut Value, applied: &Value, ty: Option<&str>, field: Option<&Field>, root: bool) {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) => {
            for (k, v) in a {
                let f = metadata::field(ty, k).or(if root && k == "metadata" { Some(&metadata::METADATA) } else { None });
                match l.get_mut(k) {
                    Some(lv) => merge_into(lv, v, f.and_then(|f| f.ty), f, false),
                    None => {
                        l.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(l), Value::Array(a)) if field.is_some_and(|f| !f.list_map_keys.is_empty()) && a.iter().chain(l.iter()).all(Value::is_object) => {
            let f = field.expect("checked");
            for item in a {
                let same = |i: &&mut Value| f.list_map_keys.iter().all(|k| i.get(*k) == item.get(*k));
                match l.iter_mut().find(same) {
                    Some(li) => merge_into(li, item, f.ty, None, false),
                    None => l.push(item.clone()),
                }
            }
        }
        (Value::Array(l), Value::Array(a)) if field.is_some_and(|f| f.set) => {
            for item in a {
                if !l.contains(item) {
                    l.push(item.clone());
                }
            }
        }
        (live, applied) => *live = applied.clone(),
    }
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
