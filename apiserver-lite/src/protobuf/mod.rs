//! Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) into
//! the JSON the rest of the server stores and serves.
//!
//! kubectl's typed clients (`kubectl create configmap|secret|deployment|...`, `kubectl run`)
//! send their bodies as protobuf and fail on a 415, so the server has to read them. A body is
//! the magic `k8s\0`, then a `runtime.Unknown` envelope (typeMeta, raw, contentEncoding,
//! contentType) whose `raw` is the object's message; `decode` turns that into the object's
//! JSON as kube-apiserver would write it.
//!
//! The schema (field numbers, types, JSON names) is a generated table, `schema.txt`; see
//! `schema.rs` and `scripts/gen_protobuf_schema.py`. One generic walker (`decode.rs`) reads
//! any message from it. Go's JSON rules that the wire does not carry are approximated:
//! a zero scalar is dropped (`omitempty` on a value field) unless the table marks the field
//! `keepzero` (a pointer or a required field); empty nested messages stay as `{}` (Go prints
//! non-pointer structs); a zero `metav1.Time` is null.
//!
//! For handlers: when `is_protobuf(content_type)`, `decode` the body and go on with the JSON
//! (a `ProtobufError` is the client's fault: 400 BadRequest with its message). kubectl sends
//! these with `fieldValidation=Strict`; unknown protobuf fields are skipped (proto has no field
//! names to report), so the decoded JSON passes unknown-field checks and duplicate-field checks
//! (which read raw JSON) do not apply. Answers stay JSON: kubectl accepts them.

mod decode;
mod schema;
mod special;
mod wire;

use serde_json::{Map, Value};

use decode::{Walker, wire_error};
use schema::{Message, Schema};
use wire::{Reader, WireValue};

/// The four bytes every Kubernetes protobuf body starts with.
pub const MAGIC: &[u8] = b"k8s\0";

/// The media type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProtobufError {
    #[error(
        "not a Kubernetes protobuf body: it must start with the 4 bytes \"k8s\\0\", found {found:?}"
    )]
    BadMagic { found: Vec<u8> },
    #[error("the protobuf envelope names no kind (typeMeta.kind is empty)")]
    MissingKind,
    #[error("kind {kind:?} of apiVersion {api_version:?} has no protobuf schema here")]
    UnknownKind { api_version: String, kind: String },
    #[error(
        "unsupported contentEncoding {encoding:?} in the protobuf envelope (only the identity encoding is)"
    )]
    UnsupportedContentEncoding { encoding: String },
    #[error(
        "unsupported contentType {content_type:?} in the protobuf envelope (expected {CONTENT_TYPE})"
    )]
    UnsupportedContentType { content_type: String },
    #[error("truncated field {field} of message {message}")]
    Truncated { message: String, field: u32 },
    #[error("malformed field key at byte {offset} of message {message}")]
    BadFieldKey { message: String, offset: usize },
    #[error("varint longer than 10 bytes in field {field} of message {message}")]
    VarintTooLong { message: String, field: u32 },
    #[error("unsupported wire type {wire_type} in field {field} of message {message}")]
    UnsupportedWireType {
        message: String,
        field: u32,
        wire_type: u8,
    },
    #[error(
        "field {field} ({json}) of message {message} has wire type {wire_type}, which does not fit its schema type"
    )]
    WrongWireType {
        message: String,
        field: u32,
        json: String,
        wire_type: u8,
    },
    #[error("field {field} of message {message} is not valid UTF-8")]
    InvalidUtf8 { message: String, field: u32 },
    #[error("field {field} of message {message} is not a finite number")]
    NotFinite { message: String, field: u32 },
    #[error(
        "{message} holds a time of {seconds} seconds since the epoch, outside RFC 3339's years 0 to 9999"
    )]
    TimeOutOfRange { message: String, seconds: i64 },
    #[error("{message} does not hold valid JSON: {source}")]
    InvalidJson {
        message: String,
        #[source]
        source: std::sync::Arc<serde_json::Error>,
    },
    #[error("messages nested deeper than {limit} levels (at {message})")]
    TooDeep { message: String, limit: usize },
    #[error("protobuf schema table, line {line}: {reason}")]
    Schema { line: usize, reason: String },
}

/// Whether a request's Content-Type header names a Kubernetes protobuf body (parameters such
/// as `;charset=` or `;stream=watch` aside, case-insensitively).
pub fn is_protobuf(content_type: &str) -> bool {
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    media_type.eq_ignore_ascii_case(CONTENT_TYPE)
}

