//! Name grammars of the API (RFC 1123 subdomains and labels, RFC 1035 labels, qualified
//! names, label values, IANA service names) with upstream's wording, and the checks of
//! `metadata` every object shares: name or generateName, labels, annotations.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{FieldError, Path};

pub const DNS1123_LABEL_MAX: usize = 63;
pub const DNS1123_SUBDOMAIN_MAX: usize = 253;
const LABEL_VALUE_MAX: usize = 63;
/// All annotations of an object together, keys and values.
const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const QUALIFIED_NAME_WHOLE_MSG: &str = "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

fn max_len_msg(max: usize) -> String {
    format!("must be no more than {max} characters")
}

fn lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn is_dns1123_label_shape(s: &str) -> bool {
    !s.is_empty() && s.starts_with(lower_alnum) && s.ends_with(lower_alnum) && s.chars().all(|c| lower_alnum(c) || c == '-')
}

/// What is wrong with `s` as an RFC 1123 label (container, port and volume names).
pub fn dns1123_label(s: &str) -> Vec<String> {
    let mut msgs = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        msgs.push(max_len_msg(DNS1123_LABEL_MAX));
    }
    if !is_dns1123_label_shape(s) {
        msgs.push(DNS1123_LABEL_MSG.into());
    }
    msgs
}

/// What is wrong with `s` as an RFC 1123 subdomain (most object names).
pub fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut msgs = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        msgs.push(max_len_msg(DNS1123_SUBDOMAIN_MAX));
    }
    if !s.split('.').all(is_dns1123_label_shape) {
        msgs.push(DNS1123_SUBDOMAIN_MSG.into());
    }
    msgs
}

/// What is wrong with `s` as an RFC 1035 label (service names, which become DNS names).
pub fn dns1035_label(s: &str) -> Vec<String> {
    let mut msgs = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        msgs.push(max_len_msg(DNS1123_LABEL_MAX));
    }
    if !(s.starts_with(|c: char| c.is_ascii_lowercase()) && is_dns1123_label_shape(s)) {
        msgs.push(DNS1035_LABEL_MSG.into());
    }
    msgs
}

fn is_qualified_name_part(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    !s.is_empty() && s.starts_with(alnum) && s.ends_with(alnum) && s.chars().all(|c| alnum(c) || "-_.".contains(c))
}

/// What is wrong with `s` as a qualified name (`[prefix/]name`: label and annotation keys).
pub fn qualified_name(s: &str) -> Vec<String> {
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                return vec!["prefix part must be non-empty".into()];
            }
            let prefix_msgs = dns1123_subdomain(prefix);
            if !prefix_msgs.is_empty() {
                return prefix_msgs.into_iter().map(|m| format!("prefix part {m}")).collect();
            }
            name
        }
        _ => return vec![QUALIFIED_NAME_WHOLE_MSG.into()],
    };
    let mut msgs = Vec::new();
    if name.is_empty() {
        msgs.push("name part must be non-empty".into());
    } else if name.len() > DNS1123_LABEL_MAX {
        msgs.push(format!("name part {}", max_len_msg(DNS1123_LABEL_MAX)));
    }
    if !name.is_empty() && !is_qualified_name_part(name) {
        msgs.push(QUALIFIED_NAME_MSG.into());
    }
    msgs
}

/// What is wrong with `s` as a label value.
pub fn label_value(s: &str) -> Vec<String> {
    let mut msgs = Vec::new();
    if s.len() > LABEL_VALUE_MAX {
        msgs.push(max_len_msg(LABEL_VALUE_MAX));
    }
    if !s.is_empty() && !is_qualified_name_part(s) {
        msgs.push(LABEL_VALUE_MSG.into());
    }
    msgs
}

/// What is wrong with `s` as an IANA service name (named container and service ports).
pub fn iana_svc_name(s: &str) -> Vec<String> {
    let mut msgs = Vec::new();
    if s.len() > 15 {
        msgs.push(max_len_msg(15));
    }
    if !s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        msgs.push("must contain only alpha-numerics and '-'".into());
    } else if s.contains("--") {
        msgs.push("must not contain consecutive hyphens".into());
    }
    if !s.chars().any(|c| c.is_ascii_lowercase()) {
        msgs.push("must contain at least one letter (a-z)".into());
    }
    if s.starts_with('-') || s.ends_with('-') {
        msgs.push("must not begin or end with a hyphen".into());
    }
    msgs
}

