//! ConfigMaps, Secrets and Namespaces: data keys that are valid file names, size limits,
//! the keys each secret type needs, immutability, namespace names and finalizers.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};

use super::names::{self, NameRule};
use super::{FieldError, Path};

/// A ConfigMap's or Secret's data together (etcd's value limit, with room for the rest).
const MAX_DATA_BYTES: usize = 1024 * 1024;
const STANDARD_FINALIZERS: &[&str] = &["kubernetes", "orphan", "foregroundDeletion"];

/// What is wrong with a data key (it becomes a file name when mounted).
pub fn config_key(key: &str) -> Vec<String> {
    let mut msgs = Vec::new();
    if key.len() > names::DNS1123_SUBDOMAIN_MAX {
        msgs.push(format!("must be no more than {} characters", names::DNS1123_SUBDOMAIN_MAX));
    }
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)) {
        msgs.push("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')".into());
    }
    match key {
        "." => msgs.push("must not be '.'".into()),
        ".." => msgs.push("must not be '..'".into()),
        k if k.starts_with("..") => msgs.push("must not start with '..'".into()),
        _ => {}
    }
    msgs
}

fn immutability<T: PartialEq>(old_immutable: Option<bool>, new_immutable: Option<bool>, old_data: T, new_data: T, fields: &[&str], errs: &mut Vec<FieldError>) {
    if old_immutable != Some(true) {
        return;
    }
    if new_immutable != Some(true) {
        errs.push(FieldError::forbidden(Path::new("immutable"), "field is immutable when `immutable` is set"));
    }
    if old_data != new_data {
        for f in fields {
            errs.push(FieldError::forbidden(Path::new(f), "field is immutable when `immutable` is set"));
        }
    }
}

pub(super) fn configmap(cm: &ConfigMap, old: Option<&ConfigMap>, errs: &mut Vec<FieldError>) {
    names::object_meta(&cm.metadata, NameRule::Subdomain, errs);
    let mut total = 0;
    for (key, value) in cm.data.iter().flatten() {
        let msgs = config_key(key);
        if !msgs.is_empty() {
            errs.push(FieldError::invalid(Path::new("data").key(key), key, msgs.join(";")));
        }
        if cm.binary_data.as_ref().is_some_and(|b| b.contains_key(key)) {
            errs.push(FieldError::invalid(Path::new("data").key(key), key, "duplicate of key present in binaryData"));
        }
        total += value.len();
    }
    for (key, value) in cm.binary_data.iter().flatten() {
        let msgs = config_key(key);
        if !msgs.is_empty() {
            errs.push(FieldError::invalid(Path::new("binaryData").key(key), key, msgs.join(";")));
        }
        total += value.0.len();
    }
    if total > MAX_DATA_BYTES {
        errs.push(FieldError::too_long(Path::new("data"), MAX_DATA_BYTES));
    }
    if let Some(old) = old {
        immutability(old.immutable, cm.immutable, (&old.data, &old.binary_data), (&cm.data, &cm.binary_data), &["data", "binaryData"], errs);
    }
}

pub(super) fn secret(s: &Secret, old: Option<&Secret>, errs: &mut Vec<FieldError>) {
    names::object_meta(&s.metadata, NameRule::Subdomain, errs);
    let data = Path::new("data");
    let mut keys = BTreeSet::new();
    let mut total = 0;
    for (key, value) in s.data.iter().flatten() {
        keys.insert(key.clone());
        total += value.0.len();
    }
    // stringData is write-only sugar for data; its keys count as data keys.
    for (key, value) in s.string_data.iter().flatten() {
        keys.insert(key.clone());
        total += value.len();
    }
    for key in &keys {
        for msg in config_key(key) {
            errs.push(FieldError::invalid(data.key(key), key, msg));
        }
    }
    if total > MAX_DATA_BYTES {
        errs.push(FieldError::too_long(data.clone(), MAX_DATA_BYTES));
    }
    let kind = s.type_.as_deref().unwrap_or_default();
    let require = |key: &str, errs: &mut Vec<FieldError>| {
        if !keys.contains(key) {
            errs.push(FieldError::required(data.key(key), ""));
        }
    };
    match kind {
        "kubernetes.io/service-account-token" => {
            let named = s.metadata.annotations.as_ref().and_then(|a| a.get("kubernetes.io/service-account.name")).is_some_and(|v| !v.is_empty());
            if !named {
                errs.push(FieldError::required(Path::new("metadata").child("annotations").key("kubernetes.io/service-account.name"), ""));
            }
        }
        "kubernetes.io/dockercfg" => require(".dockercfg", errs),
        "kubernetes.io/dockerconfigjson" => require(".dockerconfigjson", errs),
        "kubernetes.io/basic-auth" if !keys.contains("username") && !keys.contains("password") => {
            require("username", errs);
            require("password", errs);
        }
        "kubernetes.io/ssh-auth" => require("ssh-privatekey", errs),
        "kubernetes.io/tls" => {
            require("tls.crt", errs);
            require("tls.key", errs);
        }
        _ => {}
    }
    if let Some(old) = old {
        let old_kind = old.type_.as_deref().unwrap_or_default();
        if old_kind != kind {
            errs.push(FieldError::invalid(Path::new("type"), kind, "field is immutable"));
        }
        immutability(old.immutable, s.immutable, &old.data, &s.data, &["data"], errs);
    }
}

/// A finalizer is a standard one or a qualified name with a prefix.
pub(super) fn finalizer(name: &str, path: Path, errs: &mut Vec<FieldError>) {
    let msgs = names::qualified_name(name);
    if !msgs.is_empty() {
        for msg in msgs {
            errs.push(FieldError::invalid(path.clone(), name, msg));
        }
    } else if !name.contains('/') && !STANDARD_FINALIZERS.contains(&name) {
        errs.push(FieldError::invalid(path, name, "name is neither a standard finalizer name nor is it fully qualified"));
    }
}

pub(super) fn namespace(ns: &Namespace, _old: Option<&Namespace>, errs: &mut Vec<FieldError>) {
    names::object_meta(&ns.metadata, NameRule::Label, errs);
    for (i, f) in ns.spec.as_ref().and_then(|s| s.finalizers.as_deref()).unwrap_or_default().iter().enumerate() {
        finalizer(f, Path::new("spec").child("finalizers").index(i), errs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keys() {
        assert!(config_key("app.properties").is_empty());
        assert!(config_key("KEY_name-1").is_empty());
        assert_eq!(config_key("a b").len(), 1);
        assert_eq!(config_key(".."), ["must not be '..'"]);
        assert_eq!(config_key("..data"), ["must not start with '..'"]);
    }

    #[test]
    fn finalizers() {
        let mut errs = Vec::new();
        finalizer("kubernetes", Path::new("f"), &mut errs);
        finalizer("example.com/cleanup", Path::new("f"), &mut errs);
        assert!(errs.is_empty());
        finalizer("cleanup", Path::new("f"), &mut errs);
        assert_eq!(errs[0].to_string(), "f: Invalid value: \"cleanup\": name is neither a standard finalizer name nor is it fully qualified");
    }
}
