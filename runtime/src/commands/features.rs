//! `features`: what this runtime supports, in the runtime-spec `features` format.

use serde_json::json;

use super::Error;
use crate::namespaces::NsType;
use crate::rootfs::options;
use crate::seccomp;

pub fn features() -> Result<(), Error> {
    println!("{}", serde_json::to_string_pretty(&document()).expect("JSON serializes"));
    Ok(())
}

pub fn document() -> serde_json::Value {
    let mut caps: Vec<String> = caps::all().into_iter().map(|c| c.to_string()).collect();
    caps.sort();
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.1",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": options::known_options(),
        "linux": {
            "namespaces": NsType::ALL.iter().map(|n| n.spec_name()).collect::<Vec<_>>(),
            "capabilities": caps,
            "cgroup": {"v1": false, "v2": true, "systemd": false, "systemdUser": false, "rdma": true},
            "seccomp": {
                "enabled": true,
                "actions": seccomp::supported::ACTIONS,
                "operators": seccomp::supported::OPERATORS,
                "archs": seccomp::supported::archs(),
                "knownFlags": seccomp::supported::KNOWN_FLAGS,
                "supportedFlags": seccomp::supported::kernel_flags()
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": false}}
        },
        "annotations": {
            "io.github.kubelet-rs.runtime-rs.version": env!("CARGO_PKG_VERSION"),
            "io.github.seccomp.libseccomp.version": seccomp::supported::libseccomp_version().unwrap_or_default()
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn features_parse_as_the_spec_type() {
        let f: oci_spec::runtime::Features = serde_json::from_value(super::document()).unwrap();
        assert_eq!(f.oci_version_max(), "1.2.1");
        let linux = f.linux().as_ref().unwrap();
        assert!(linux.namespaces().as_ref().unwrap().contains(&oci_spec::runtime::LinuxNamespaceType::Time));
        assert!(linux.capabilities().as_ref().unwrap().contains(&"CAP_SYS_ADMIN".to_string()));
        let sc = linux.seccomp().as_ref().unwrap();
        use oci_spec::runtime::{Arch, LinuxSeccompAction as A};
        assert_eq!(*sc.enabled(), Some(true));
        assert!(sc.actions().as_ref().unwrap().contains(&A::ScmpActKillProcess));
        assert!(!sc.actions().as_ref().unwrap().contains(&A::ScmpActNotify), "user notification is not supported");
        assert!(sc.operators().as_ref().unwrap().contains(&"SCMP_CMP_MASKED_EQ".to_string()));
        let archs = sc.archs().as_ref().unwrap();
        assert!(archs.contains(&Arch::ScmpArchX86_64) && archs.contains(&Arch::ScmpArchAarch64), "{archs:?}");
        // TSYNC exists since Linux 3.17.
        assert!(sc.supported_flags().as_ref().unwrap().contains(&"SECCOMP_FILTER_FLAG_TSYNC".to_string()));
    }
}
