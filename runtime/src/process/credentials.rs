//! The container process's identity and limits: rlimits, groups, uid/gid, capabilities and
//! no_new_privs, applied in the one order that works.
//!
//! Order: rlimits while still privileged (raising a hard limit needs CAP_SYS_RESOURCE); keep
//! capabilities across the uid change; drop the bounding set; set groups, gid, uid; then set
//! the inheritable, effective and permitted sets exactly and raise the ambient ones;
//! no_new_privs last. Seccomp is loaded by the caller (`container_process.rs`): before all of
//! this without no_new_privs (loading needs CAP_SYS_ADMIN then), right before execve with it.

use caps::{CapSet, Capability, CapsHashSet};
use nix::errno::Errno;

use crate::spec::{ProcessConfig, Rlimit};
use crate::syscall::Syscall;

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot set {name} to soft {soft} hard {hard}: {source}{hint}")]
    Rlimit { name: String, soft: u64, hard: u64, source: Errno, hint: &'static str },
    #[error("cannot set {what}: {source}")]
    Id { what: String, source: Errno },
    #[error("cannot set capabilities ({what}): {source}")]
    Capabilities { what: String, source: caps::errors::CapsError },
    #[error("cannot set no_new_privs: {0}")]
    NoNewPrivs(Errno),
}

pub fn apply_rlimits(sys: &dyn Syscall, rlimits: &[Rlimit]) -> Result<(), CredentialsError> {
    for r in rlimits {
        sys.setrlimit(r.resource, r.soft, r.hard).map_err(|source| CredentialsError::Rlimit {
            name: r.name.clone(),
            soft: r.soft,
            hard: r.hard,
            source,
            hint: if source == Errno::EPERM { " (raising a hard limit needs CAP_SYS_RESOURCE, which the runtime does not have)" } else { "" },
        })?;
    }
    Ok(())
}

