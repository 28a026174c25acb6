//! The table-driven walker: one message's bytes plus its schema entry in, its JSON out. Every
//! message goes through `Walker::message`; the few apimachinery types whose JSON is not their
//! fields (times, quantities, int-or-string, raw JSON) are rewritten there by name.

use base64::Engine;
use serde_json::{Map, Number, Value};

use super::ProtobufError;
use super::schema::{Field, Label, Message, Schema, Type};
use super::special::{go_duration, rfc3339};
use super::wire::{Reader, WireError, WireValue, packed_varints};

/// Nesting deeper than this is refused: real objects stay far below it (CRD schemas are the
/// deepest), and it bounds the recursion a hostile body can cause.
const MAX_DEPTH: usize = 100;

const TIME: &str = "apimachinery.pkg.apis.meta.v1.Time";
const MICRO_TIME: &str = "apimachinery.pkg.apis.meta.v1.MicroTime";
const DURATION: &str = "apimachinery.pkg.apis.meta.v1.Duration";

pub(crate) struct Walker<'s> {
    pub(crate) schema: &'s Schema,
}

impl Walker<'_> {
    /// The JSON of one message.
    pub(crate) fn message(
        &self,
        message: &Message,
        bytes: &[u8],
        depth: usize,
    ) -> Result<Value, ProtobufError> {
        if depth > MAX_DEPTH {
            return Err(ProtobufError::TooDeep {
                message: message.proto_name(),
                limit: MAX_DEPTH,
            });
        }
        let name = message.name.as_str();
        match name {
            "apimachinery.pkg.runtime.RawExtension"
            | "apimachinery.pkg.apis.meta.v1.FieldsV1"
            | "apiextensions_apiserver.pkg.apis.apiextensions.v1.Json"
            | "apiextensions_apiserver.pkg.apis.apiextensions.v1beta1.Json" => {
                return self.raw_json(message, bytes);
            }
            _ => {}
        }
        let object = self.fields(message, bytes, depth)?;
        let int = |key: &str| object.get(key).and_then(Value::as_i64).unwrap_or(0);
        let value = match name {
            "apimachinery.pkg.api.resource.Quantity"
            | "apimachinery.pkg.api.resource.QuantityValue" => {
                // A zero Quantity prints as "0"; the wire form is the canonical string.
                match object.get("string").and_then(Value::as_str) {
                    Some(text) if !text.is_empty() => Value::String(text.to_string()),
                    _ => Value::String("0".to_string()),
                }
            }
            "apimachinery.pkg.util.intstr.IntOrString" => match int("type") {
                1 => Value::String(
                    object
                        .get("strVal")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                ),
                _ => Value::from(int("intVal")),
            },
            TIME | MICRO_TIME => rfc3339(int("seconds"), int("nanos"), name == MICRO_TIME)
                .ok_or_else(|| ProtobufError::TimeOutOfRange {
                    message: message.proto_name(),
                    seconds: int("seconds"),
                })?,
            DURATION => Value::String(go_duration(int("duration"))),
            _ if name.ends_with(".JsonSchemaPropsOrArray") => one_of_schema(object, "jSONSchemas"),
            _ if name.ends_with(".JsonSchemaPropsOrStringArray") => {
                one_of_schema(object, "property")
            }
            _ if name.ends_with(".JsonSchemaPropsOrBool") => match object.get("schema") {
                Some(schema) => schema.clone(),
                None => Value::Bool(
                    object
                        .get("allows")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                ),
            },
            _ if message.array => {
                let field = message
                    .fields
                    .first()
                    .map(|f| f.json.as_str())
                    .unwrap_or("items");
                object
                    .get(field)
                    .cloned()
                    .unwrap_or(Value::Array(Vec::new()))
            }
            _ => Value::Object(object),
        };
        Ok(value)
    }

    /// The fields of a message under their JSON names, in wire order.
    fn fields(
        &self,
        message: &Message,
        bytes: &[u8],
        depth: usize,
    ) -> Result<Map<String, Value>, ProtobufError> {
        let mut object = Map::new();
        let mut reader = Reader::new(bytes);
        while let Some((tag, value)) = reader.next_field().map_err(|e| wire_error(e, message))? {
            // Unknown field numbers are skipped: a newer client may send fields we do not know.
            let Some(field) = message.field(tag) else {
                continue;
            };
            match field.label {
                Label::Optional => {
                    let decoded = self.single(message, field, value, depth)?;
                    let drop = is_zero(&decoded)
                        && !field.keep_zero
                        && !matches!(field.ty, Type::Message(_));
                    match (object.get_mut(&field.json), decoded) {
                        // A message field seen twice is merged (one level deep; protobuf merges recursively).
                        (Some(Value::Object(earlier)), Value::Object(later)) => {
                            earlier.extend(later)
                        }
                        _ if drop => {
                            object.remove(&field.json);
                        }
                        (_, decoded) => {
                            object.insert(field.json.clone(), decoded);
                        }
                    }
                }
                Label::Repeated => {
                    let decoded = self.repeated(message, field, value, depth)?;
                    let entry = object
                        .entry(field.json.clone())
                        .or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(items) = entry {
                        items.extend(decoded);
                    }
                }
                Label::Map => {
                    let (key, decoded) = self.map_entry(message, field, value, depth)?;
                    let entry = object
                        .entry(field.json.clone())
                        .or_insert_with(|| Value::Object(Map::new()));
                    if let Value::Object(entries) = entry {
                        entries.insert(key, decoded);
                    }
                }
                Label::Inline => {
                    if let Value::Object(inner) = self.single(message, field, value, depth)? {
                        object.extend(inner);
                    }
                }
            }
        }
        Ok(object)
    }

    /// One value of a field, by the field's type.
    fn single(
        &self,
        message: &Message,
        field: &Field,
        value: WireValue<'_>,
        depth: usize,
    ) -> Result<Value, ProtobufError> {
        let wrong = || ProtobufError::WrongWireType {
            message: message.proto_name(),
            field: field.tag,
            json: field.json.clone(),
            wire_type: value.wire_type(),
        };
        Ok(match (&field.ty, value) {
            (Type::String, WireValue::Bytes(bytes)) => Value::String(
                std::str::from_utf8(bytes)
                    .map_err(|_| ProtobufError::InvalidUtf8 {
                        message: message.proto_name(),
                        field: field.tag,
                    })?
                    .to_string(),
            ),
            (Type::Bytes, WireValue::Bytes(bytes)) => {
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            }
            // Go truncates an int32 written as a 64-bit varint: negative values are sign-extended.
            (Type::Int32, WireValue::Varint(v)) => Value::from(v as i64 as i32),
            (Type::Int64, WireValue::Varint(v)) => Value::from(v as i64),
            (Type::Bool, WireValue::Varint(v)) => Value::Bool(v != 0),
            (Type::Double, WireValue::Fixed64(bits)) => {
                let number = f64::from_bits(bits);
                Value::Number(
                    Number::from_f64(number).ok_or_else(|| ProtobufError::NotFinite {
                        message: message.proto_name(),
                        field: field.tag,
                    })?,
                )
            }
            (Type::Message(target), WireValue::Bytes(bytes)) => {
                let target = self
                    .schema
                    .message(target)
                    .ok_or_else(|| ProtobufError::Schema {
                        line: 0,
                        reason: format!("message {target} is not in the table"),
                    })?;
                self.message(target, bytes, depth + 1)?
            }
            _ => return Err(wrong()),
        })
    }

    /// The values one occurrence of a repeated field carries: one, or many when numbers are
    /// packed into a length-delimited run.
    fn repeated(
        &self,
        message: &Message,
        field: &Field,
        value: WireValue<'_>,
        depth: usize,
    ) -> Result<Vec<Value>, ProtobufError> {
        match (&field.ty, value) {
            (Type::Int32 | Type::Int64 | Type::Bool, WireValue::Bytes(bytes)) => {
                let numbers =
                    packed_varints(bytes, field.tag).map_err(|e| wire_error(e, message))?;
                numbers
                    .into_iter()
                    .map(|n| self.single(message, field, WireValue::Varint(n), depth))
                    .collect()
            }
            _ => Ok(vec![self.single(message, field, value, depth)?]),
        }
    }

    /// One `map<string, V>` entry: a nested message with the key as field 1, the value as 2.
    /// A missing value is V's zero, as Go's map decoding leaves it.
    fn map_entry(
        &self,
        message: &Message,
        field: &Field,
        value: WireValue<'_>,
        depth: usize,
    ) -> Result<(String, Value), ProtobufError> {
        let WireValue::Bytes(entry) = value else {
            return Err(ProtobufError::WrongWireType {
                message: message.proto_name(),
                field: field.tag,
                json: field.json.clone(),
                wire_type: value.wire_type(),
            });
        };
        let mut key = String::new();
        let mut decoded = None;
        let mut reader = Reader::new(entry);
        while let Some((tag, value)) = reader.next_field().map_err(|e| wire_error(e, message))? {
            match (tag, value) {
                (1, WireValue::Bytes(bytes)) => {
                    key = String::from_utf8(bytes.to_vec()).map_err(|_| {
                        ProtobufError::InvalidUtf8 {
                            message: message.proto_name(),
                            field: field.tag,
                        }
                    })?;
                }
                (2, value) => decoded = Some(self.single(message, field, value, depth)?),
                _ => {}
            }
        }
        let decoded = match decoded {
            Some(decoded) => decoded,
            None => match &field.ty {
                Type::String | Type::Bytes => Value::String(String::new()),
                Type::Message(_) => self.single(message, field, WireValue::Bytes(&[]), depth)?,
                Type::Bool => Value::Bool(false),
                _ => Value::from(0),
            },
        };
        Ok((key, decoded))
    }

    /// RawExtension, FieldsV1 and apiextensions' JSON carry JSON text in field 1: it is the
    /// value itself. An embedded object that is itself protobuf (`k8s\0...`) is decoded.
    fn raw_json(&self, message: &Message, bytes: &[u8]) -> Result<Value, ProtobufError> {
        let mut raw: &[u8] = &[];
        let mut reader = Reader::new(bytes);
        while let Some((tag, value)) = reader.next_field().map_err(|e| wire_error(e, message))? {
            if let (1, WireValue::Bytes(bytes)) = (tag, value) {
                raw = bytes;
            }
        }
        if raw.is_empty() {
            return Ok(Value::Null);
        }
        if raw.starts_with(super::MAGIC) {
            return super::decode(raw);
        }
        serde_json::from_slice(raw).map_err(|source| ProtobufError::InvalidJson {
            message: message.proto_name(),
            source: std::sync::Arc::new(source),
        })
    }
}

/// The value Go's `omitempty` drops for a scalar.
fn is_zero(value: &Value) -> bool {
    match value {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

/// JSONSchemaPropsOrArray / OrStringArray: the list when it has items, else the schema, else
/// null (their MarshalJSON).
fn one_of_schema(mut object: Map<String, Value>, list: &str) -> Value {
    match object.remove(list) {
        Some(Value::Array(items)) if !items.is_empty() => Value::Array(items),
        _ => object.remove("schema").unwrap_or(Value::Null),
    }
}

pub(crate) fn wire_error(error: WireError, message: &Message) -> ProtobufError {
    let message = message.proto_name();
    match error {
        WireError::BadKey { offset } => ProtobufError::BadFieldKey { message, offset },
        WireError::Truncated { field } => ProtobufError::Truncated { message, field },
        WireError::VarintTooLong { field } => ProtobufError::VarintTooLong { message, field },
        WireError::UnsupportedWireType { field, wire_type } => ProtobufError::UnsupportedWireType {
            message,
            field,
            wire_type,
        },
    }
}
