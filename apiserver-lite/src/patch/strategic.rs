//! Strategic merge patch as kube-apiserver applies it (apimachinery's `strategicpatch`):
//! a JSON merge patch whose lists of objects merge by a key, whose lists of scalars with a
//! merge strategy merge as sets, and whose directives (`$patch`, `$retainKeys`,
//! `$deleteFromPrimitiveList/<field>`, `$setElementOrder/<field>`) delete, replace, clear
//! and reorder. Which fields merge comes from [`super::metadata`].
//!
//! Item order follows apimachinery rather than the design document where the two differ:
//! items the patch names are sorted by the patch (or its `$setElementOrder` list), and items
//! only the server has are slotted in by their position in the live list; an item new to the
//! list goes before the live items it cannot be compared with, so a patch that adds a
//! container without `$setElementOrder` puts it first, as kube-apiserver does.

use serde_json::{Map, Value};

use super::metadata::{self, Field};

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StrategicMergeError {
    #[error("a strategic merge patch must be a JSON object, not {found}")]
    NotAnObject { found: String },
    #[error("unknown $patch directive {value} at {path}: expected replace, merge or delete")]
    UnknownDirective { path: String, value: String },
    #[error("{directive} at {path} must be a list")]
    DirectiveNotAList { path: String, directive: String },
    #[error("{path} holds lists or a mix of objects and scalars, which cannot be merged")]
    UnmergeableList { path: String },
    #[error("cannot merge the list at {path}: it has no merge key")]
    NoMergeKey { path: String },
    #[error("an item of {path} lacks its merge key {key:?}: {item}")]
    MissingMergeKey { path: String, key: String, item: String },
    #[error("the patch sets {key:?} at {path}, which its $retainKeys list does not include")]
    NotInRetainKeys { path: String, key: String },
    #[error("the order of the items of {path} in the patch does not match its $setElementOrder list")]
    OrderMismatch { path: String },
}

impl StrategicMergeError {
    /// Whether the patch itself is malformed (400) rather than unappliable to this object (422).
    pub fn is_malformed(&self) -> bool {
        matches!(self, Self::NotAnObject { .. } | Self::UnknownDirective { .. } | Self::DirectiveNotAList { .. })
    }
}

type Result<T> = std::result::Result<T, StrategicMergeError>;

/// Applies `patch` to `original`, an object of type `root` (a key of
/// [`metadata::TYPES`]).
pub fn apply(root: &str, original: &Value, patch: &Value) -> Result<Value> {
    let Value::Object(patch) = patch else {
        return Err(StrategicMergeError::NotAnObject { found: kind_of(patch).into() });
    };
    let original = match original {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    merge_map(original, patch.clone(), Some(root), "").map(Value::Object)
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn join(path: &str, key: &str) -> String {
    format!("{path}.{key}")
}

fn merge_map(mut original: Map<String, Value>, mut patch: Map<String, Value>, ty: Option<&str>, path: &str) -> Result<Map<String, Value>> {
    if let Some(directive) = patch.shift_remove(PATCH) {
        match directive.as_str() {
            // Applied to nothing, the rest of the patch becomes the value, minus its directives.
            Some("replace") => return merge_map(Map::new(), patch, ty, path),
            Some("delete") => return Ok(Map::new()),
            Some("merge") => {}
            _ => return Err(StrategicMergeError::UnknownDirective { path: display(path), value: directive.to_string() }),
        }
    }
    apply_retain_keys(&mut original, &mut patch, path)?;
    apply_element_orders(&mut original, &mut patch, ty, path)?;
    for (key, value) in patch {
        if let Some(list) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            delete_from_primitive_list(&mut original, list, value, path)?;
            continue;
        }
        if value.is_null() {
            original.shift_remove(&key);
            continue;
        }
        let field = metadata::field(ty, &key);
        // Taking the value out in place keeps the key where it was in the object.
        let current = original.get_mut(&key).map(Value::take);
        let merged = merge_value(current, value, field, &join(path, &key))?;
        original.insert(key, merged);
    }
    Ok(original)
}

/// Merges one field's patch value into its current value (absent when the object lacks it).
fn merge_value(current: Option<Value>, patch: Value, field: Option<&Field>, path: &str) -> Result<Value> {
    let ty = field.and_then(|f| f.ty);
    match (current, patch) {
        (Some(Value::Object(current)), Value::Object(patch)) => merge_map(current, patch, ty, path).map(Value::Object),
        (_, Value::Object(patch)) => merge_map(Map::new(), patch, ty, path).map(Value::Object),
        (current, Value::Array(patch)) => match field {
            Some(f) if f.strategy.is_some_and(|s| s.merges_lists()) => {
                let current = match current {
                    Some(Value::Array(c)) => c,
                    _ => Vec::new(),
                };
                merge_list(current, patch, f, path).map(Value::Array)
            }
            _ => Ok(Value::Array(patch)),
        },
        (_, patch) => Ok(patch),
    }
}

/// The identity of a list item: its merge key's value, or the scalar itself.
fn identity<'a>(item: &'a Value, key: Option<&str>) -> Option<&'a Value> {
    match key {
        Some(k) => item.get(k),
        None => Some(item),
    }
}

