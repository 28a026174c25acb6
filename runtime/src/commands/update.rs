//! `update <id>`: change a running container's resources. What is given is merged into the
//! resources stored at create (or by an earlier update); the whole result is validated as at
//! create, applied to the cgroup, and stored, so later commands see it.

use std::io::Read;

use oci_spec::runtime::LinuxResources;
use serde_json::{json, Map, Value};

use super::Error;
use crate::cgroups::{CgroupManager, Resources};
use crate::cli::Update;
use crate::container::{Status, Store};

pub fn update(store: &Store, args: &Update) -> Result<(), Error> {
    let mut c = store.load(&args.id)?;
    match c.status(&store.dir(&args.id)) {
        Status::Created | Status::Running | Status::Paused => {}
        _ => return Err(Error::Refused(format!("cannot update container {}: it is not running", args.id))),
    }
    let cgroup = c.cgroup().ok_or_else(|| Error::Refused("container has no cgroup to update".into()))?;
    let patch = match &args.resources {
        Some(file) => {
            if flags_patch(args)?.as_object().is_some_and(|o| !o.is_empty()) {
                tracing::warn!("update: --resources is given, so the other options are ignored (as runc does)");
            }
            read_resources_file(file)?
        }
        None => flags_patch(args)?,
    };
    let mut linux = c.spec.linux().clone().unwrap_or_default();
    let stored = serde_json::to_value(linux.resources().clone().unwrap_or_default()).map_err(|e| Error::Refused(e.to_string()))?;
    let merged = merge(stored, patch);
    let merged: LinuxResources = crate::spec::parse_json(&merged.to_string())
        .map_err(|(path, message)| Error::Refused(format!("resources: {path}: {message}")))?;
    let resources = Resources::from_spec(&merged).map_err(|problems| {
        Error::Refused(problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
    })?;
    check_before_update(&merged, &cgroup)?;
    cgroup.apply(&resources)?;
    linux.set_resources(Some(merged));
    c.spec.set_linux(Some(linux));
    store.save(&c)?;
    Ok(())
}

/// `memory.checkBeforeUpdate`: refuse a memory limit below what the container uses now,
/// rather than have the kernel reclaim or OOM-kill to meet it.
fn check_before_update(r: &LinuxResources, cgroup: &impl CgroupManager) -> Result<(), Error> {
    let Some(m) = r.memory() else { return Ok(()) };
    let Some(limit) = m.limit().filter(|l| *l > 0 && m.check_before_update() == Some(true)) else { return Ok(()) };
    let current = std::fs::read_to_string(cgroup.path().join("memory.current")).ok().and_then(|s| s.trim().parse::<i64>().ok());
    match current {
        Some(used) if used >= limit => Err(Error::Refused(format!(
            "linux.resources.memory.limit: {limit} is not above the container's current memory usage {used} (checkBeforeUpdate is set)"
        ))),
        _ => Ok(()),
    }
}

/// The `--resources` file (or stdin for `-`): a `linux.resources` object. Devices are the
/// device program's business and are not changed by update.
fn read_resources_file(file: &std::path::Path) -> Result<Value, Error> {
    let name = file.display().to_string();
    let mut text = String::new();
    if name == "-" {
        std::io::stdin().read_to_string(&mut text).map_err(Error::io("read resources from stdin"))?;
    } else {
        text = std::fs::read_to_string(file).map_err(Error::io(format!("read resources file {name}")))?;
    }
    let mut v: Value = serde_json::from_str(&text).map_err(|e| Error::Refused(format!("resources file {name}: {e}")))?;
    if !v.is_object() {
        return Err(Error::Refused(format!("resources file {name}: expected a JSON object")));
    }
    if v.as_object_mut().and_then(|o| o.remove("devices")).is_some() {
        tracing::warn!("update: linux.resources.devices is not changed by update");
    }
    Ok(v)
}

/// The single-value options as a `linux.resources` fragment.
fn flags_patch(a: &Update) -> Result<Value, Error> {
    let mut v = Map::new();
    let mut set = |section: &str, key: &str, value: Value| {
        let s = v.entry(section.to_string()).or_insert_with(|| json!({}));
        s[key] = value;
    };
    for (key, given) in [("limit", &a.memory), ("swap", &a.memory_swap), ("reservation", &a.memory_reservation)] {
        if let Some(s) = given {
            let n = parse_bytes(s).map_err(|e| Error::Refused(format!("--memory{}: {e}", flag_suffix(key))))?;
            set("memory", key, json!(n));
        }
    }
    if let Some(n) = a.cpu_shares {
        set("cpu", "shares", json!(n));
    }
    if let Some(n) = a.cpu_quota {
        set("cpu", "quota", json!(n));
    }
    if let Some(n) = a.cpu_period {
        set("cpu", "period", json!(n));
    }
    if let Some(s) = &a.cpuset_cpus {
        set("cpu", "cpus", json!(s));
    }
    if let Some(s) = &a.cpuset_mems {
        set("cpu", "mems", json!(s));
    }
    if let Some(n) = a.pids_limit {
        set("pids", "limit", json!(n));
    }
    if let Some(n) = a.blkio_weight {
        set("blockIO", "weight", json!(n));
    }
    Ok(Value::Object(v))
}

fn flag_suffix(key: &str) -> &'static str {
    match key {
        "swap" => "-swap",
        "reservation" => "-reservation",
        _ => "",
    }
}

