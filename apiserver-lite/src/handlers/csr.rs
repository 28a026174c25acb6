//! CertificateSigningRequests' strategy, as upstream's `certificates` registry: on create
//! the requester's identity (spec.username, uid, groups, extra) comes from the
//! authenticated user, not from the client; the spec never changes afterwards; the
//! `approval` subresource changes only the conditions and `status` cannot add or drop an
//! Approved or Denied condition (only approvers decide).

use serde_json::{Value, json};

use crate::auth::authn::UserInfo;
use crate::resources::Resource;

pub(crate) fn is_csr(r: &Resource) -> bool {
    r.group == "certificates.k8s.io" && r.kind == "CertificateSigningRequest"
}

/// The decisions only the approval subresource may make.
fn is_decision(condition: &Value) -> bool {
    matches!(condition["type"].as_str(), Some("Approved" | "Denied"))
}

/// Before validation on create: who asks, and no status yet.
pub(crate) fn prepare_create(user: &UserInfo, object: &mut Value) {
    if !object["spec"].is_object() {
        object["spec"] = json!({});
    }
    let spec = object["spec"].as_object_mut().expect("made an object above");
    spec.insert("username".into(), json!(user.name));
    spec.insert("groups".into(), json!(user.groups));
    // This server's users carry no uid or extra attributes.
    spec.remove("uid");
    spec.remove("extra");
    object["status"] = json!({});
}

/// Before validation on update (`subresource` None for the object itself).
pub(crate) fn prepare_update(subresource: Option<&str>, old: &Value, merged: &mut Value) {
    merged["spec"] = old["spec"].clone();
    match subresource {
        Some("approval") => {
            let conditions = merged["status"]["conditions"].clone();
            merged["status"] = old["status"].clone();
            if !merged["status"].is_object() {
                merged["status"] = json!({});
            }
            merged["status"]["conditions"] = conditions;
        }
        Some("status") => {
            let old_decisions = old["status"]["conditions"].as_array().into_iter().flatten().filter(|c| is_decision(c)).cloned();
            let others: Vec<Value> = merged["status"]["conditions"].as_array().into_iter().flatten().filter(|c| !is_decision(c)).cloned().collect();
            let conditions: Vec<Value> = old_decisions.chain(others).collect();
            if !merged["status"].is_object() {
                merged["status"] = json!({});
            }
            if conditions.is_empty() {
                merged["status"].as_object_mut().expect("an object").remove("conditions");
            } else {
                merged["status"]["conditions"] = Value::Array(conditions);
            }
        }
        _ => merged["status"] = old["status"].clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_requester_is_the_authenticated_user() {
        let mut csr = json!({"spec": {"username": "system:admin", "groups": ["system:masters"], "uid": "x", "extra": {"a": ["b"]}, "signerName": "s"}, "status": {"certificate": "Zm9v"}});
        prepare_create(&UserInfo::new("system:bootstrap:abcdef", &["system:bootstrappers", "system:authenticated"]), &mut csr);
        assert_eq!(csr["spec"], json!({"username": "system:bootstrap:abcdef", "groups": ["system:bootstrappers", "system:authenticated"], "signerName": "s"}));
        assert_eq!(csr["status"], json!({}));
    }

    #[test]
    fn updates_change_only_what_their_subresource_owns() {
        let approved = json!({"type": "Approved", "status": "True"});
        let failed = json!({"type": "Failed", "status": "True"});
        let old = json!({"spec": {"username": "u"}, "status": {"conditions": [approved]}});
        // The object: neither spec nor status.
        let mut m = json!({"spec": {"username": "admin"}, "status": {"certificate": "Zm9v"}, "metadata": {"labels": {"a": "b"}}});
        prepare_update(None, &old, &mut m);
        assert_eq!((&m["spec"], &m["status"]), (&old["spec"], &old["status"]));
        // status: the certificate and other conditions, never a decision.
        let mut m = json!({"spec": {}, "status": {"certificate": "Zm9v", "conditions": [{"type": "Denied", "status": "True"}, failed]}});
        prepare_update(Some("status"), &old, &mut m);
        assert_eq!(m["status"], json!({"certificate": "Zm9v", "conditions": [approved, failed]}));
        // approval: the conditions only.
        let signed = json!({"spec": {}, "status": {"certificate": "Zm9v"}});
        let mut m = json!({"spec": {}, "status": {"certificate": "YmFy", "conditions": [{"type": "Denied", "status": "True"}]}});
        prepare_update(Some("approval"), &signed, &mut m);
        assert_eq!(m["status"], json!({"certificate": "Zm9v", "conditions": [{"type": "Denied", "status": "True"}]}));
    }
}
