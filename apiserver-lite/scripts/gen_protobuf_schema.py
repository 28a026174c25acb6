#!/usr/bin/env python3
"""Regenerates apiserver-lite/src/protobuf/schema.txt, the protobuf schema table the decoder
walks (field numbers, wire kinds and JSON names of every Kubernetes API message).

Why a generated table: no upstream .proto files or Go toolchain are available, but two crates
in the cargo registry together hold everything needed:
  * k8s-pb 0.9.0: prost-generated Rust for the upstream generated.proto files; every field
    carries `#[prost(<kind>, optional|repeated, tag = "N")]` and a snake_case name, and every
    top-level kind an `impl crate::Resource` with API_VERSION and KIND;
  * k8s-openapi 0.29.0 (v1_33 to v1_37): serde code generated from the OpenAPI schemas, whose
    deserializers list the exact JSON names (`"volumeID" => Field::Key_volume_id`).
A protobuf field is matched to its JSON name within the same message by comparing names
lowercased with `_`, `-` and `$` removed (`pod_i_ps` ~ `podIPs`, `r#ref` ~ `$ref`).

Usage (from the repository root):
    python3 apiserver-lite/scripts/gen_protobuf_schema.py \
        [--pb DIR_OF_k8s-pb-0.9.0/src] [--openapi DIR_OF_k8s-openapi-0.29.0/src] \
        > apiserver-lite/src/protobuf/schema.txt
Both default to the unpacked crates under ~/.cargo/registry/src (k8s-pb: unpack
~/.cargo/registry/cache/*/k8s-pb-0.9.0.crate with `tar xzf` if it is not there).
"""
import argparse
import glob
import os
import re
import sys

SCALARS = {"string", "int32", "int64", "bool", "bytes", "double"}

# Go keeps a scalar that is a pointer even when it holds the zero value, while a plain
# value field with `omitempty` disappears from the JSON. The wire format cannot tell them
# apart (Go's generated marshaller always writes value fields), and neither crate records
# pointer-ness, so the decoder drops zero scalars except for fields marked `keepzero`.
# A field is marked when its documentation says it is a pointer or that it defaults to a
# non-zero value (then an explicit zero means something), or when it is listed here:
# pointer fields of the workload, pod and security APIs whose explicit zero or false
# matters and whose comments do not say so.
KEEPZERO_NAMES = {
    "replicas", "parallelism", "completions", "backoffLimit", "backoffLimitPerIndex",
    "maxFailedIndexes", "activeDeadlineSeconds", "ttlSecondsAfterFinished", "suspend",
    "manualSelector", "startingDeadlineSeconds", "successfulJobsHistoryLimit",
    "failedJobsHistoryLimit", "revisionHistoryLimit", "progressDeadlineSeconds",
    "terminationGracePeriodSeconds", "runAsUser", "runAsGroup", "runAsNonRoot", "fsGroup",
    "privileged", "allowPrivilegeEscalation", "readOnlyRootFilesystem", "procMount",
    "automountServiceAccountToken", "enableServiceLinks", "shareProcessNamespace",
    "hostUsers", "immutable", "optional", "defaultMode", "mode", "expirationSeconds",
    "priority", "preemptionPolicy", "setHostnameAsFQDN", "allocateLoadBalancerNodePorts",
    "storageClassName", "deletionGracePeriodSeconds",
    "gracePeriodSeconds", "orphanDependents", "propagationPolicy", "blockOwnerDeletion",
    "controller", "minAvailable", "maxUnavailable", "maxSurge",
}
# Value (non-pointer) fields that the documentation rule above would wrongly mark.
DROPZERO_FIELDS = {
    "api.apps.v1.DaemonSetSpec.minReadySeconds", "api.apps.v1.DeploymentSpec.minReadySeconds",
    "api.apps.v1.ReplicaSetSpec.minReadySeconds", "api.apps.v1.StatefulSetSpec.minReadySeconds",
    "api.core.v1.ReplicationControllerSpec.minReadySeconds",
    "api.apps.v1.DeploymentStatus.replicas", "api.apps.v1.ReplicaSetStatus.replicas",
    "api.apps.v1.StatefulSetStatus.replicas", "api.core.v1.ReplicationControllerStatus.replicas",
    "api.core.v1.Probe.timeoutSeconds", "api.core.v1.Probe.periodSeconds",
    "api.core.v1.Probe.successThreshold", "api.core.v1.Probe.failureThreshold",
    "api.core.v1.ServiceSpec.publishNotReadyAddresses", "api.core.v1.PodAttachOptions.stdout",
    "api.core.v1.PodAttachOptions.stderr", "api.core.v1.AwsElasticBlockStoreVolumeSource.partition",
    "api.core.v1.GcePersistentDiskVolumeSource.partition",
}
DEFAULTS_NONZERO = re.compile(
    r"(?i)\bdefaults? (?:to|is|value is) (?!0\b|false\b|\"\"|empty|nil|none\b)\S")
