//! The runtime side against fake plugins: small shell scripts that log their command,
//! environment and stdin, print a fixed result on ADD, and fail with a CNI error when the test
//! drops a `<plugin>.fail-<COMMAND>` file (holding the error code) into the log directory.
//! No root needed.
//!
//! The scripts are written once per process, before any test runs a plugin: writing an
//! executable while another test thread forks can leave the write descriptor open in the
//! child and make exec fail with ETXTBSY. Each test's log directory reaches the scripts as
//! the first `CNI_PATH` entry (it holds no plugin, so lookup passes over it).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cni::runtime::{Attachment, CniRuntime, Error};
use cni::spec::{ErrorCode, NetConfList, ValidAttachment};
use serde_json::{Value, json};

struct Fixture {
    _dir: tempfile::TempDir,
    log: PathBuf,
    cache: PathBuf,
    rt: CniRuntime,
}

/// The first plugin's result: in 1.1.0, with an interface MTU a 1.0.0 prevResult must drop.
const BRIDGE_RESULT: &str = r#"{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","mtu":1400,"sandbox":"/run/netns/x"}],"ips":[{"address":"10.22.0.5/16","gateway":"10.22.0.1","interface":0}]}"#;
/// The second plugin's result: the first's plus DNS, so the final result is recognisable.
const PORTMAP_RESULT: &str = r#"{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/run/netns/x"}],"ips":[{"address":"10.22.0.5/16","gateway":"10.22.0.1","interface":0}],"dns":{"nameservers":["10.96.0.10"]}}"#;

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (log, cache) = (dir.path().join("log"), dir.path().join("cache"));
        std::fs::create_dir_all(&log).unwrap();
        let rt = CniRuntime::new(vec![log.clone(), plugin_dir().to_path_buf()]).with_cache_dir(&cache);
        Fixture { _dir: dir, log, cache, rt }
    }

    /// Every plugin run so far, as "plugin COMMAND", then forgets them.
    fn take_order(&self) -> Vec<String> {
        let path = self.log.join("order");
        let order = std::fs::read_to_string(&path).unwrap_or_default();
        let _ = std::fs::remove_file(&path);
        order.lines().map(str::to_string).collect()
    }

    fn stdin(&self, plugin: &str, command: &str) -> Value {
        serde_json::from_slice(&std::fs::read(self.log.join(format!("{plugin}.{command}.stdin"))).unwrap()).unwrap()
    }

    fn env(&self, plugin: &str, command: &str) -> BTreeMap<String, String> {
        let text = std::fs::read_to_string(self.log.join(format!("{plugin}.{command}.env"))).unwrap();
        text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn fail(&self, plugin: &str, command: &str, code: u32) {
        std::fs::write(self.log.join(format!("{plugin}.fail-{command}")), code.to_string()).unwrap();
    }

    fn heal(&self, plugin: &str, command: &str) {
        std::fs::remove_file(self.log.join(format!("{plugin}.fail-{command}"))).unwrap();
    }

    fn cache_file(&self, network: &str, container: &str) -> PathBuf {
        self.cache.join("results").join(format!("{network}-{container}-eth0"))
    }
}

/// The fake plugins, shared by all tests of this process.
fn plugin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cni-runtime-chain");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, result) in [("fake-bridge", BRIDGE_RESULT), ("fake-portmap", PORTMAP_RESULT), ("fake-silent", "not json")] {
            fake_plugin(&dir, name, result);
        }
        dir
    })
}

/// Written to a temporary name and renamed, so a concurrent run of this test binary never
/// executes a half-written script.
fn fake_plugin(bin: &Path, name: &str, result: &str) {
    let script = format!(
        r#"#!/bin/sh
log="${{CNI_PATH%%:*}}"
input=$(cat)
echo "{name} $CNI_COMMAND" >> "$log/order"
printf '%s' "$input" > "$log/{name}.$CNI_COMMAND.stdin"
env | grep '^CNI_' > "$log/{name}.$CNI_COMMAND.env"
if [ -f "$log/{name}.fail-$CNI_COMMAND" ]; then
  echo "{{\"cniVersion\":\"1.1.0\",\"code\":$(cat "$log/{name}.fail-$CNI_COMMAND"),\"msg\":\"{name} refused $CNI_COMMAND\"}}"
  exit 1
fi
if [ "$CNI_COMMAND" = ADD ]; then echo '{result}'; fi
"#
    );
    let tmp = bin.join(format!(".{name}.{}", std::process::id()));
    std::fs::write(&tmp, script).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, bin.join(name)).unwrap();
}