/// Which grammar an object's name follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    Subdomain,
    Label,
    Dns1035,
}

impl NameRule {
    fn check(self, s: &str) -> Vec<String> {
        match self {
            NameRule::Subdomain => dns1123_subdomain(s),
            NameRule::Label => dns1123_label(s),
            NameRule::Dns1035 => dns1035_label(s),
        }
    }
}

/// `metadata` of every object: a name or generateName that fits `rule`, valid labels and
/// annotations.
pub fn object_meta(meta: &ObjectMeta, rule: NameRule, errs: &mut Vec<FieldError>) {
    let path = Path::new("metadata");
    let generate_name = meta.generate_name.as_deref().unwrap_or_default();
    if !generate_name.is_empty() {
        // A prefix may end in '-' (the random suffix follows); only the rest must fit.
        let masked = match generate_name.strip_suffix('-') {
            Some(rest) => format!("{rest}a"),
            None => generate_name.to_string(),
        };
        for msg in rule.check(&masked) {
            errs.push(FieldError::invalid(path.child("generateName"), generate_name, msg));
        }
    }
    match meta.name.as_deref().unwrap_or_default() {
        "" if generate_name.is_empty() => errs.push(FieldError::required(path.child("name"), "name or generateName is required")),
        "" => {}
        name => {
            for msg in path_segment(name).into_iter().chain(rule.check(name)) {
                errs.push(FieldError::invalid(path.child("name"), name, msg));
            }
        }
    }
    if let Some(labels) = &meta.labels {
        validate_labels(labels, &path.child("labels"), errs);
    }
    if let Some(annotations) = &meta.annotations {
        validate_annotations(annotations, &path.child("annotations"), errs);
    }
    for (i, f) in meta.finalizers.iter().flatten().enumerate() {
        super::config::finalizer(f, path.child("finalizers").index(i), errs);
    }
}

/// Names become URL path segments.
fn path_segment(name: &str) -> Vec<String> {
    match name {
        "." | ".." => vec![format!("may not be '{name}'")],
        _ => [("/", "may not contain '/'"), ("%", "may not contain '%'")].iter().filter(|(s, _)| name.contains(s)).map(|(_, m)| m.to_string()).collect(),
    }
}

/// Label keys must be qualified names and values label values.
pub fn validate_labels(labels: &BTreeMap<String, String>, path: &Path, errs: &mut Vec<FieldError>) {
    for (k, v) in labels {
        for msg in qualified_name(k) {
            errs.push(FieldError::invalid(path.clone(), k, msg));
        }
        for msg in label_value(v) {
            errs.push(FieldError::invalid(path.clone(), v, msg));
        }
    }
}

