//! Matching rules the filters and scores share: label selectors (pod affinity, topology
//! spread), node selector terms (node affinity) and tolerations against taints.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub type Labels = BTreeMap<String, String>;

/// A label selector against labels; `None` (no selector) matches nothing, `{}` everything.
pub fn selector_matches(selector: Option<&LabelSelector>, labels: &Labels) -> bool {
    let Some(sel) = selector else { return false };
    for (k, v) in sel.match_labels.iter().flatten() {
        if labels.get(k) != Some(v) {
            return false;
        }
    }
    for e in sel.match_expressions.iter().flatten() {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        let ok = match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), Some(want)) = (value.and_then(|v| number(v)), values.first().and_then(|v| number(v))) else { return false };
            if r.operator == "Gt" { have > want } else { have < want }
        }
        _ => false,
    }
}

/// One node selector term: all its expressions and fields hold; a term with neither
/// matches no node (as upstream).
pub fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let empty = Labels::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    exprs.iter().all(|r| requirement_matches(r, labels.get(&r.key)))
        && fields.iter().all(|r| r.key == "metadata.name" && requirement_matches(r, node.metadata.name.as_ref()))
}

/// The pod's nodeSelector and required node affinity both hold for the node.
pub fn node_selection_matches(pod: &Pod, node: &Node) -> bool {
    let Some(spec) = &pod.spec else { return true };
    if let Some(selector) = &spec.node_selector {
        let empty = Labels::new();
        let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
        if selector.iter().any(|(k, v)| labels.get(k) != Some(v)) {
            return false;
        }
    }
    let required = spec.affinity.as_ref().and_then(|a| a.node_affinity.as_ref()).and_then(|na| na.required_during_scheduling_ignored_during_execution.as_ref());
    match required {
        Some(sel) => sel.node_selector_terms.iter().any(|t| term_matches(t, node)),
        None => true,
    }
}

pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if toleration.effect.as_deref().is_some_and(|e| !e.is_empty() && e != taint.effect) {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => key.is_empty() || key == taint.key,
        "Equal" => key == taint.key && toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

pub fn pod_tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(labels: serde_json::Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": "n1", "labels": labels}})).unwrap()
    }

    fn term(v: serde_json::Value) -> NodeSelectorTerm {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn node_selector_operators() {
        let n = node(json!({"zone": "a", "cores": "8"}));
        let e = |op: &str, vals: serde_json::Value| term(json!({"matchExpressions": [{"key": if op == "Gt" || op == "Lt" { "cores" } else { "zone" }, "operator": op, "values": vals}]}));
        assert!(term_matches(&e("In", json!(["a", "b"])), &n));
        assert!(!term_matches(&e("NotIn", json!(["a"])), &n));
        assert!(term_matches(&e("Exists", json!(null)), &n));
        assert!(!term_matches(&e("DoesNotExist", json!(null)), &n));
        assert!(term_matches(&e("Gt", json!(["4"])), &n));
        assert!(!term_matches(&e("Lt", json!(["4"])), &n));
        assert!(term_matches(&term(json!({"matchExpressions": [{"key": "gpu", "operator": "NotIn", "values": ["x"]}]})), &n), "NotIn holds for a missing label");
        assert!(term_matches(&term(json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]})), &n));
        assert!(!term_matches(&term(json!({"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n1"]}]})), &n));
        assert!(!term_matches(&term(json!({})), &n), "an empty term matches nothing");
    }

    #[test]
    fn label_selectors() {
        let labels: Labels = [("app".to_string(), "web".to_string())].into();
        let sel = |v: serde_json::Value| serde_json::from_value::<LabelSelector>(v).unwrap();
        assert!(selector_matches(Some(&sel(json!({"matchLabels": {"app": "web"}}))), &labels));
        assert!(selector_matches(Some(&sel(json!({}))), &labels));
        assert!(!selector_matches(None, &labels));
        assert!(!selector_matches(Some(&sel(json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}))), &labels));
    }

    #[test]
    fn tolerations() {
        let taint: Taint = serde_json::from_value(json!({"key": "k", "value": "v", "effect": "NoSchedule"})).unwrap();
        let t = |v: serde_json::Value| serde_json::from_value::<Toleration>(v).unwrap();
        assert!(tolerates(&t(json!({"key": "k", "value": "v"})), &taint));
        assert!(tolerates(&t(json!({"key": "k", "operator": "Exists", "effect": "NoSchedule"})), &taint));
        assert!(tolerates(&t(json!({"operator": "Exists"})), &taint), "an empty key with Exists tolerates everything");
        assert!(!tolerates(&t(json!({"key": "k", "value": "w"})), &taint));
        assert!(!tolerates(&t(json!({"key": "k", "operator": "Exists", "effect": "NoExecute"})), &taint));
    }
}