fn position(order: &[Value], item: &Value, key: Option<&str>) -> Option<usize> {
    let id = identity(item, key)?;
    order.iter().position(|o| o == id)
}

/// Whether the list holds objects (true) or scalars (false).
fn holds_objects(lists: [&[Value]; 2], path: &str) -> Result<bool> {
    let mut items = lists.iter().flat_map(|l| l.iter());
    let Some(first) = items.next() else { return Ok(false) };
    let objects = first.is_object();
    if first.is_array() || items.any(|v| v.is_array() || v.is_object() != objects) {
        return Err(StrategicMergeError::UnmergeableList { path: display(path) });
    }
    Ok(objects)
}

fn merge_list(original: Vec<Value>, patch: Vec<Value>, field: &Field, path: &str) -> Result<Vec<Value>> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    if !holds_objects([&original, &patch], path)? {
        // A set of scalars: the union, each once.
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for v in original.iter().chain(patch.iter()) {
            if !merged.contains(v) {
                merged.push(v.clone());
            }
        }
        let (ours, server_only): (Vec<Value>, Vec<Value>) = merged.into_iter().partition(|v| patch.contains(v));
        return Ok(normalize_order(ours, server_only, &patch, &original, None));
    }
    let key = field.merge_key.ok_or_else(|| StrategicMergeError::NoMergeKey { path: display(path) })?;
    let key_of = |item: &Map<String, Value>| -> Result<Value> {
        item.get(key).cloned().ok_or_else(|| StrategicMergeError::MissingMergeKey {
            path: display(path),
            key: key.into(),
            item: Value::Object(item.clone()).to_string(),
        })
    };

    let mut original = original;
    let mut items = Vec::new();
    let mut replace = false;
    for item in patch {
        let Value::Object(mut item) = item else { unreachable!("holds_objects checked every item") };
        match item.get(PATCH).map(|d| d.as_str()) {
            None => items.push(item),
            Some(Some("delete")) => {
                let id = key_of(&item)?;
                original.retain(|o| o.get(key) != Some(&id));
            }
            // The list becomes the patch's other items.
            Some(Some("replace")) => replace = true,
            Some(Some("merge")) => {
                item.shift_remove(PATCH);
                items.push(item);
            }
            Some(_) => {
                return Err(StrategicMergeError::UnknownDirective { path: display(path), value: item[PATCH].to_string() });
            }
        }
    }
    if replace {
        return items.into_iter().map(|item| merge_map(Map::new(), item, field.ty, path).map(Value::Object)).collect();
    }

    let server_order: Vec<Value> = original.iter().filter_map(|o| o.get(key).cloned()).collect();
    let mut patch_order = Vec::with_capacity(items.len());
    let mut merged = original;
    for item in items {
        let id = key_of(&item)?;
        match merged.iter().position(|o| o.get(key) == Some(&id)) {
            Some(i) => {
                let current = match merged[i].take() {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                merged[i] = Value::Object(merge_map(current, item, field.ty, path)?);
            }
            None => merged.push(Value::Object(merge_map(Map::new(), item, field.ty, path)?)),
        }
        patch_order.push(id);
    }
    let (ours, server_only): (Vec<Value>, Vec<Value>) =
        merged.into_iter().partition(|v| v.get(key).is_some_and(|id| patch_order.contains(id)));
    Ok(normalize_order(ours, server_only, &patch_order, &server_order, Some(key)))
}

/// Orders a merged list: the patch's items in `patch_order`, the server-only items in
/// `server_order`, then the two interleaved by their positions in the live list. An item
/// the live list lacks cannot be compared, so it goes before the server-only item at hand.
/// `patch_order` and `server_order` hold identities (merge key values or scalars).
fn normalize_order(mut ours: Vec<Value>, mut server_only: Vec<Value>, patch_order: &[Value], server_order: &[Value], key: Option<&str>) -> Vec<Value> {
    ours.sort_by_key(|v| position(patch_order, v, key));
    server_only.sort_by_key(|v| position(server_order, v, key));
    let mut out = Vec::with_capacity(ours.len() + server_only.len());
    let mut ours = ours.into_iter().peekable();
    let mut server_only = server_only.into_iter().peekable();
    loop {
        let take_server = match (server_only.peek(), ours.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(s), Some(o)) => match (position(server_order, s, key), position(server_order, o, key)) {
                (Some(si), Some(oi)) => si < oi,
                _ => false,
            },
        };
        let next = if take_server { server_only.next() } else { ours.next() };
        out.extend(next);
    }
    out
}

