//! The Pod and Deployment manifests of the documents users learn from (shared/seeds):
//! they must default, validate cleanly and print the rows a real cluster prints.
//!
//! The seeds live outside the repository (beside it, in `shared/`); without them this test
//! says so and checks nothing.

use std::path::PathBuf;

use apiserver_lite::admission::{defaults, validation};
use apiserver_lite::resources::builtin;
use apiserver_lite::table::{table, IncludeObject};
use serde_json::{json, Value};
use time::macros::datetime;
use time::OffsetDateTime;

const NOW: OffsetDateTime = datetime!(2025-01-01 12:00:00 UTC);

fn seeds_dir() -> Option<PathBuf> {
    let beside_repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/seeds");
    [beside_repo, PathBuf::from("/work/shared/seeds")].into_iter().find(|p| p.is_dir())
}

/// Every YAML document inside ```yaml (or ```yml) fences of the seed texts.
fn yaml_documents() -> Option<Vec<(String, Value)>> {
    let dir = seeds_dir()?;
    let mut docs = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).ok()?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|e| e == "txt")).collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let mut block: Option<String> = None;
        for line in text.lines() {
            let fence = line.trim_start();
            match &mut block {
                None if fence.starts_with("```yaml") || fence.starts_with("```yml") => block = Some(String::new()),
                Some(b) if fence.starts_with("```") => {
                    for doc in serde_yaml_ng::Deserializer::from_str(b) {
                        let value: Value = serde::Deserialize::deserialize(doc).unwrap_or_else(|e| panic!("{}: unreadable YAML: {e}", file.display()));
                        if value.is_object() {
                            docs.push((file.display().to_string(), value));
                        }
                    }
                    block = None;
                }
                Some(b) => {
                    b.push_str(line);
                    b.push('\n');
                }
                None => {}
            }
        }
    }
    Some(docs)
}

fn row(group: &str, plural: &str, object: &Value) -> Vec<Value> {
    let registry = builtin();
    let resource = registry.iter().find(|r| r.group == group && r.plural == plural).expect("a built-in resource");
    let t = table(resource, std::slice::from_ref(object), IncludeObject::None, NOW);
    t["rows"][0]["cells"].as_array().expect("cells").clone()
}

/// What the Deployment controller would create from a template, before any kubelet sees it.
fn pod_from_template(name: &str, template: &Value) -> Value {
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": template.get("metadata").cloned().unwrap_or_else(|| json!({})), "spec": template["spec"].clone()});
    pod["metadata"]["name"] = json!(format!("{name}-7d4b9c-x2x5q"));
    pod["metadata"]["creationTimestamp"] = json!("2025-01-01T11:59:00Z");
    pod
}

fn comma_joined(containers: &Value, field: &str) -> String {
    containers.as_array().into_iter().flatten().map(|c| c[field].as_str().unwrap_or_default().to_string()).collect::<Vec<_>>().join(",")
}

#[test]
fn seed_pods_and_deployments_default_validate_and_print() {
    let Some(docs) = yaml_documents() else {
        eprintln!("SKIPPED: no shared/seeds directory beside the repository or at /work/shared/seeds");
        return;
    };
    let mut checked = 0;
    for (file, mut doc) in docs {
        let kind = doc["kind"].as_str().unwrap_or_default().to_string();
        let name = doc["metadata"]["name"].as_str().unwrap_or_default().to_string();
        match kind.as_str() {
            "Deployment" => {
                defaults::apply("apps", "Deployment", &mut doc);
                let errs = validation::validate("apps", "Deployment", &doc, None);
                assert!(errs.is_empty(), "{file}: {name}: {errs:?}");
                assert_eq!(doc["spec"]["strategy"]["type"], "RollingUpdate");
                assert_eq!(doc["spec"]["template"]["spec"]["restartPolicy"], "Always");
                let replicas = doc["spec"]["replicas"].as_i64().expect("defaulted replicas");
                let containers = doc["spec"]["template"]["spec"]["containers"].clone();
                doc["metadata"]["creationTimestamp"] = json!("2025-01-01T11:00:00Z");
                let cells = row("apps", "deployments", &doc);
                let selector = doc["spec"]["selector"]["matchLabels"].as_object().map(|m| {
                    let mut pairs: Vec<String> = m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect();
                    pairs.sort();
                    pairs.join(",")
                });
                assert_eq!(
                    cells,
                    vec![json!(name), json!(format!("0/{replicas}")), json!(0), json!(0), json!("60m"), json!(comma_joined(&containers, "name")), json!(comma_joined(&containers, "image")), json!(selector.unwrap_or_default())],
                    "{file}"
                );
                // And the pods it would make.
                let mut pod = pod_from_template(&name, &doc["spec"]["template"]);
                defaults::apply("", "Pod", &mut pod);
                let errs = validation::validate("", "Pod", &pod, None);
                assert!(errs.is_empty(), "{file}: pod of {name}: {errs:?}");
                let cells = row("", "pods", &pod);
                let total = containers.as_array().map(Vec::len).unwrap_or(0);
                assert_eq!(cells[1..5], [json!(format!("0/{total}")), json!("Pending"), json!("0"), json!("60s")], "{file}");
                checked += 1;
            }
            "Pod" => {
                defaults::apply("", "Pod", &mut doc);
                let errs = validation::validate("", "Pod", &doc, None);
                assert!(errs.is_empty(), "{file}: {name}: {errs:?}");
                doc["metadata"]["creationTimestamp"] = json!("2025-01-01T11:59:15Z");
                let total = doc["spec"]["containers"].as_array().map(Vec::len).unwrap_or(0);
                let cells = row("", "pods", &doc);
                assert_eq!(cells[..5], [json!(name), json!(format!("0/{total}")), json!("Pending"), json!("0"), json!("45s")], "{file}");
                checked += 1;
            }
            _ => {}
        }
    }
    assert!(checked > 0, "the seeds hold no Pod or Deployment manifest");
}

/// The one Deployment the seeds are known to hold, field by field as a 1.33 cluster stores it.
#[test]
fn the_python_app_deployment_looks_as_on_a_real_cluster() {
    let Some(docs) = yaml_documents() else {
        eprintln!("SKIPPED: no shared/seeds directory");
        return;
    };
    let Some((_, mut d)) = docs.into_iter().find(|(_, d)| d["metadata"]["name"] == "python-app-deployment") else {
        eprintln!("SKIPPED: the seeds no longer hold python-app-deployment");
        return;
    };
    defaults::apply("apps", "Deployment", &mut d);
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    // `<your-docker-image>` is no valid reference, so it has no tag: IfNotPresent, as upstream.
    assert_eq!(container["imagePullPolicy"], "IfNotPresent");
    assert_eq!(container["ports"], json!([{"containerPort": 5000, "protocol": "TCP"}]));
    assert_eq!(container["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
    assert_eq!(row("apps", "deployments", &d)[..2], [json!("python-app-deployment"), json!("0/2")]);
}
