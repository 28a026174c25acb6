//! The `krs-host-local` binary run as a runtime runs it: CNI environment, config on stdin,
//! state in a temporary data directory (no root needed).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cni::invoke::{Invocation, exec};
use cni::spec::{CniResult, Command, Error, ErrorCode};

fn plugin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_krs-host-local"))
}

fn conf(version: &str, data_dir: &Path, ipam: serde_json::Value) -> serde_json::Value {
    let mut ipam = ipam;
    ipam["type"] = "krs-host-local".into();
    ipam["dataDir"] = data_dir.to_str().unwrap().into();
    serde_json::json!({"cniVersion": version, "name": "testnet", "type": "krs-bridge", "ipam": ipam})
}

fn run(command: Command, id: &str, conf: &serde_json::Value, args: &[(String, String)]) -> Result<Vec<u8>, Error> {
    let path = [PathBuf::from("/nonexistent")];
    let inv = Invocation { command, container_id: id, netns: Some(Path::new("/var/run/netns/x")), ifname: "eth0", args, path: &path };
    exec(plugin(), &inv, conf.to_string().as_bytes())
}

fn add(id: &str, conf: &serde_json::Value) -> Result<CniResult, Error> {
    let out = run(Command::Add, id, conf, &[])?;
    Ok(CniResult::from_json(&serde_json::from_slice(&out).unwrap()).unwrap().1)
}

/// The names in the network's state directory.
fn files(data_dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(data_dir.join("testnet")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn add_check_del_and_version() {
    let tmp = tempfile::tempdir().unwrap();
    let resolv = tmp.path().join("resolv.conf");
    std::fs::write(&resolv, "nameserver 10.96.0.10\nsearch svc.cluster.local\n").unwrap();
    let c = conf("1.0.0", tmp.path(), serde_json::json!({
        "ranges": [[{"subnet": "10.10.0.0/24"}], [{"subnet": "fd00:10::/64", "rangeStart": "fd00:10::100"}]],
        "routes": [{"dst": "0.0.0.0/0"}], "resolvConf": resolv.to_str().unwrap()}));
    let res = add("c1", &c).unwrap();
    let addrs: Vec<String> = res.ips.iter().map(|ip| ip.address.to_string()).collect();
    assert_eq!(addrs, ["10.10.0.2/24", "fd00:10::100/64"]);
    assert_eq!(res.ips[0].gateway.unwrap().to_string(), "10.10.0.1");
    assert_eq!(res.ips[1].gateway.unwrap().to_string(), "fd00:10::1");
    assert_eq!(res.routes[0].dst.to_string(), "0.0.0.0/0");
    assert_eq!(res.dns.nameservers, ["10.96.0.10"]);
    let dir = tmp.path().join("testnet");
    assert_eq!(std::fs::read_to_string(dir.join("10.10.0.2")).unwrap(), "c1\r\neth0");
    assert_eq!(std::fs::read_to_string(dir.join("fd00:10::100")).unwrap(), "c1\r\neth0");
    assert_eq!(files(tmp.path()), set(&["10.10.0.2", "fd00:10::100", "last_reserved_ip.0", "last_reserved_ip.1", "lock"]));

    // A repeated ADD returns what the attachment holds.
    assert_eq!(add("c1", &c).unwrap().ips, res.ips);
    run(Command::Check, "c1", &c, &[]).unwrap();
    assert_eq!(run(Command::Check, "c2", &c, &[]).unwrap_err().code, ErrorCode::UnknownContainer);

    run(Command::Del, "c1", &c, &[]).unwrap();
    run(Command::Del, "c1", &c, &[]).unwrap();
    run(Command::Del, "never-added", &c, &[]).unwrap();
    assert_eq!(files(tmp.path()), set(&["last_reserved_ip.0", "last_reserved_ip.1", "lock"]));
    assert!(run(Command::Check, "c1", &c, &[]).is_err());

    // Round-robin: the next ADD does not reuse the address just freed.
    let legacy = conf("0.4.0", tmp.path(), serde_json::json!({"subnet": "10.10.0.0/24"}));
    let out: serde_json::Value = serde_json::from_slice(&run(Command::Add, "c2", &legacy, &[]).unwrap()).unwrap();
    assert_eq!(out["cniVersion"], "0.4.0");
    assert_eq!(out["ips"][0]["address"], "10.10.0.3/24");
    assert_eq!(out["ips"][0]["version"], "4");

    let out = run(Command::Version, "", &serde_json::json!({"cniVersion": "1.0.0"}), &[]).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["cniVersion"], "1.0.0");
    assert!(v["supportedVersions"].as_array().unwrap().contains(&"1.1.0".into()));
}

#[test]
fn bad_configs_get_the_right_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (serde_json::json!({"ranges": [[{"subnet": "10.0.0.0/40"}]]}), "ipam.ranges[0][0].subnet"),
        (serde_json::json!({"ranges": [[{"subnet": "10.0.0.0/24", "rangeStart": "10.1.0.1"}]]}), "ipam.ranges[0][0].rangeStart"),
        (serde_json::json!({"ranges": [[{"subnet": "10.0.0.0/24", "gateway": "10.1.0.1"}]]}), "ipam.ranges[0][0].gateway"),
        (serde_json::json!({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.0.0.0/16"}]]}), "overlaps"),
        (serde_json::json!({}), "ipam.ranges: missing"),
    ];
    for (ipam, needle) in cases {
        let err = add("c1", &conf("1.0.0", tmp.path(), ipam)).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidNetworkConfig, "{err}");
        assert!(err.msg.contains(needle), "{:?} lacks {needle:?}", err.msg);
    }
    let good = conf("1.0.0", tmp.path(), serde_json::json!({"subnet": "10.0.0.0/24"}));
    let err = run(Command::Add, "c1", &good, &[("IP".into(), "banana".into())]).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidEnvironment);
    let err = run(Command::Add, "c1", &good, &[("IP".into(), "10.9.9.9".into())]).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidNetworkConfig, "{err}");
    assert!(!tmp.path().join("testnet").join("10.9.9.9").exists());
}