/// `$retainKeys`: every key the object keeps; the others are cleared. The patch may only
/// set keys in the list.
fn apply_retain_keys(original: &mut Map<String, Value>, patch: &mut Map<String, Value>, path: &str) -> Result<()> {
    let Some(keys) = patch.shift_remove(RETAIN_KEYS) else { return Ok(()) };
    let Value::Array(keys) = keys else {
        return Err(StrategicMergeError::DirectiveNotAList { path: display(path), directive: RETAIN_KEYS.into() });
    };
    let retained = |k: &str| keys.iter().any(|x| x.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null() || k.starts_with(DELETE_FROM_PRIMITIVE_LIST) || k.starts_with(SET_ELEMENT_ORDER) {
            continue;
        }
        if !retained(k) {
            return Err(StrategicMergeError::NotInRetainKeys { path: display(path), key: k.clone() });
        }
    }
    original.retain(|k, _| retained(k));
    Ok(())
}

fn delete_from_primitive_list(original: &mut Map<String, Value>, list: &str, values: Value, path: &str) -> Result<()> {
    let Value::Array(values) = values else {
        return Err(StrategicMergeError::DirectiveNotAList { path: display(path), directive: format!("{DELETE_FROM_PRIMITIVE_LIST}{list}") });
    };
    if let Some(Value::Array(items)) = original.get_mut(list) {
        items.retain(|v| !values.contains(v));
    }
    Ok(())
}

/// `$setElementOrder/<field>`: merges the field's patch list (if any) and orders the result
/// as the directive lists it; live items it does not name keep their place relative to the
/// live list.
fn apply_element_orders(original: &mut Map<String, Value>, patch: &mut Map<String, Value>, ty: Option<&str>, path: &str) -> Result<()> {
    let directives: Vec<String> = patch.keys().filter(|k| k.starts_with(SET_ELEMENT_ORDER)).cloned().collect();
    for directive in directives {
        let order = patch.shift_remove(&directive).unwrap_or_default();
        let name = &directive[SET_ELEMENT_ORDER.len()..];
        let child = join(path, name);
        let not_a_list = || StrategicMergeError::DirectiveNotAList { path: display(path), directive: directive.clone() };
        let Value::Array(order) = order else { return Err(not_a_list()) };
        let field = metadata::field(ty, name);
        let key = field.and_then(|f| f.merge_key);
        let patch_list = match patch.shift_remove(name) {
            None => None,
            Some(Value::Array(l)) => Some(l),
            Some(_) => return Err(not_a_list()),
        };
        let live = match original.get(name) {
            Some(Value::Array(l)) => Some(l.clone()),
            _ => None,
        };
        if let Some(p) = &patch_list {
            check_order(p, &order, key, &child)?;
        }
        let merged = match (live.clone(), patch_list) {
            (Some(l), None) => l,
            (None, None) => continue,
            (l, Some(p)) => match merge_value(l.map(Value::Array), Value::Array(p), field, &child)? {
                Value::Array(m) => m,
                _ => unreachable!("merging two lists gives a list"),
            },
        };
        let order_ids: Vec<Value> = order.iter().filter_map(|o| identity(o, key).cloned()).collect();
        let live_ids: Vec<Value> = live.unwrap_or_default().iter().filter_map(|o| identity(o, key).cloned()).collect();
        let (ours, server_only): (Vec<Value>, Vec<Value>) =
            merged.into_iter().partition(|v| identity(v, key).is_some_and(|id| order_ids.contains(id)));
        original.insert(name.to_string(), Value::Array(normalize_order(ours, server_only, &order_ids, &live_ids, key)));
    }
    Ok(())
}

/// The patch list's items (other than directives) must appear in the `$setElementOrder`
/// list, in the same relative order.
fn check_order(patch_list: &[Value], order: &[Value], key: Option<&str>, path: &str) -> Result<()> {
    let items: Vec<&Value> = patch_list.iter().filter(|v| v.get(PATCH).is_none()).collect();
    let mut next = 0;
    for o in order {
        if next < items.len() && identity(items[next], key) == identity(o, key) {
            next += 1;
        }
    }
    if next < items.len() {
        return Err(StrategicMergeError::OrderMismatch { path: display(path) });
    }
    Ok(())
}

fn display(path: &str) -> String {
    if path.is_empty() { ".".into() } else { path.into() }
}

#[cfg(test)]
#[path = "strategic_tests.rs"]
mod tests;