/// Switch to the process's user and capabilities. `supported` is what the running kernel
/// knows; capabilities beyond it are ignored, as runc does. `setgroups_allowed` is false in a
/// user namespace whose `setgroups` file says "deny".
pub fn apply_identity(
    sys: &dyn Syscall,
    p: &ProcessConfig,
    supported: &CapsHashSet,
    setgroups_allowed: bool,
) -> Result<Vec<String>, CredentialsError> {
    let mut warnings = Vec::new();
    let caps_err = |what: &str| {
        let what = what.to_string();
        move |source| CredentialsError::Capabilities { what: what.clone(), source }
    };
    let id_err = |what: String| move |source| CredentialsError::Id { what: what.clone(), source };

    if let Some(c) = &p.capabilities {
        sys.set_keep_capabilities(true).map_err(id_err("keepcaps".into()))?;
        let mut to_drop: Vec<Capability> = supported.iter().filter(|cap| !c.bounding.contains(cap)).copied().collect();
        to_drop.sort_by_key(|c| c.index());
        for cap in to_drop {
            sys.drop_bounding_capability(cap).map_err(caps_err(&format!("drop {cap} from the bounding set")))?;
        }
    }
    if setgroups_allowed {
        sys.setgroups(&p.additional_gids).map_err(id_err(format!("supplementary groups {:?}", p.additional_gids)))?;
    } else if !p.additional_gids.is_empty() {
        warnings.push("additional gids ignored: setgroups is denied in this user namespace".to_string());
    }
    sys.setresgid(p.gid).map_err(id_err(format!("gid {}", p.gid)))?;
    sys.setresuid(p.uid).map_err(id_err(format!("uid {}", p.uid)))?;
    if let Some(c) = &p.capabilities {
        sys.set_keep_capabilities(false).map_err(id_err("keepcaps".into()))?;
        let only = |set: &CapsHashSet| set.intersection(supported).copied().collect::<CapsHashSet>();
        // Inheritable first, while CAP_SETPCAP may still be effective; effective before
        // permitted, because permitted may never be lowered below effective.
        sys.set_capabilities(CapSet::Inheritable, &only(&c.inheritable)).map_err(caps_err("inheritable"))?;
        sys.set_capabilities(CapSet::Effective, &only(&c.effective)).map_err(caps_err("effective"))?;
        sys.set_capabilities(CapSet::Permitted, &only(&c.permitted)).map_err(caps_err("permitted"))?;
        let mut ambient: Vec<Capability> = only(&c.ambient).into_iter().collect();
        ambient.sort_by_key(|c| c.index());
        for cap in ambient {
            // The kernel only raises an ambient capability that is also permitted and
            // inheritable; like runc, a refusal is a warning, not a failure.
            if let Err(e) = sys.raise_ambient_capability(cap) {
                warnings.push(format!("ambient capability {cap} not raised: {e}"));
            }
        }
    }
    if p.no_new_privileges {
        sys.set_no_new_privileges().map_err(CredentialsError::NoNewPrivs)?;
    }
    if let Some(mask) = p.umask {
        sys.umask(mask);
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Capabilities;
    use crate::syscall::{Call, Recorder};
    use nix::sys::resource::Resource;

    fn process(caps: Option<Capabilities>) -> ProcessConfig {
        ProcessConfig {
            terminal: false,
            console_size: None,
            args: vec!["sh".into()],
            env: vec![],
            cwd: "/".into(),
            uid: 1000,
            gid: 1001,
            additional_gids: vec![5, 6],
            umask: Some(0o027),
            capabilities: caps,
            rlimits: vec![],
            no_new_privileges: true,
            oom_score_adj: None,
        }
    }

    fn set(caps: &[Capability]) -> CapsHashSet {
        caps.iter().copied().collect()
    }

    #[test]
    fn identity_is_applied_in_order() {
        let supported = set(&[Capability::CAP_CHOWN, Capability::CAP_KILL, Capability::CAP_SYS_ADMIN]);
        let caps = Capabilities {
            bounding: set(&[Capability::CAP_KILL, Capability::CAP_CHOWN]),
            effective: set(&[Capability::CAP_KILL]),
            permitted: set(&[Capability::CAP_KILL]),
            inheritable: set(&[]),
            ambient: set(&[Capability::CAP_KILL, Capability::CAP_BPF]),
        };
        let sys = Recorder::new();
        let warnings = apply_identity(&sys, &process(Some(caps)), &supported, true).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(
            sys.calls(),
            vec![
                Call::KeepCaps(true),
                Call::DropBounding(Capability::CAP_SYS_ADMIN),
                Call::Setgroups(vec![5, 6]),
                Call::Setresgid(1001),
                Call::Setresuid(1000),
                Call::KeepCaps(false),
                Call::SetCaps { set: "Inheritable".into(), caps: vec![] },
                Call::SetCaps { set: "Effective".into(), caps: vec![Capability::CAP_KILL] },
                Call::SetCaps { set: "Permitted".into(), caps: vec![Capability::CAP_KILL] },
                // CAP_BPF is not supported by this (pretend) kernel, so only CAP_KILL is raised.
                Call::RaiseAmbient(Capability::CAP_KILL),
                Call::NoNewPrivs,
                Call::Umask(0o027),
            ]
        );
    }

    #[test]
    fn without_capabilities_only_ids_change() {
        let sys = Recorder::new();
        let mut p = process(None);
        p.no_new_privileges = false;
        p.umask = None;
        apply_identity(&sys, &p, &CapsHashSet::new(), false).unwrap();
        assert_eq!(sys.calls(), vec![Call::Setresgid(1001), Call::Setresuid(1000)]);
    }

    #[test]
    fn rlimits_are_set_and_eperm_is_explained() {
        let sys = Recorder::new();
        let r = vec![Rlimit { name: "RLIMIT_NOFILE".into(), resource: Resource::RLIMIT_NOFILE, soft: 1024, hard: 4096 }];
        apply_rlimits(&sys, &r).unwrap();
        assert_eq!(sys.calls(), vec![Call::Setrlimit { resource: Resource::RLIMIT_NOFILE, soft: 1024, hard: 4096 }]);
        let err = CredentialsError::Rlimit { name: "RLIMIT_NOFILE".into(), soft: 1, hard: 2, source: Errno::EPERM, hint: "" };
        assert!(err.to_string().starts_with("cannot set RLIMIT_NOFILE to soft 1 hard 2"));
    }
}
