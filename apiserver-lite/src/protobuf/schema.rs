//! The protobuf schema table: which field number of which message holds what, and under which
//! JSON name. The table is `schema.txt` beside this file, generated from the k8s-pb and
//! k8s-openapi crates by `scripts/gen_protobuf_schema.py` (a vendored stand-in for upstream's
//! generated.proto files); it is parsed once, on first use.

use std::collections::HashMap;
use std::sync::OnceLock;

use super::ProtobufError;

const TABLE: &str = include_str!("schema.txt");

/// How a field repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Label {
    /// At most one value; the last one on the wire wins.
    Optional,
    /// A JSON array.
    Repeated,
    /// A JSON object keyed by strings (proto `map<string, V>`, entries key=1 value=2).
    Map,
    /// An embedded Go struct (`json:",inline"`): its fields are merged into the parent.
    Inline,
}

/// What one value of a field is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Type {
    String,
    Int32,
    Int64,
    Bool,
    Bytes,
    Double,
    /// Another message of the table, by name.
    Message(String),
}

#[derive(Debug, Clone)]
pub(crate) struct Field {
    pub(crate) tag: u32,
    pub(crate) json: String,
    pub(crate) label: Label,
    pub(crate) ty: Type,
    /// A zero scalar stays in the JSON (a Go pointer or a required field); otherwise it is
    /// dropped, as Go's `omitempty` drops it.
    pub(crate) keep_zero: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub(crate) name: String,
    /// A named Go slice (`type Verbs []string`): its JSON is the array of its field 1.
    pub(crate) array: bool,
    /// Sorted by tag.
    pub(crate) fields: Vec<Field>,
}

impl Message {
    pub(crate) fn field(&self, tag: u32) -> Option<&Field> {
        self.fields
            .binary_search_by_key(&tag, |f| f.tag)
            .ok()
            .map(|i| &self.fields[i])
    }

    /// The proto name as Kubernetes spells it (`k8s.io.api.core.v1.Pod`), for errors.
    pub(crate) fn proto_name(&self) -> String {
        format!("k8s.io.{}", self.name)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Schema {
    messages: HashMap<String, Message>,
    /// (apiVersion, kind) of top-level resources -> message.
    kinds: HashMap<(String, String), String>,
    /// apiVersion -> the module its kinds live in (`apps/v1` -> `api.apps.v1`), to find the
    /// messages that are not resources (lists, options).
    modules: HashMap<String, String>,
}

impl Schema {
    /// The table compiled into the crate.
    pub(crate) fn builtin() -> Result<&'static Schema, ProtobufError> {
        static SCHEMA: OnceLock<Result<Schema, ProtobufError>> = OnceLock::new();
        SCHEMA
            .get_or_init(|| Schema::parse(TABLE))
            .as_ref()
            .map_err(Clone::clone)
    }

    pub(crate) fn message(&self, name: &str) -> Option<&Message> {
        self.messages.get(name)
    }

    /// The message of an object of this apiVersion and kind: a resource, else a message of
    /// the same API group version (`DeploymentList`), else one of meta/v1 that every group
    /// version shares (`DeleteOptions`, `Status`).
    pub(crate) fn message_for_kind(&self, api_version: &str, kind: &str) -> Option<&Message> {
        if let Some(name) = self.kinds.get(&(api_version.to_string(), kind.to_string())) {
            return self.messages.get(name);
        }
        let module = self.modules.get(api_version)?;
        self.messages.get(&format!("{module}.{kind}")).or_else(|| {
            self.messages
                .get(&format!("apimachinery.pkg.apis.meta.v1.{kind}"))
        })
    }

    pub(crate) fn parse(text: &str) -> Result<Schema, ProtobufError> {
        let mut schema = Schema::default();
        let mut current: Option<Message> = None;
        for (index, line) in text.lines().enumerate() {
            let bad = |reason: &str| ProtobufError::Schema {
                line: index + 1,
                reason: reason.to_string(),
            };
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                [] => {}
                [first, ..] if first.starts_with('#') => {}
                ["kind", api_version, kind, message] => {
                    let module = message.rsplit_once('.').map_or("", |(module, _)| module);
                    schema
                        .modules
                        .insert(api_version.to_string(), module.to_string());
                    schema.kinds.insert(
                        (api_version.to_string(), kind.to_string()),
                        message.to_string(),
                    );
                }
                ["message", name, rest @ ..] => {
                    if let Some(done) = current.take() {
                        schema.messages.insert(done.name.clone(), done);
                    }
                    current = Some(Message {
                        name: name.to_string(),
                        array: rest == ["array"],
                        fields: Vec::new(),
                    });
                }
                [tag, json, label, ty, rest @ ..] if line.starts_with(' ') => {
                    let message = current
                        .as_mut()
                        .ok_or_else(|| bad("field line before any message"))?;
                    message
                        .fields
                        .push(parse_field(tag, json, label, ty, rest).map_err(|e| bad(&e))?);
                }
                _ => return Err(bad("unrecognised line")),
            }
        }
        if let Some(done) = current.take() {
            schema.messages.insert(done.name.clone(), done);
        }
        for message in schema.messages.values_mut() {
            message.fields.sort_by_key(|f| f.tag);
        }
        schema.check_references()?;
        Ok(schema)
    }