POINTER_DOC = re.compile(r"(?i)\bpointer\b")


def norm(name):
    return re.sub(r"[_\-$]", "", name.removeprefix("r#")).lower()


def default_dir(pattern):
    hits = sorted(glob.glob(os.path.expanduser(pattern)))
    return hits[-1] if hits else None


def module_of(root, path):
    rel = os.path.relpath(os.path.dirname(path), root)
    return rel.replace(os.sep, ".")


def resolve(module, rust_type):
    """Turns a prost type path (`super::super::core::v1::PodTemplateSpec`) seen in `module`
    into the message's module-qualified name."""
    parts = rust_type.split("::")
    here = module.split(".")
    while parts and parts[0] == "super":
        parts.pop(0)
        here.pop()
    return ".".join(here + parts)


def inner_type(decl):
    decl = re.sub(r"\s+", "", decl)
    decl = decl.replace("::core::option::Option<", "").replace("::prost::alloc::vec::Vec<", "")
    decl = decl.replace("::prost::alloc::boxed::Box<", "")
    decl = decl.replace("::prost::alloc::collections::BTreeMap<::prost::alloc::string::String,", "")
    return decl.rstrip(">,")


def parse_pb(root):
    messages = {}  # name -> list of fields
    kinds = []  # (apiVersion, kind, message)
    for path in sorted(glob.glob(os.path.join(root, "**", "mod.rs"), recursive=True)):
        module = module_of(root, path)
        lines = open(path).read().split("\n")
        i = 0
        current = None
        docs = []
        while i < len(lines):
            line = lines[i]
            m = re.match(r"^pub struct (\w+) \{", line)
            if m:
                current = []
                messages[f"{module}.{m.group(1)}"] = current
                docs = []
            elif line == "}":
                current = None
            elif current is not None and line.strip().startswith("///"):
                docs.append(line.strip()[3:])
            elif current is not None and line.strip().startswith("#[prost("):
                attr = line.strip()
                decl = ""
                i += 1
                while True:
                    decl += lines[i].strip()
                    if decl.endswith(",") and decl.count("<") == decl.count(">"):
                        break
                    i += 1
                fm = re.match(r"pub ([\w#]+):(.*),$", decl)
                current.append(field(module, attr, fm.group(1), fm.group(2), " ".join(docs)))
                docs = []
            m = re.match(r"^impl crate::Resource for (\w+) \{", line)
            if m:
                version = re.search(r'API_VERSION: &\'static str = "([^"]+)"', "\n".join(lines[i:i + 6]))
                kind = re.search(r'KIND: &\'static str = "([^"]+)"', "\n".join(lines[i:i + 6]))
                kinds.append((version.group(1), kind.group(1), f"{module}.{m.group(1)}"))
            i += 1
    return messages, kinds


def field(module, attr, name, decl, doc):
    tag = int(re.search(r'tag = "(\d+)"', attr).group(1))
    m = re.search(r'btree_map = "string, (\w+)"', attr)
    if m:
        label, kind = "map", m.group(1)
    else:
        kind = re.match(r"#\[prost\((\w+)", attr).group(1)
        label = "rep" if ", repeated" in attr else "opt"
    target = resolve(module, inner_type(decl)) if kind == "message" else None
    return {"tag": tag, "snake": name, "label": label, "kind": kind, "target": target, "doc": doc}


required = {}  # module.struct (lowercase) -> JSON names the OpenAPI schema requires


def parse_openapi(root):
    names = {}  # module.Struct -> {norm(json): json}
    for path in sorted(glob.glob(os.path.join(root, "**", "*.rs"), recursive=True)):
        text = open(path).read()
        m = re.search(r"^pub struct (\w+) \{", text, re.M)
        if not m:
            continue
        keys = re.findall(r'^\s*"([^"]+)" => Field::Key_\w+,', text, re.M)
        # Keyed case-insensitively: k8s-openapi spells `JSONSchemaProps`, prost `JsonSchemaProps`.
        names[f"{module_of(root, path)}.{m.group(1)}".lower()] = {norm(k): k for k in keys}
        req = re.search(r'"required": \[(.*?)\]', text, re.S)
        if req:
            required[f"{module_of(root, path)}.{m.group(1)}".lower()] = set(re.findall(r'"([^"]+)"', req.group(1)))
    return names


