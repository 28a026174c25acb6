//! The container's process: args, env and cwd from the image config under Kubernetes'
//! rules (`command` replaces Entrypoint and drops Cmd, `args` replaces Cmd; envs override
//! the image's by name), and its user: `run_as_username` or `run_as_user` over the image's
//! User, `run_as_group` over the group, names looked up in the image's own /etc/passwd
//! and /etc/group, then the supplemental groups.

use cri_api::runtime::v1::{LinuxContainerSecurityContext, SupplementalGroupsPolicy};
use images::process_config::{ConfigError, Overrides, process_config};
use oci_spec::runtime::{Process, ProcessBuilder, Spec, UserBuilder};

use super::{SpecError, SpecInput, invalid};

const SC: &str = "linux.security_context";

pub(super) fn process(input: &SpecInput, sc: &LinuxContainerSecurityContext) -> Result<Process, SpecError> {
    let c = input.config;
    let mut env = Vec::with_capacity(c.envs.len());
    for (i, kv) in c.envs.iter().enumerate() {
        if kv.key.is_empty() || kv.key.contains('=') || kv.key.contains('\0') || kv.value.contains('\0') {
            return Err(invalid(format!("envs[{i}].key"), format!("{:?} is not an environment variable name", kv.key)));
        }
        env.push(format!("{}={}", kv.key, kv.value));
    }
    let image_user = input.image.config().as_ref().and_then(|c| c.user().clone()).unwrap_or_default();
    let overrides = Overrides {
        command: (!c.command.is_empty()).then(|| c.command.clone()),
        args: (!c.args.is_empty()).then(|| c.args.clone()),
        env,
        working_dir: (!c.working_dir.is_empty()).then(|| c.working_dir.clone()),
        user: user_string(sc, &image_user)?,
    };
    let user_field = if !sc.run_as_username.is_empty() {
        format!("{SC}.run_as_username")
    } else if sc.run_as_user.is_some() {
        format!("{SC}.run_as_user")
    } else {
        "image config User".to_string()
    };
    let p = process_config(input.image, &overrides, input.users).map_err(|e| match e {
        ConfigError::NoCommand => invalid("command", "neither command nor args are given, and the image has no Entrypoint or Cmd"),
        ConfigError::UnknownUser { .. } | ConfigError::UnknownGroup { .. } | ConfigError::BadUser { .. } => {
            invalid(user_field, e.to_string())
        }
        other => SpecError::Process(other),
    })?;
    if !p.cwd.starts_with('/') {
        return Err(invalid("working_dir", format!("{:?} must be an absolute path", p.cwd)));
    }
    let mut env = p.env;
    // containerd's order: HOSTNAME first, then the image's, then the container's.
    if !input.sandbox.hostname.is_empty() && !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env.insert(0, format!("HOSTNAME={}", input.sandbox.hostname));
    }
    if c.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let gids = additional_gids(sc, p.gid, &p.additional_gids)?;
    let mut process = ProcessBuilder::default()
        .terminal(c.tty)
        .args(p.args)
        .env(env)
        .cwd(p.cwd)
        .user(UserBuilder::default().uid(p.uid).gid(p.gid).additional_gids(gids).build()?)
        .no_new_privileges(sc.no_new_privs)
        .build()?;
    // The builder starts from oci-spec's defaults, which limit open files to 1024; the CRI
    // sets no rlimits, so the runtime's own are inherited.
    process.set_rlimits(None);
    Ok(process)
}

fn id_value(v: i64, field: &str) -> Result<u32, SpecError> {
    u32::try_from(v).map_err(|_| invalid(field, format!("{v} is not a valid id (0..={})", u32::MAX)))
}

/// The user as the image's User syntax spells it (`user[:group]`), from the security
/// context over the image's: `None` keeps the image's.
fn user_string(sc: &LinuxContainerSecurityContext, image_user: &str) -> Result<Option<String>, SpecError> {
    let image_u = image_user.split(':').next().unwrap_or_default();
    let user = if !sc.run_as_username.is_empty() {
        if sc.run_as_username.contains(':') {
            return Err(invalid(format!("{SC}.run_as_username"), format!("{:?} is not a user name", sc.run_as_username)));
        }
        Some(sc.run_as_username.clone())
    } else {
        sc.run_as_user.map(|u| id_value(u.value, &format!("{SC}.run_as_user")).map(|u| u.to_string())).transpose()?
    };
    let group = sc.run_as_group.map(|g| id_value(g.value, &format!("{SC}.run_as_group")).map(|g| g.to_string())).transpose()?;
    Ok(match (user, group) {
        (None, None) => None,
        (Some(u), Some(g)) => Some(format!("{u}:{g}")),
        (Some(u), None) => Some(u),
        // Only the group given: the image's user (root when it names none) in that group.
        (None, Some(g)) => Some(format!("{}:{g}", if image_u.is_empty() { "0" } else { image_u })),
    })
}

/// The primary gid first (so that a group denied by a file's mode stays denied, the fix
/// of CVE-2023-25173), then the image's /etc/group memberships (unless the policy is
/// Strict), then `supplemental_groups`.
fn additional_gids(sc: &LinuxContainerSecurityContext, gid: u32, from_image: &[u32]) -> Result<Vec<u32>, SpecError> {
    let policy = SupplementalGroupsPolicy::try_from(sc.supplemental_groups_policy).map_err(|_| {
        invalid(format!("{SC}.supplemental_groups_policy"), format!("{} is not a policy", sc.supplemental_groups_policy))
    })?;
    let mut gids = vec![gid];
    if policy == SupplementalGroupsPolicy::Merge {
        gids.extend_from_slice(from_image);
    }
    for (i, g) in sc.supplemental_groups.iter().enumerate() {
        gids.push(id_value(*g, &format!("{SC}.supplemental_groups[{i}]"))?);
    }
    let mut seen = std::collections::HashSet::new();
    gids.retain(|g| seen.insert(*g));
    Ok(gids)
}

/// The process of an exec (`ExecSync`, `Exec`) in a container whose spec is `spec`: the
/// container's user, env, cwd, capabilities and no_new_privs, running `cmd`.
pub fn exec_process(spec: &Spec, cmd: &[String], tty: bool) -> Result<Process, SpecError> {
    if cmd.is_empty() {
        return Err(invalid("cmd", "must name the program to run"));
    }
    let mut p = spec.process().clone().ok_or_else(|| invalid("container spec", "has no process"))?;
    p.set_args(Some(cmd.to_vec()));
    p.set_terminal(Some(tty));
    p.set_console_size(None);
    Ok(p)
}