#[test]
fn requested_ip_from_cni_args_and_capability() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = conf("1.0.0", tmp.path(), serde_json::json!({"subnet": "10.0.0.0/24"}));
    let out = run(Command::Add, "a", &c, &[("IgnoreUnknown".into(), "1".into()), ("IP".into(), "10.0.0.50".into())]).unwrap();
    assert!(String::from_utf8_lossy(&out).contains("10.0.0.50/24"));
    c["runtimeConfig"] = serde_json::json!({"ips": ["10.0.0.60/24"]});
    assert_eq!(add("b", &c).unwrap().ips[0].address.to_string(), "10.0.0.60/24");
    c["runtimeConfig"] = serde_json::json!({"ips": ["10.0.0.50/24"]});
    assert_eq!(add("c", &c).unwrap_err().code, ErrorCode::Plugin(cni::spec::CODE_RANGE_FULL));
    // Two addresses for one range set: refused before anything is reserved.
    c["runtimeConfig"] = serde_json::json!({"ips": ["10.0.0.71"]});
    let err = run(Command::Add, "d", &c, &[("IP".into(), "10.0.0.70".into())]).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidNetworkConfig, "{err}");
    assert_eq!(files(tmp.path()).len(), 4);
    // The same address asked for twice is one request.
    let out = run(Command::Add, "d", &c, &[("IP".into(), "10.0.0.71".into())]).unwrap();
    assert!(String::from_utf8_lossy(&out).contains("10.0.0.71/24"));
}

#[test]
fn gc_releases_attachments_not_listed_as_valid() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = conf("1.1.0", tmp.path(), serde_json::json!({"subnet": "10.0.0.0/24"}));
    add("keep", &c).unwrap();
    add("drop", &c).unwrap();
    run(Command::Gc, "", &c, &[]).unwrap();
    assert_eq!(files(tmp.path()).len(), 4, "without valid-attachments GC keeps everything");
    c["cni.dev/valid-attachments"] = serde_json::json!([{"containerID": "keep", "ifname": "eth0"}]);
    run(Command::Gc, "", &c, &[]).unwrap();
    assert_eq!(files(tmp.path()), set(&["10.0.0.2", "last_reserved_ip.0", "lock"]));
    run(Command::Status, "", &c, &[]).unwrap();
}

#[test]
fn fifty_parallel_adds_get_distinct_addresses_and_parallel_dels_free_them() {
    let tmp = tempfile::tempdir().unwrap();
    let c = conf("1.0.0", tmp.path(), serde_json::json!({"ranges": [[{"subnet": "10.20.0.0/26"}]]}));
    let ids: Vec<String> = (0..50).map(|i| format!("ctr{i:02}")).collect();
    let ips: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = ids.iter().map(|id| s.spawn(|| add(id, &c).unwrap().ips[0].address.addr().to_string())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let distinct: BTreeSet<&String> = ips.iter().collect();
    assert_eq!(distinct.len(), 50, "{ips:?}");
    let on_disk = files(tmp.path());
    assert_eq!(on_disk.len(), 52, "{on_disk:?}");
    for (id, ip) in ids.iter().zip(&ips) {
        assert_eq!(std::fs::read_to_string(tmp.path().join("testnet").join(ip)).unwrap(), format!("{id}\r\neth0"));
    }
    std::thread::scope(|s| {
        for id in &ids {
            s.spawn(|| run(Command::Del, id, &c, &[]).unwrap());
        }
    });
    assert_eq!(files(tmp.path()), set(&["last_reserved_ip.0", "lock"]));
}

#[test]
fn an_exhausted_range_is_code_101_naming_the_range() {
    let tmp = tempfile::tempdir().unwrap();
    let c = conf("1.0.0", tmp.path(), serde_json::json!({"ranges": [[{"subnet": "10.30.0.0/29"}]]}));
    // .0 network, .1 gateway, .7 broadcast: five addresses to give.
    let got: Vec<String> = (0..5).map(|i| add(&format!("c{i}"), &c).unwrap().ips[0].address.to_string()).collect();
    assert_eq!(got, ["10.30.0.2/29", "10.30.0.3/29", "10.30.0.4/29", "10.30.0.5/29", "10.30.0.6/29"]);
    let err = add("c5", &c).unwrap_err();
    assert_eq!(err.code, ErrorCode::Plugin(cni::spec::CODE_RANGE_FULL));
    assert!(err.msg.contains("10.30.0.1-10.30.0.6"), "{}", err.msg);
}
