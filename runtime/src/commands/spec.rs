//! `spec`: write a starting config.json.

use std::path::PathBuf;

use serde::Serialize;

use super::Error;
use crate::cli::SpecArgs;

pub fn spec(args: &SpecArgs) -> Result<(), Error> {
    let dir = args.bundle.clone().unwrap_or_else(|| PathBuf::from("."));
    let path = dir.join("config.json");
    if path.exists() {
        return Err(Error::Refused(format!("file {} exists; remove it first", path.display())));
    }
    let rootless = args.rootless.then(|| (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw()));
    let mut value = crate::spec::default_spec(rootless);
    if args.seccomp_runtime_default {
        add_runtime_default_seccomp(&mut value);
    }
    // Tab-indented, like runc's.
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, serde_json::ser::PrettyFormatter::with_indent(b"\t"));
    value.serialize(&mut ser).expect("JSON serializes");
    buf.push(b'\n');
    std::fs::write(&path, buf).map_err(Error::io(format!("write {}", path.display())))
}

/// Put the built-in profile, for the spec's bounding capabilities, into `linux.seccomp`.
fn add_runtime_default_seccomp(spec: &mut serde_json::Value) {
    let caps: caps::CapsHashSet = spec["process"]["capabilities"]["bounding"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str().and_then(|s| s.parse().ok()))
        .collect();
    let profile = crate::seccomp::runtime_default(&caps);
    spec["linux"]["seccomp"] = serde_json::to_value(profile).expect("JSON serializes");
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_runtime_default_profile_goes_into_the_generated_spec_and_validates() {
        let mut value = crate::spec::default_spec(None);
        super::add_runtime_default_seccomp(&mut value);
        assert_eq!(value["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        let spec: oci_spec::runtime::Spec = serde_json::from_value(value).unwrap();
        let config = crate::spec::Config::from_spec(std::path::Path::new("/b"), spec).unwrap();
        let profile = config.seccomp.unwrap();
        // The default spec has no CAP_SYS_ADMIN: clone is allowed only without namespace flags.
        assert!(profile.rules.iter().any(|r| r.name == "clone" && r.conditions.len() == 1));
        assert!(!profile.rules.iter().any(|r| r.name == "mount"));
    }
}