    /// Every message a field or kind names must be in the table: a dangling name would only
    /// surface when a client sends that field.
    fn check_references(&self) -> Result<(), ProtobufError> {
        let dangling = |what: String| ProtobufError::Schema {
            line: 0,
            reason: what,
        };
        for message in self.messages.values() {
            for field in &message.fields {
                if let Type::Message(target) = &field.ty
                    && !self.messages.contains_key(target)
                {
                    return Err(dangling(format!(
                        "{}.{} names unknown message {target}",
                        message.name, field.json
                    )));
                }
            }
        }
        for ((api_version, kind), target) in &self.kinds {
            if !self.messages.contains_key(target) {
                return Err(dangling(format!(
                    "kind {api_version} {kind} names unknown message {target}"
                )));
            }
        }
        Ok(())
    }
}

fn parse_field(
    tag: &str,
    json: &str,
    label: &str,
    ty: &str,
    rest: &[&str],
) -> Result<Field, String> {
    let tag: u32 = tag
        .parse()
        .map_err(|_| format!("field number {tag:?} is not a number"))?;
    let label = match label {
        "opt" => Label::Optional,
        "rep" => Label::Repeated,
        "map" => Label::Map,
        "inline" => Label::Inline,
        other => return Err(format!("unknown label {other:?}")),
    };
    let mut rest = rest.iter().copied();
    let ty = match ty {
        "string" => Type::String,
        "int32" => Type::Int32,
        "int64" => Type::Int64,
        "bool" => Type::Bool,
        "bytes" => Type::Bytes,
        "double" => Type::Double,
        "message" => Type::Message(
            rest.next()
                .ok_or("message field without its message name")?
                .to_string(),
        ),
        other => return Err(format!("unknown type {other:?}")),
    };
    let keep_zero = match rest.next() {
        None => false,
        Some("keepzero") => true,
        Some(other) => return Err(format!("unknown flag {other:?}")),
    };
    Ok(Field {
        tag,
        json: json.to_string(),
        label,
        ty,
        keep_zero,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_parses_and_knows_the_core_kinds() {
        let schema = Schema::builtin().expect("the committed schema.txt parses");
        let pod = schema.message_for_kind("v1", "Pod").expect("v1 Pod");
        assert_eq!(pod.name, "api.core.v1.Pod");
        assert_eq!(pod.field(1).unwrap().json, "metadata");
        let deployment_list = schema
            .message_for_kind("apps/v1", "DeploymentList")
            .expect("a list kind");
        assert_eq!(deployment_list.name, "api.apps.v1.DeploymentList");
        let delete = schema
            .message_for_kind("apps/v1", "DeleteOptions")
            .expect("meta/v1 fallback");
        assert_eq!(delete.name, "apimachinery.pkg.apis.meta.v1.DeleteOptions");
        assert!(schema.message_for_kind("v1", "NoSuchKind").is_none());
    }

    #[test]
    fn json_names_are_the_api_spelling() {
        let schema = Schema::builtin().unwrap();
        let names = |message: &str| -> Vec<String> {
            schema
                .message(message)
                .unwrap()
                .fields
                .iter()
                .map(|f| f.json.clone())
                .collect()
        };
        assert!(
            names("api.core.v1.AwsElasticBlockStoreVolumeSource").contains(&"volumeID".to_string())
        );
        assert!(names("api.core.v1.PodStatus").contains(&"podIPs".to_string()));
        assert!(names("api.core.v1.PodSpec").contains(&"hostIPC".to_string()));
        let props = names("apiextensions_apiserver.pkg.apis.apiextensions.v1.JsonSchemaProps");
        assert!(props.contains(&"$ref".to_string()));
        assert!(props.contains(&"x-kubernetes-preserve-unknown-fields".to_string()));
    }

    #[test]
    fn embedded_structs_and_named_slices_are_marked() {
        let schema = Schema::builtin().unwrap();
        let volume = schema.message("api.core.v1.Volume").unwrap();
        assert_eq!(
            volume.field(2).unwrap().label,
            Label::Inline,
            "Volume embeds VolumeSource"
        );
        assert!(
            schema
                .message("apimachinery.pkg.apis.meta.v1.Verbs")
                .unwrap()
                .array
        );
        assert!(
            !schema
                .message("api.core.v1.DownwardAPIProjection")
                .unwrap()
                .array
        );
    }

    #[test]
    fn malformed_tables_name_the_line() {
        let err = Schema::parse("message a.B\n  x name opt string\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        let err = Schema::parse("message a.B\n  1 other opt message a.C\n").unwrap_err();
        assert!(err.to_string().contains("unknown message a.C"), "{err}");
        let err = Schema::parse("  1 name opt string\n").unwrap_err();
        assert!(err.to_string().contains("before any message"), "{err}");
    }
}
