//! Label and field selectors as kubectl and the kubelet send them
//! (`app=web,tier!=db,env in (a,b),!canary`, `spec.nodeName=node-1,status.phase!=Running`).

use serde_json::Value;

use super::status::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed label selector; the empty one matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<Requirement>);

/// Split at commas outside parentheses.
fn terms(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter().map(str::trim).filter(|t| !t.is_empty()).collect()
}

fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
}

fn set_values(s: &str, term: &str) -> Result<Vec<String>, ApiError> {
    let inner = s.trim().strip_prefix('(').and_then(|r| r.strip_suffix(')')).ok_or_else(|| bad_label(term, "expected a parenthesised value list"))?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
}

fn bad_label(term: &str, why: &str) -> ApiError {
    ApiError::bad_request(format!("unable to parse requirement: {term:?}: {why}"))
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<LabelSelector, ApiError> {
        let mut reqs = Vec::new();
        for term in terms(s) {
            let req = if let Some(key) = term.strip_prefix('!') {
                Requirement::DoesNotExist(key.trim().to_string())
            } else if let Some((k, v)) = term.split_once(" notin ") {
                Requirement::NotIn(k.trim().to_string(), set_values(v, term)?)
            } else if let Some((k, v)) = term.split_once(" in ") {
                Requirement::In(k.trim().to_string(), set_values(v, term)?)
            } else if let Some((k, v)) = term.split_once("!=") {
                Requirement::NotEquals(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                Requirement::Equals(k.trim().to_string(), v.trim().to_string())
            } else {
                Requirement::Exists(term.to_string())
            };
            let key = match &req {
                Requirement::Equals(k, _) | Requirement::NotEquals(k, _) | Requirement::In(k, _) | Requirement::NotIn(k, _) | Requirement::Exists(k) | Requirement::DoesNotExist(k) => k,
            };
            if !valid_key(key) {
                return Err(bad_label(term, "invalid label key"));
            }
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether an object's `metadata.labels` match.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        let get = |k: &str| labels.get(k).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::DoesNotExist(k) => get(k).is_none(),
        })
    }
}

/// A parsed field selector: equality terms on the fields a kind supports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

/// The fields kube-apiserver lets each kind be selected by, beyond metadata.name and
/// metadata.namespace.
fn selectable(kind: &str, field: &str) -> bool {
    if field == "metadata.name" || field == "metadata.namespace" {
        return true;
    }
    let extra: &[&str] = match kind {
        "Pod" => &["spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"],
        "Event" => &["involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type", "regarding.kind", "regarding.name", "regarding.namespace", "regarding.uid"],
        "Secret" => &["type"],
        "Node" => &["spec.unschedulable"],
        "Namespace" => &["status.phase"],
        "ReplicaSet" | "ReplicationController" => &["status.replicas"],
        "Job" => &["status.successful"],
        "Service" => &["spec.clusterIP", "spec.type"],
        "PersistentVolumeClaim" => &["spec.volumeName"],
        _ => &[],
    };
    extra.contains(&field)
}

/// A field's value as a selector compares it: strings as is, booleans and numbers printed,
/// a missing field as "".
fn field_value(object: &Value, field: &str) -> String {
    if field == "source" {
        return object["source"]["component"].as_str().unwrap_or("").to_string();
    }
    let mut v = object;
    for part in field.split('.') {
        v = &v[part];
    }
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null if field == "spec.unschedulable" || field == "spec.hostNetwork" => "false".into(),
        _ => String::new(),
    }
}

impl FieldSelector {
    pub fn parse(s: &str, kind: &str) -> Result<FieldSelector, ApiError> {
        let mut out = Vec::new();
        for term in terms(s) {
            let (field, equal, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (f, true, v)
            } else {
                return Err(ApiError::bad_request(format!("invalid selector: '{s}'; can't understand '{term}'")));
            };
            let field = field.trim();
            if !selectable(kind, field) {
                return Err(ApiError::bad_request(format!("field label not supported: {field}")));
            }
            out.push((field.to_string(), equal, value.trim().to_string()));
        }
        Ok(FieldSelector(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(f, eq, v)| (field_value(object, f) == *v) == *eq)
    }

    /// The name an exact `metadata.name=` term pins, so a get-like watch can be narrowed.
    pub fn exact_name(&self) -> Option<&str> {
        self.0.iter().find(|(f, eq, _)| f == "metadata.name" && *eq).map(|(_, _, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors() {
        let o = json!({"metadata": {"labels": {"app": "web", "tier": "front"}}});
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches(&o);
        assert!(m(""));
        assert!(m("app=web"));
        assert!(m("app==web,tier"));
        assert!(!m("app!=web"));
        assert!(m("tier in (front, back)"));
        assert!(!m("tier notin (front)"));
        assert!(m("!canary"));
        assert!(!m("canary"));
        assert!(m("canary notin (x)"));
        assert!(LabelSelector::parse("a in b").is_err());
        assert!(LabelSelector::parse("a b=c").is_err());
    }

    #[test]
    fn field_selectors() {
        let pod = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let m = |s: &str| FieldSelector::parse(s, "Pod").unwrap().matches(&pod);
        assert!(m("spec.nodeName=n1"));
        assert!(m("metadata.name=p,status.phase!=Failed"));
        assert!(!m("spec.nodeName="));
        assert!(FieldSelector::parse("spec.nodeName=", "Pod").unwrap().matches(&json!({"spec": {}})));
        let e = FieldSelector::parse("spec.foo=x", "Pod").unwrap_err();
        assert_eq!(e.message, "field label not supported: spec.foo");
        assert_eq!(FieldSelector::parse("metadata.name=x", "Node").unwrap().exact_name(), Some("x"));
        assert!(FieldSelector::parse("spec.unschedulable=false", "Node").unwrap().matches(&json!({"spec": {}})));
    }
}