/// Annotation keys must be qualified names (compared lowercased), and all of them together
/// may not exceed 256 KiB.
pub fn validate_annotations(annotations: &BTreeMap<String, String>, path: &Path, errs: &mut Vec<FieldError>) {
    let mut total = 0;
    for (k, v) in annotations {
        for msg in qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid(path.clone(), k, msg));
        }
        total += k.len() + v.len();
    }
    if total > ANNOTATIONS_MAX_BYTES {
        errs.push(FieldError::too_long(path.clone(), ANNOTATIONS_MAX_BYTES));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomains_labels_and_1035_labels() {
        assert!(dns1123_subdomain("web-1.example").is_empty());
        assert_eq!(dns1123_subdomain("Web_1"), [DNS1123_SUBDOMAIN_MSG]);
        assert!(!dns1123_subdomain("a..b").is_empty());
        assert_eq!(dns1123_subdomain(&"a".repeat(254)), ["must be no more than 253 characters"]);
        assert!(dns1123_label("123-abc").is_empty());
        assert_eq!(dns1123_label("a.b"), [DNS1123_LABEL_MSG]);
        assert_eq!(dns1035_label("1web"), [DNS1035_LABEL_MSG]);
        assert!(dns1035_label("web-1").is_empty());
        assert_eq!(dns1123_label(""), [DNS1123_LABEL_MSG]);
    }

    #[test]
    fn qualified_names_and_label_values() {
        for ok in ["app", "app.kubernetes.io/name", "MyName", "my_name", "example.com/a-b"] {
            assert!(qualified_name(ok).is_empty(), "{ok}");
        }
        assert_eq!(qualified_name("a/b/c"), [QUALIFIED_NAME_WHOLE_MSG]);
        assert_eq!(qualified_name("/x"), ["prefix part must be non-empty"]);
        assert_eq!(qualified_name("Example.com/x"), [format!("prefix part {DNS1123_SUBDOMAIN_MSG}")]);
        assert_eq!(qualified_name("example.com/"), ["name part must be non-empty"]);
        assert_eq!(qualified_name("-x"), [QUALIFIED_NAME_MSG]);
        assert!(label_value("").is_empty());
        assert!(label_value("v1.2_x").is_empty());
        assert_eq!(label_value("a b"), [LABEL_VALUE_MSG]);
        assert_eq!(label_value(&"a".repeat(64)), ["must be no more than 63 characters"]);
    }

    #[test]
    fn iana_service_names() {
        assert!(iana_svc_name("http").is_empty());
        assert!(iana_svc_name("metrics-8080").is_empty());
        assert_eq!(iana_svc_name("8080"), ["must contain at least one letter (a-z)"]);
        assert_eq!(iana_svc_name("a--b"), ["must not contain consecutive hyphens"]);
        assert_eq!(iana_svc_name("HTTP"), ["must contain only alpha-numerics and '-'", "must contain at least one letter (a-z)"]);
        assert_eq!(iana_svc_name("a-very-long-port-name"), ["must be no more than 15 characters"]);
    }

    #[test]
    fn metadata_names_generate_names_labels_annotations() {
        let mut errs = Vec::new();
        object_meta(&ObjectMeta::default(), NameRule::Subdomain, &mut errs);
        assert_eq!(errs[0].to_string(), "metadata.name: Required value: name or generateName is required");

        let mut errs = Vec::new();
        object_meta(&ObjectMeta { generate_name: Some("web-".into()), ..Default::default() }, NameRule::Subdomain, &mut errs);
        assert!(errs.is_empty(), "{errs:?}");

        let mut errs = Vec::new();
        object_meta(&ObjectMeta { generate_name: Some("Web-".into()), ..Default::default() }, NameRule::Subdomain, &mut errs);
        assert_eq!(errs[0].field, "metadata.generateName");

        let mut errs = Vec::new();
        let meta = ObjectMeta {
            name: Some("web".into()),
            labels: Some([("app".to_string(), "a b".to_string())].into()),
            annotations: Some([("bad key".to_string(), "x".to_string()), ("Example.COM/ok".to_string(), "y".to_string())].into()),
            ..Default::default()
        };
        object_meta(&meta, NameRule::Subdomain, &mut errs);
        let fields: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(fields.len(), 2, "{fields:?}");
        assert!(fields[0].starts_with("metadata.labels: Invalid value: \"a b\": a valid label must be"));
        assert!(fields[1].starts_with("metadata.annotations: Invalid value: \"bad key\": name part must consist"));

        let mut errs = Vec::new();
        let meta = ObjectMeta { name: Some("x".into()), finalizers: Some(vec!["example.com/keep".into(), "foregroundDeletion".into(), "keep".into()]), ..Default::default() };
        object_meta(&meta, NameRule::Subdomain, &mut errs);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].field, "metadata.finalizers[2]");

        let mut errs = Vec::new();
        object_meta(&ObjectMeta { name: Some("..".into()), ..Default::default() }, NameRule::Subdomain, &mut errs);
        assert_eq!(errs[0].to_string(), "metadata.name: Invalid value: \"..\": may not be '..'");

        let mut errs = Vec::new();
        let huge = ObjectMeta { name: Some("x".into()), annotations: Some([("a".to_string(), "v".repeat(300 * 1024))].into()), ..Default::default() };
        object_meta(&huge, NameRule::Subdomain, &mut errs);
        assert_eq!(errs[0].to_string(), "metadata.annotations: Too long: may not be more than 262144 bytes");
    }
}
