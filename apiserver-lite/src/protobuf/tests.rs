//! Unit tests of `decode` on bodies built by hand with a minimal encoder, one per special type
//! and per kind of malformed input. The end-to-end check against kubectl is
//! tests/protobuf.rs.

use serde_json::json;

use super::*;

/// A minimal protobuf writer for building test bodies.
fn varint(mut value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn int(field: u32, value: i64) -> Vec<u8> {
    let mut out = varint(u64::from(field) << 3);
    out.extend(varint(value as u64));
    out
}

fn bytes(field: u32, value: &[u8]) -> Vec<u8> {
    let mut out = varint((u64::from(field) << 3) | 2);
    out.extend(varint(value.len() as u64));
    out.extend_from_slice(value);
    out
}

fn string(field: u32, value: &str) -> Vec<u8> {
    bytes(field, value.as_bytes())
}

fn message(field: u32, parts: &[Vec<u8>]) -> Vec<u8> {
    bytes(field, &parts.concat())
}

fn map_entry(field: u32, key: &str, value: Vec<u8>) -> Vec<u8> {
    message(field, &[string(1, key), value])
}

/// `k8s\0` + runtime.Unknown{typeMeta{apiVersion, kind}, raw}.
fn body(api_version: &str, kind: &str, raw: &[Vec<u8>]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend(message(1, &[string(1, api_version), string(2, kind)]));
    out.extend(bytes(2, &raw.concat()));
    out
}

fn metadata(name: &str) -> Vec<u8> {
    message(1, &[string(1, name)])
}

#[test]
fn configmap_with_labels_and_data() {
    let raw = [
        message(
            1,
            &[
                string(1, "x"),
                string(3, "default"),
                map_entry(11, "app", string(2, "web")),
            ],
        ),
        map_entry(2, "a", string(2, "1")),
        map_entry(2, "b", string(2, "")),
    ];
    let decoded = decode(&body("v1", "ConfigMap", &raw)).unwrap();
    assert_eq!(
        decoded,
        json!({
            "kind": "ConfigMap", "apiVersion": "v1",
            "metadata": {"name": "x", "namespace": "default", "labels": {"app": "web"}},
            "data": {"a": "1", "b": ""},
        })
    );
}

#[test]
fn secret_bytes_are_base64() {
    let raw = [
        metadata("s"),
        map_entry(2, "p", bytes(2, b"x\x00\xff")),
        string(3, "Opaque"),
    ];
    let decoded = decode(&body("v1", "Secret", &raw)).unwrap();
    assert_eq!(decoded["data"], json!({"p": "eAD/"}));
    assert_eq!(decoded["type"], json!("Opaque"));
}

#[test]
fn quantities_are_strings_and_a_zero_quantity_is_0() {
    // Pod.spec(2).containers(2).resources(8).limits(1) / requests(2)
    let resources = message(
        8,
        &[
            map_entry(1, "cpu", message(2, &[string(1, "500m")])),
            map_entry(2, "memory", message(2, &[])),
        ],
    );
    let raw = [
        metadata("p"),
        message(2, &[message(2, &[string(1, "c"), resources])]),
    ];
    let decoded = decode(&body("v1", "Pod", &raw)).unwrap();
    assert_eq!(
        decoded["spec"]["containers"][0]["resources"],
        json!({"limits": {"cpu": "500m"}, "requests": {"memory": "0"}})
    );
}

#[test]
fn int_or_string_is_a_number_or_a_string() {
    // Service.spec(2).ports(1): port(3), targetPort(4) = IntOrString{type(1), intVal(2), strVal(3)}
    let numeric = message(
        1,
        &[
            int(3, 80),
            message(4, &[int(1, 0), int(2, 8080), string(3, "")]),
        ],
    );
    let named = message(
        1,
        &[
            int(3, 443),
            message(4, &[int(1, 1), int(2, 0), string(3, "https")]),
        ],
    );
    let raw = [metadata("web"), message(2, &[numeric, named])];
    let decoded = decode(&body("v1", "Service", &raw)).unwrap();
    assert_eq!(
        decoded["spec"]["ports"],
        json!([{"port": 80, "targetPort": 8080}, {"port": 443, "targetPort": "https"}])
    );
}

#[test]
fn times_are_rfc3339_and_zero_time_is_null() {
    // ObjectMeta.creationTimestamp(8), deletionTimestamp(9); events/v1 Event.eventTime(2)
    let meta = message(
        1,
        &[
            string(1, "e"),
            message(8, &[]),
            message(9, &[int(1, 1_796_205_600)]),
        ],
    );
    let raw = [
        meta,
        message(2, &[int(1, 1_796_205_600), int(2, 1_500_000)]),
    ];
    let decoded = decode(&body("events.k8s.io/v1", "Event", &raw)).unwrap();
    assert_eq!(decoded["metadata"]["creationTimestamp"], json!(null));
    assert_eq!(
        decoded["metadata"]["deletionTimestamp"],
        json!("2026-12-02T10:00:00Z")
    );
    assert_eq!(decoded["eventTime"], json!("2026-12-02T10:00:00.001500Z"));
}

#[test]
fn durations_are_go_duration_strings() {
    let schema = Schema::builtin().unwrap();
    let duration = schema
        .message("apimachinery.pkg.apis.meta.v1.Duration")
        .unwrap();
    let walker = Walker { schema };
    assert_eq!(
        walker
            .message(duration, &int(1, 90_000_000_000), 0)
            .unwrap(),
        json!("1m30s")
    );
    assert_eq!(walker.message(duration, &[], 0).unwrap(), json!("0s"));
}

#[test]
fn raw_extension_and_fields_v1_are_embedded_json() {
    // ControllerRevision.data(2) = RawExtension{raw(1)}; ObjectMeta.managedFields(17).fieldsV1(7)
    let managed = message(
        17,
        &[
            string(1, "kubectl"),
            message(7, &[bytes(1, br#"{"f:data":{}}"#)]),
        ],
    );
    let raw = [
        message(1, &[string(1, "r"), managed]),
        message(2, &[bytes(1, br#"{"spec":{"replicas":2}}"#)]),
        int(3, 4),
    ];
    let decoded = decode(&body("apps/v1", "ControllerRevision", &raw)).unwrap();
    assert_eq!(decoded["data"], json!({"spec": {"replicas": 2}}));
    assert_eq!(decoded["revision"], json!(4));
    assert_eq!(
        decoded["metadata"]["managedFields"],
        json!([{"manager": "kubectl", "fieldsV1": {"f:data": {}}}])
    );

    let bad = [metadata("r"), message(2, &[bytes(1, b"{not json")])];
    let err = decode(&body("apps/v1", "ControllerRevision", &bad)).unwrap_err();
    assert!(matches!(err, ProtobufError::InvalidJson { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("k8s.io.apimachinery.pkg.runtime.RawExtension"),
        "{err}"
    );
}

#[test]
fn zero_scalars_follow_omitempty_and_pointers_keep_theirs() {
    // Deployment.spec(2): replicas(1) is a pointer (kept at 0), minReadySeconds(5) a value
    // (dropped at 0); ObjectMeta.generateName(2) "" and generation(7) 0 are dropped.
    let raw = [
        message(1, &[string(1, "web"), string(2, ""), int(7, 0)]),
        message(2, &[int(1, 0), int(5, 0), int(6, 10)]),
        message(3, &[]),
    ];
    let decoded = decode(&body("apps/v1", "Deployment", &raw)).unwrap();
    assert_eq!(decoded["metadata"], json!({"name": "web"}));
    assert_eq!(
        decoded["spec"],
        json!({"replicas": 0, "revisionHistoryLimit": 10})
    );
    assert_eq!(
        decoded["status"],
        json!({}),
        "a present empty struct stays, as Go prints it"
    );
}

#[test]
fn inline_structs_merge_into_their_parent() {
    // Pod.spec(2).volumes(1) = Volume{name(1), volumeSource(2){configMap(19){localObjectReference(1){name}}}}
    let config_map = message(19, &[message(1, &[string(1, "cfg")]), int(3, 0o644)]);
    let volume = message(1, &[string(1, "v"), message(2, &[config_map])]);
    let raw = [metadata("p"), message(2, &[volume])];
    let decoded = decode(&body("v1", "Pod", &raw)).unwrap();
    assert_eq!(
        decoded["spec"]["volumes"],
        json!([{"name": "v", "configMap": {"name": "cfg", "defaultMode": 420}}])
    );
}

#[test]
fn named_slices_are_arrays_and_negative_int32_survives() {
    // authentication/v1 TokenReview.status(3).user(2).extra(4) = map<string, ExtraValue{items}>;
    // Pod.spec(2).securityContext(14).runAsUser(2) = -1 as a 10-byte varint, int32 priority(25).
    let user = message(
        2,
        &[
            string(1, "alice"),
            map_entry(4, "scopes", message(2, &[string(1, "a"), string(1, "b")])),
        ],
    );
    let decoded = decode(&body(
        "authentication.k8s.io/v1",
        "TokenReview",
        &[metadata("t"), message(3, &[user])],
    ))
    .unwrap();
    assert_eq!(
        decoded["status"]["user"],
        json!({"username": "alice", "extra": {"scopes": ["a", "b"]}})
    );

    let pod = [metadata("p"), message(2, &[int(25, -5)])];
    assert_eq!(
        decode(&body("v1", "Pod", &pod)).unwrap()["spec"]["priority"],
        json!(-5)
    );
}

#[test]
fn packed_and_unpacked_repeated_numbers_both_decode() {
    // Pod.spec(2).securityContext(14).supplementalGroups(4): repeated int64
    let unpacked = message(14, &[int(4, 1), int(4, 2)]);
    let packed = message(14, &[bytes(4, &[3, 0x96, 0x01])]);
    for (security, expected) in [(unpacked, json!([1, 2])), (packed, json!([3, 150]))] {
        let decoded = decode(&body(
            "v1",
            "Pod",
            &[metadata("p"), message(2, &[security])],
        ))
        .unwrap();
        assert_eq!(
            decoded["spec"]["securityContext"]["supplementalGroups"],
            expected
        );
    }
}

#[test]
fn crd_schema_unions_follow_their_json_forms() {
    // CRD.spec(2).versions(7).schema(4).openAPIV3Schema(1) = JSONSchemaProps:
    // type(5), properties(29), additionalProperties(30) = OrBool{allows(1), schema(2)},
    // items(24) = OrArray{schema(1), jSONSchemas(2)}, default(8) = JSON{raw(1)},
    // x-kubernetes-preserve-unknown-fields(38).
    let string_schema = || message(2, &[string(5, "string")]);
    let props = message(
        1,
        &[
            string(5, "object"),
            map_entry(
                29,
                "size",
                message(2, &[string(5, "integer"), message(8, &[bytes(1, b"3")])]),
            ),
            map_entry(
                29,
                "tags",
                message(
                    2,
                    &[
                        string(5, "array"),
                        message(24, &[message(1, &[string(5, "string")])]),
                    ],
                ),
            ),
            map_entry(
                29,
                "labels",
                message(2, &[string(5, "object"), message(30, &[string_schema()])]),
            ),
            map_entry(
                29,
                "any",
                message(2, &[message(30, &[int(1, 1)]), int(38, 1)]),
            ),
        ],
    );
    let version = message(
        7,
        &[string(1, "v1"), int(2, 1), int(3, 1), message(4, &[props])],
    );
    let raw = [
        metadata("widgets.example.com"),
        message(2, &[string(1, "example.com"), version]),
    ];
    let decoded = decode(&body(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        &raw,
    ))
    .unwrap();
    let schema = &decoded["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    assert_eq!(
        *schema,
        json!({
            "type": "object",
            "properties": {
                "size": {"type": "integer", "default": 3},
                "tags": {"type": "array", "items": {"type": "string"}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "any": {"additionalProperties": true, "x-kubernetes-preserve-unknown-fields": true},
            }
        })
    );
}

#[test]
fn a_message_field_sent_twice_is_merged_and_a_scalar_sent_twice_is_the_last() {
    let raw = [
        message(1, &[string(1, "x"), string(3, "a")]),
        message(1, &[map_entry(11, "app", string(2, "web")), string(3, "b")]),
    ];
    let decoded = decode(&body("v1", "ConfigMap", &raw)).unwrap();
    assert_eq!(
        decoded["metadata"],
        json!({"name": "x", "namespace": "b", "labels": {"app": "web"}})
    );
}

#[test]
fn unknown_fields_are_skipped() {
    let raw = [
        metadata("x"),
        string(99, "from a newer client"),
        map_entry(2, "a", string(2, "1")),
    ];
    let decoded = decode(&body("v1", "ConfigMap", &raw)).unwrap();
    assert_eq!(decoded["data"], json!({"a": "1"}));
}

#[test]
fn bad_magic_is_refused_with_what_was_found() {
    let err = decode(br#"{"kind":"ConfigMap"}"#).unwrap_err();
    assert!(
        matches!(err, ProtobufError::BadMagic { ref found } if found == b"{\"ki"),
        "{err}"
    );
    assert!(decode(b"k8s").is_err(), "shorter than the magic");
}

#[test]
fn unknown_or_missing_kind_is_named() {
    let err = decode(&body("v1", "Widget", &[metadata("w")])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "kind \"Widget\" of apiVersion \"v1\" has no protobuf schema here"
    );
    let err = decode(&body("v1", "", &[])).unwrap_err();
    assert!(matches!(err, ProtobufError::MissingKind), "{err}");
}

#[test]
fn truncated_fields_name_field_and_message() {
    let mut raw = string(3, "Opaque");
    raw.truncate(raw.len() - 2);
    let err = decode(&body("v1", "Secret", &[raw])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "truncated field 3 of message k8s.io.api.core.v1.Secret"
    );

    // A truncated nested message names the inner one.
    let mut meta = string(1, "name");
    meta.truncate(3);
    let err = decode(&body("v1", "Secret", &[bytes(1, &meta)])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "truncated field 1 of message k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );

    let mut whole = body("v1", "Secret", &[metadata("s")]);
    whole.truncate(whole.len() - 1);
    let err = decode(&whole).unwrap_err();
    assert_eq!(
        err.to_string(),
        "truncated field 2 of message k8s.io.apimachinery.pkg.runtime.Unknown"
    );
}

#[test]
fn wire_type_mismatch_and_bad_utf8_are_refused() {
    // ConfigMap.metadata(1) sent as a varint
    let err = decode(&body("v1", "ConfigMap", &[int(1, 5)])).unwrap_err();
    assert!(
        matches!(
            err,
            ProtobufError::WrongWireType {
                field: 1,
                wire_type: 0,
                ..
            }
        ),
        "{err}"
    );
    let err = decode(&body(
        "v1",
        "ConfigMap",
        &[message(1, &[bytes(1, b"\xff\xfe")])],
    ))
    .unwrap_err();
    assert!(
        matches!(err, ProtobufError::InvalidUtf8 { field: 1, .. }),
        "{err}"
    );
}

#[test]
fn envelope_encodings_other_than_identity_are_refused() {
    let mut gz = body("v1", "ConfigMap", &[metadata("x")]);
    gz.extend(string(3, "gzip"));
    assert!(matches!(
        decode(&gz),
        Err(ProtobufError::UnsupportedContentEncoding { .. })
    ));
    let mut json_type = body("v1", "ConfigMap", &[metadata("x")]);
    json_type.extend(string(4, "application/json"));
    assert!(matches!(
        decode(&json_type),
        Err(ProtobufError::UnsupportedContentType { .. })
    ));
}

#[test]
fn deep_nesting_is_bounded() {
    // JSONSchemaProps.not(28) nested past the limit
    let mut props = string(5, "string");
    for _ in 0..150 {
        props = message(28, &[props]);
    }
    let version = message(7, &[string(1, "v1"), message(4, &[bytes(1, &props)])]);
    let raw = [metadata("deep.example.com"), message(2, &[version])];
    let err = decode(&body(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        &raw,
    ))
    .unwrap_err();
    assert!(matches!(err, ProtobufError::TooDeep { .. }), "{err}");
}

#[test]
fn content_type_recognition_ignores_parameters_and_case() {
    assert!(is_protobuf("application/vnd.kubernetes.protobuf"));
    assert!(is_protobuf(
        "Application/VND.Kubernetes.Protobuf; charset=utf-8"
    ));
    assert!(!is_protobuf("application/json"));
    assert!(!is_protobuf("application/vnd.kubernetes.protobuf.extra"));
    assert!(!is_protobuf(""));
}