def keepzero(message, json, f):
    """Whether a zero value of this scalar field stays in the JSON (see KEEPZERO_NAMES)."""
    if json in required.get(message.lower(), ()):
        return True  # required fields have no `omitempty` in Go
    if f"{message}.{json}" in DROPZERO_FIELDS:
        return False
    if json in KEEPZERO_NAMES:
        return True
    if f["kind"] == "string":
        return False  # string value fields with a documented default are the common case
    return bool(POINTER_DOC.search(f["doc"]) or DEFAULTS_NONZERO.search(f["doc"]))


def borrow_names(messages, json_names):
    """Gives messages the OpenAPI schemas lack JSON names from where their fields do appear:
    a struct embedded inline (VolumeSource in Volume) from its parents, and a message of a
    version k8s-openapi does not carry (apps/v1beta2) from the same message of another
    version of its group."""
    for name, fields in messages.items():
        parent = json_names.get(name.lower())
        if not parent:
            continue
        for f in fields:
            if f["kind"] == "message" and f["label"] == "opt" and norm(f["snake"]) not in parent:
                json_names.setdefault(f["target"].lower(), {}).update(parent)
    by_short_name = {}
    for struct, names in json_names.items():
        module, short = struct.rsplit(".", 1)
        by_short_name.setdefault((module.rsplit(".", 1)[0], short), {}).update(names)
    for name in messages:
        if name.lower() not in json_names:
            module, short = name.lower().rsplit(".", 1)
            other = by_short_name.get((module.rsplit(".", 1)[0], short))
            if other:
                json_names[name.lower()] = dict(other)


def lower_camel(snake):
    head, *rest = snake.removeprefix("r#").split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pb", default=default_dir("~/.cargo/registry/src/*/k8s-pb-0.9.0/src")
                    or "/tmp/k8spb/k8s-pb-0.9.0/src")
    ap.add_argument("--openapi", default=default_dir("~/.cargo/registry/src/*/k8s-openapi-0.29.0/src"))
    args = ap.parse_args()
    messages, kinds = parse_pb(args.pb)
    # The union over every Kubernetes version k8s-openapi carries: k8s-pb is newer than 1.33
    # and JSON names never change once released.
    json_names = {}
    for version_dir in sorted(glob.glob(os.path.join(args.openapi, "v1_*"))):
        for struct, names in parse_openapi(version_dir).items():
            json_names.setdefault(struct, {}).update(names)
    in_openapi = set(json_names)
    borrow_names(messages, json_names)
    guessed = []
    out = [
        "# Kubernetes protobuf schema for apiserver-lite's decoder. GENERATED: do not edit;",
        "# regenerate with apiserver-lite/scripts/gen_protobuf_schema.py (its docstring says how).",
        "# Sources: k8s-pb 0.9.0 (field numbers and kinds), k8s-openapi 0.29.0 (JSON names).",
        "# Message names are the proto names without the `k8s.io.` package prefix.",
        "#   kind <apiVersion> <Kind> <message>",
        "#   message <name> [array]      (array: a named Go slice, encoded as its `items`)",
        "#     <tag> <jsonName> <opt|rep|map|inline> <string|int32|int64|bool|bytes|double|message> [<message>] [keepzero]",
    ]
    for version, kind, message in sorted(kinds):
        out.append(f"kind {version} {kind} {message}")
    for name in sorted(messages):
        out.append(f"message {name}")
        known = json_names.get(name.lower(), {})
        fields = sorted(messages[name], key=lambda f: f["tag"])
        if [(f["snake"], f["label"], f["kind"]) for f in fields] == [("items", "rep", "string")]:
            # A named Go slice (`type ExtraValue []string`): a bare JSON array.
            out[-1] += " array"
        for f in fields:
            json = known.get(norm(f["snake"]))
            label = f["label"]
            if json is None:
                json = lower_camel(f["snake"])
                if name.lower() in in_openapi and f["kind"] == "message" and label == "opt":
                    # An embedded Go struct (`json:",inline"`): the OpenAPI schema has its
                    # fields, not it; the decoder merges them into the parent.
                    label = "inline"
                elif known:
                    guessed.append(f"{name}.{json}")
            parts = [str(f["tag"]), json, label, f["kind"]]
            if f["target"]:
                if f["target"] not in messages:
                    sys.exit(f"{name}.{json}: unknown message type {f['target']}")
                parts.append(f["target"])
            if f["kind"] in SCALARS and label == "opt" and keepzero(name, json, f):
                parts.append("keepzero")
            out.append("  " + " ".join(parts))
    print("\n".join(out))
    print(f"{len(messages)} messages, {len(kinds)} kinds; JSON names guessed (message known to "
          f"k8s-openapi, scalar field not): {guessed}", file=sys.stderr)


if __name__ == "__main__":
    main()