/// A size as runc's update takes it: bytes, or with a k/m/g/t suffix (powers of 1024, an
/// optional trailing b), or -1 for no limit.
pub fn parse_bytes(s: &str) -> Result<i64, String> {
    let t = s.trim().to_ascii_lowercase();
    if t == "-1" {
        return Ok(-1);
    }
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: i64 = num.parse().map_err(|_| format!("{s:?} is not a size (bytes, or with k, m, g suffix; -1 for none)"))?;
    if n < 0 {
        return Err(format!("{s:?} is negative (use -1 for no limit)"));
    }
    n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too large"))
}

/// Objects merged key by key; anything else in `patch` replaces what was there.
fn merge(base: Value, patch: Value) -> Value {
    match (base, patch) {
        (Value::Object(mut b), Value::Object(p)) => {
            for (k, v) in p {
                let old = b.remove(&k).unwrap_or(Value::Null);
                b.insert(k, merge(old, v));
            }
            Value::Object(b)
        }
        (_, p) => p,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_suffixes() {
        assert_eq!(parse_bytes("1048576"), Ok(1048576));
        assert_eq!(parse_bytes("100m"), Ok(100 << 20));
        assert_eq!(parse_bytes("2G"), Ok(2 << 30));
        assert_eq!(parse_bytes("64kb"), Ok(64 << 10));
        assert_eq!(parse_bytes("-1"), Ok(-1));
        assert!(parse_bytes("-5").is_err());
        assert!(parse_bytes("lots").is_err());
    }

    #[test]
    fn given_values_override_and_the_rest_stays() {
        let stored = json!({"memory": {"limit": 100, "swap": 200}, "pids": {"limit": 5}, "devices": [{"allow": false, "access": "rwm"}]});
        let got = merge(stored, json!({"memory": {"limit": 150}, "cpu": {"shares": 512}}));
        assert_eq!(
            got,
            json!({"memory": {"limit": 150, "swap": 200}, "pids": {"limit": 5}, "cpu": {"shares": 512}, "devices": [{"allow": false, "access": "rwm"}]})
        );
    }

    #[test]
    fn flags_become_a_resources_fragment() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from(["runtime-rs", "update", "--memory", "64m", "--memory-swap", "-1", "--cpu-quota", "-1", "--cpuset-cpus", "0", "--pids-limit", "7", "--blkio-weight", "300", "c"]).unwrap();
        let crate::cli::Command::Update(u) = cli.command else { panic!() };
        assert_eq!(
            flags_patch(&u).unwrap(),
            json!({"memory": {"limit": 67108864, "swap": -1}, "cpu": {"quota": -1, "cpus": "0"}, "pids": {"limit": 7}, "blockIO": {"weight": 300}})
        );
    }
}