/// The JSON object a Kubernetes protobuf body holds, with `kind` and `apiVersion` from its
/// envelope.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| ProtobufError::BadMagic {
            found: body.iter().take(MAGIC.len()).copied().collect(),
        })?;
    let schema = Schema::builtin()?;
    let envelope = Envelope::parse(schema, rest)?;
    if !envelope.content_encoding.is_empty() {
        return Err(ProtobufError::UnsupportedContentEncoding {
            encoding: envelope.content_encoding,
        });
    }
    if !envelope.content_type.is_empty() && envelope.content_type != CONTENT_TYPE {
        return Err(ProtobufError::UnsupportedContentType {
            content_type: envelope.content_type,
        });
    }
    if envelope.kind.is_empty() {
        return Err(ProtobufError::MissingKind);
    }
    let message = schema
        .message_for_kind(&envelope.api_version, &envelope.kind)
        .ok_or_else(|| ProtobufError::UnknownKind {
            api_version: envelope.api_version.clone(),
            kind: envelope.kind.clone(),
        })?;
    let fields = Walker { schema }.message(message, envelope.raw, 0)?;
    // kind and apiVersion first, as kube-apiserver writes them.
    let mut object = Map::new();
    object.insert("kind".to_string(), Value::String(envelope.kind));
    object.insert(
        "apiVersion".to_string(),
        Value::String(envelope.api_version),
    );
    if let Value::Object(fields) = fields {
        object.extend(fields);
    }
    Ok(Value::Object(object))
}

/// `runtime.Unknown`: typeMeta (1: apiVersion, kind), raw (2), contentEncoding (3),
/// contentType (4).
struct Envelope<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
    content_encoding: String,
    content_type: String,
}

impl<'a> Envelope<'a> {
    fn parse(schema: &Schema, bytes: &'a [u8]) -> Result<Self, ProtobufError> {
        let unknown = schema_message(schema, "apimachinery.pkg.runtime.Unknown")?;
        let type_meta = schema_message(schema, "apimachinery.pkg.runtime.TypeMeta")?;
        let mut envelope = Envelope {
            api_version: String::new(),
            kind: String::new(),
            raw: &[],
            content_encoding: String::new(),
            content_type: String::new(),
        };
        for (field, value) in fields(unknown, bytes)? {
            match field {
                1 => {
                    for (field, value) in fields(type_meta, bytes_of(unknown, field, value)?)? {
                        match field {
                            1 => envelope.api_version = string_of(type_meta, field, value)?,
                            2 => envelope.kind = string_of(type_meta, field, value)?,
                            _ => {}
                        }
                    }
                }
                2 => envelope.raw = bytes_of(unknown, field, value)?,
                3 => envelope.content_encoding = string_of(unknown, field, value)?,
                4 => envelope.content_type = string_of(unknown, field, value)?,
                _ => {}
            }
        }
        Ok(envelope)
    }
}

fn schema_message<'s>(schema: &'s Schema, name: &str) -> Result<&'s Message, ProtobufError> {
    schema.message(name).ok_or_else(|| ProtobufError::Schema {
        line: 0,
        reason: format!("message {name} is not in the table"),
    })
}

fn fields<'a>(
    message: &Message,
    bytes: &'a [u8],
) -> Result<Vec<(u32, WireValue<'a>)>, ProtobufError> {
    let mut reader = Reader::new(bytes);
    let mut out = Vec::new();
    while let Some(field) = reader.next_field().map_err(|e| wire_error(e, message))? {
        out.push(field);
    }
    Ok(out)
}

fn bytes_of<'a>(
    message: &Message,
    field: u32,
    value: WireValue<'a>,
) -> Result<&'a [u8], ProtobufError> {
    match value {
        WireValue::Bytes(bytes) => Ok(bytes),
        other => Err(ProtobufError::WrongWireType {
            message: message.proto_name(),
            field,
            json: message
                .field(field)
                .map(|f| f.json.clone())
                .unwrap_or_default(),
            wire_type: other.wire_type(),
        }),
    }
}

fn string_of(message: &Message, field: u32, value: WireValue<'_>) -> Result<String, ProtobufError> {
    let bytes = bytes_of(message, field, value)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| ProtobufError::InvalidUtf8 {
        message: message.proto_name(),
        field,
    })
}

#[cfg(test)]
mod tests;