fn list(version: &str, extra: &str) -> NetConfList {
    NetConfList::parse(
        format!(
            r#"{{"cniVersion":"{version}","name":"krs"{extra},"plugins":[
                {{"type":"fake-bridge","bridge":"krs0"}},
                {{"type":"fake-portmap","capabilities":{{"portMappings":true}}}}]}}"#
        )
        .as_bytes(),
    )
    .unwrap()
}

fn pod(sandbox: &str) -> Attachment {
    Attachment::for_pod("default", "web", "uid-1", sandbox, "/run/netns/x")
        .with_capability("portMappings", json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]))
        .with_capability("bandwidth", json!({"ingressRate": 1000}))
}

#[test]
fn add_chains_prev_result_in_the_list_version_with_capabilities_and_args() {
    let f = Fixture::new();
    let result = f.rt.add(&list("1.0.0", ""), &pod("c1")).unwrap();
    assert_eq!(f.take_order(), ["fake-bridge ADD", "fake-portmap ADD"]);

    let first = f.stdin("fake-bridge", "ADD");
    assert_eq!((first["name"].as_str(), first["cniVersion"].as_str()), (Some("krs"), Some("1.0.0")));
    assert!(first.get("prevResult").is_none());
    assert!(first.get("runtimeConfig").is_none(), "fake-bridge declares no capabilities");

    let second = f.stdin("fake-portmap", "ADD");
    let prev = &second["prevResult"];
    assert_eq!(prev["ips"][0]["address"], "10.22.0.5/16");
    assert_eq!(prev["interfaces"][0]["name"], "eth0");
    assert!(prev["interfaces"][0].get("mtu").is_none(), "prevResult is in the list's version 1.0.0: {prev}");
    assert_eq!(second["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
    assert!(second["runtimeConfig"].get("bandwidth").is_none(), "bandwidth is not declared");

    let env = f.env("fake-portmap", "ADD");
    assert_eq!(env["CNI_ARGS"], "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=c1;K8S_POD_UID=uid-1");
    assert_eq!((env["CNI_CONTAINERID"].as_str(), env["CNI_IFNAME"].as_str(), env["CNI_NETNS"].as_str()), ("c1", "eth0", "/run/netns/x"));
    assert!(env["CNI_PATH"].ends_with(plugin_dir().to_str().unwrap()), "{}", env["CNI_PATH"]);

    assert_eq!(result.dns.nameservers, ["10.96.0.10"], "the last plugin's result is the chain's");
    assert_eq!(f.rt.cached_result("krs", "c1", "eth0").unwrap(), Some(result));
    let cached = f.rt.cached_attachments("krs").unwrap();
    assert_eq!(cached.len(), 1);
    assert_eq!(cached[0].attachment, pod("c1"));
}

#[test]
fn failed_add_tears_down_the_whole_chain_in_reverse_and_reports_the_plugin() {
    let f = Fixture::new();
    f.fail("fake-portmap", "ADD", 11);
    let err = f.rt.add(&list("1.1.0", ""), &pod("c1")).unwrap_err();
    assert_eq!(f.take_order(), ["fake-bridge ADD", "fake-portmap ADD", "fake-portmap DEL", "fake-bridge DEL"]);
    assert!(matches!(&err, Error::Plugin { plugin, command: "ADD", .. } if plugin == "fake-portmap"), "{err:?}");
    assert_eq!(err.cni_code(), Some(ErrorCode::TryAgainLater));
    let msg = err.to_string();
    assert!(msg.contains("fake-portmap") && msg.contains("ADD") && msg.contains("code 11") && msg.contains("refused"), "{msg}");
    // The teardown gets what was set up so far.
    assert_eq!(f.stdin("fake-bridge", "DEL")["prevResult"]["ips"][0]["address"], "10.22.0.5/16");
    assert!(!f.cache_file("krs", "c1").exists());
}

#[test]
fn failed_teardown_after_failed_add_still_returns_the_add_error() {
    let f = Fixture::new();
    f.fail("fake-bridge", "ADD", 7);
    f.fail("fake-portmap", "DEL", 5);
    let err = f.rt.add(&list("1.1.0", ""), &pod("c1")).unwrap_err();
    assert_eq!(f.take_order(), ["fake-bridge ADD", "fake-portmap DEL", "fake-bridge DEL"]);
    assert_eq!(err.cni_code(), Some(ErrorCode::InvalidNetworkConfig));
}

#[test]
fn del_uses_the_cached_result_removes_it_and_is_idempotent() {
    let f = Fixture::new();
    let l = list("1.1.0", "");
    f.rt.add(&l, &pod("c1")).unwrap();
    f.take_order();
    // The caller no longer knows the port mappings (as after a restart): the cached ones go.
    let mut bare = pod("c1");
    bare.capability_args.clear();
    f.rt.del(&l, &bare).unwrap();
    assert_eq!(f.take_order(), ["fake-portmap DEL", "fake-bridge DEL"]);
    for plugin in ["fake-portmap", "fake-bridge"] {
        let stdin = f.stdin(plugin, "DEL");
        assert_eq!(stdin["prevResult"]["dns"]["nameservers"][0], "10.96.0.10", "{plugin} gets the final ADD result");
    }
    assert_eq!(f.stdin("fake-portmap", "DEL")["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
    assert!(!f.cache_file("krs", "c1").exists());

    // Again, without a cache entry and with the netns gone: every plugin still runs.
    let mut gone = pod("c1");
    gone.netns = PathBuf::from("/run/netns/gone");
    f.rt.del(&l, &gone).unwrap();
    assert_eq!(f.take_order(), ["fake-portmap DEL", "fake-bridge DEL"]);
    assert!(f.stdin("fake-bridge", "DEL").get("prevResult").is_none());
    gone.netns = PathBuf::new();
    f.rt.del(&l, &gone).unwrap();
    assert!(!f.env("fake-bridge", "DEL").contains_key("CNI_NETNS"), "an unknown netns is not passed");
    f.take_order();
    let err = f.rt.add(&l, &gone).unwrap_err();
    assert!(matches!(err, Error::InvalidAttachment { .. }), "ADD needs a netns: {err:?}");
    assert!(f.take_order().is_empty());
}

#[test]
fn del_runs_every_plugin_and_keeps_the_cache_for_the_retry_after_a_failure() {
    let f = Fixture::new();
    let l = list("1.1.0", "");
    f.rt.add(&l, &pod("c1")).unwrap();
    f.take_order();
    f.fail("fake-portmap", "DEL", 100);
    let err = f.rt.del(&l, &pod("c1")).unwrap_err();
    assert_eq!(f.take_order(), ["fake-portmap DEL", "fake-bridge DEL"]);
    assert!(err.to_string().contains("fake-portmap"), "{err}");
    assert!(f.cache_file("krs", "c1").exists());
    f.heal("fake-portmap", "DEL");
    // Code 3 (unknown container) means there is nothing left to clean up: not a failure.
    f.fail("fake-bridge", "DEL", 3);
    f.rt.del(&l, &pod("c1")).unwrap();
    assert!(!f.cache_file("krs", "c1").exists());

    f.fail("fake-bridge", "DEL", 5);
    f.fail("fake-portmap", "DEL", 5);
    let err = f.rt.del(&l, &pod("c1")).unwrap_err();
    assert!(matches!(&err, Error::Several { errors, .. } if errors.len() == 2), "{err:?}");
}

#[test]
fn check_needs_the_cached_result_and_honours_disable_check() {
    let f = Fixture::new();
    let l = list("1.1.0", "");
    let err = f.rt.check(&l, &pod("c1")).unwrap_err();
    assert!(matches!(err, Error::NoCachedResult { .. }), "{err:?}");
    assert!(err.to_string().contains("c1"), "{err}");
    assert!(f.take_order().is_empty());

    f.rt.add(&l, &pod("c1")).unwrap();
    f.take_order();
    f.rt.check(&l, &pod("c1")).unwrap();
    assert_eq!(f.take_order(), ["fake-bridge CHECK", "fake-portmap CHECK"]);
    assert_eq!(f.stdin("fake-bridge", "CHECK")["prevResult"]["dns"]["nameservers"][0], "10.96.0.10");

    f.fail("fake-portmap", "CHECK", 100);
    let err = f.rt.check(&l, &pod("c1")).unwrap_err();
    assert!(matches!(&err, Error::Plugin { plugin, command: "CHECK", .. } if plugin == "fake-portmap"), "{err:?}");
    f.take_order();

    let unchecked = list("1.1.0", r#","disableCheck":true"#);
    f.rt.check(&unchecked, &pod("c1")).unwrap();
    f.rt.check(&unchecked, &pod("never-added")).unwrap();
    assert!(f.take_order().is_empty(), "CHECK must not be called with disableCheck");
}

#[test]
fn gc_deletes_stale_cached_attachments_then_runs_gc_with_the_valid_ones() {
    let f = Fixture::new();
    let l = list("1.1.0", "");
    f.rt.add(&l, &pod("keep")).unwrap();
    f.rt.add(&l, &pod("stale")).unwrap();
    f.take_order();
    let valid = [ValidAttachment { container_id: "keep".into(), ifname: "eth0".into() }];
    f.rt.gc(&l, &valid).unwrap();
    assert_eq!(f.take_order(), ["fake-portmap DEL", "fake-bridge DEL", "fake-bridge GC", "fake-portmap GC"]);
    assert_eq!(f.env("fake-bridge", "DEL")["CNI_CONTAINERID"], "stale");
    assert_eq!(f.stdin("fake-bridge", "GC")["cni.dev/valid-attachments"], json!([{"containerID": "keep", "ifname": "eth0"}]));
    assert!(f.stdin("fake-bridge", "GC").get("prevResult").is_none());
    assert!(f.cache_file("krs", "keep").exists());
    assert!(!f.cache_file("krs", "stale").exists());

    // Older lists and disableGC: no GC verb, but stale cached attachments still go.
    f.rt.add(&l, &pod("stale2")).unwrap();
    f.take_order();
    f.rt.gc(&list("1.0.0", ""), &valid).unwrap();
    assert_eq!(f.take_order(), ["fake-portmap DEL", "fake-bridge DEL"]);
    f.rt.gc(&list("1.1.0", r#","disableGC":true"#), &valid).unwrap();
    assert!(f.take_order().is_empty());

    // Failures are collected, every step still runs.
    f.fail("fake-bridge", "GC", 100);
    let err = f.rt.gc(&l, &valid).unwrap_err();
    assert_eq!(f.take_order(), ["fake-bridge GC", "fake-portmap GC"]);
    assert!(matches!(&err, Error::Plugin { command: "GC", .. }), "{err:?}");
}

#[test]
fn status_runs_each_plugin_for_1_1_lists_only() {
    let f = Fixture::new();
    f.rt.status(&list("1.1.0", "")).unwrap();
    assert_eq!(f.take_order(), ["fake-bridge STATUS", "fake-portmap STATUS"]);
    f.fail("fake-bridge", "STATUS", 50);
    let err = f.rt.status(&list("1.1.0", "")).unwrap_err();
    assert_eq!(err.cni_code(), Some(ErrorCode::NotAvailable));
    assert_eq!(f.take_order(), ["fake-bridge STATUS"], "STATUS stops at the first failure");
    f.rt.status(&list("1.0.0", "")).unwrap();
    assert!(f.take_order().is_empty());
}

#[test]
fn a_missing_plugin_or_unreadable_result_is_an_error_naming_it() {
    let f = Fixture::new();
    let missing = NetConfList::parse(br#"{"cniVersion":"1.1.0","name":"krs","plugins":[{"type":"fake-bridge"},{"type":"nope"}]}"#).unwrap();
    let err = f.rt.add(&missing, &pod("c1")).unwrap_err();
    assert!(err.to_string().contains("\"nope\""), "{err}");
    assert_eq!(f.take_order(), ["fake-bridge ADD", "fake-bridge DEL"]);

    let silent = NetConfList::parse(br#"{"cniVersion":"1.1.0","name":"krs","type":"fake-silent"}"#).unwrap();
    let err = f.rt.add(&silent, &pod("c1")).unwrap_err();
    assert!(matches!(&err, Error::BadResult { plugin, .. } if plugin == "fake-silent"), "{err:?}");
}

#[test]
fn default_network_from_a_directory_runs_end_to_end() {
    let f = Fixture::new();
    let conf_dir = tempfile::tempdir().unwrap();
    std::fs::write(conf_dir.path().join("00-broken.conflist"), "{").unwrap();
    std::fs::write(
        conf_dir.path().join("10-krs.conflist"),
        r#"{"cniVersion":"1.1.0","name":"krs","plugins":[{"type":"fake-bridge"}]}"#,
    )
    .unwrap();
    let net = cni::runtime::default_network(conf_dir.path()).unwrap();
    assert_eq!(f.rt.add(&net, &pod("c1")).unwrap().ips[0].address.to_string(), "10.22.0.5/16");
    f.rt.del(&net, &pod("c1")).unwrap();
    assert_eq!(f.take_order(), ["fake-bridge ADD", "fake-bridge DEL"]);
}
