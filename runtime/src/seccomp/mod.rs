//! Seccomp: `linux.seccomp` checked into a [`Profile`] (in the spec's one validation pass),
//! compiled to a BPF [`Program`] with libseccomp before any process is forked, and installed
//! by the container process with one `seccomp(2)` call.
//!
//! libseccomp (Debian's libseccomp-dev, the library runc and crun use) resolves syscall names
//! per architecture and generates the program, including the 64-bit argument comparisons and
//! the architecture checks. It is only used in the runtime itself: the forked child receives
//! plain bytes and never calls into the library, and libseccomp's own "set no_new_privs before
//! loading" is off, since no_new_privs is the spec's decision (`process.noNewPrivileges`).
//!
//! Semantics follow runc where the runtime spec leaves room:
//! - `SCMP_ACT_ERRNO` and `SCMP_ACT_TRACE` without `errnoRet` return EPERM.
//! - A rule whose action is the default action is dropped (libseccomp refuses it; it changes
//!   nothing).
//! - The conditions of one rule are ANDed when they name different arguments; when two name
//!   the same argument each becomes a rule of its own (ORed), which is how profiles such as
//!   Docker's write "personality(0) or personality(8)".
//! - `SCMP_CMP_MASKED_EQ` masks the argument with `value` and compares it with `valueTwo`.
//! - Of two rules for one syscall without arguments, the first wins (libseccomp's choice).
//! - A syscall name libseccomp knows for no architecture at all is an error naming the field.
//!   A name that exists, but on none of the filter's architectures (`socketcall` in an
//!   x86_64-only filter), is skipped with a debug log, as runc skips it.
//!
//! Not supported yet: `SCMP_ACT_NOTIFY` and `listenerPath` (user notification), and the
//! `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` flag that only matters with it; they are refused.

mod default_profile;

pub use default_profile::runtime_default;

use std::collections::HashSet;
use std::io::{Read, Seek};
use std::os::fd::{FromRawFd, OwnedFd};
use std::str::FromStr;

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator};

use crate::spec::Problem;

/// What the kernel does when a rule (or the default) matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `SCMP_ACT_KILL` and `SCMP_ACT_KILL_THREAD`.
    KillThread,
    KillProcess,
    Trap,
    Errno(u16),
    Trace(u16),
    Log,
    Allow,
}

impl Action {
    fn to_scmp(self) -> ScmpAction {
        match self {
            Action::KillThread => ScmpAction::KillThread,
            Action::KillProcess => ScmpAction::KillProcess,
            Action::Trap => ScmpAction::Trap,
            Action::Errno(e) => ScmpAction::Errno(e.into()),
            Action::Trace(m) => ScmpAction::Trace(m),
            Action::Log => ScmpAction::Log,
            Action::Allow => ScmpAction::Allow,
        }
    }
}

/// A comparison of one syscall argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Condition {
    pub index: u32,
    pub op: LinuxSeccompOperator,
    pub value: u64,
    pub value_two: u64,
}

impl Condition {
    fn to_scmp(self) -> ScmpArgCompare {
        use LinuxSeccompOperator as O;
        let op = match self.op {
            O::ScmpCmpNe => ScmpCompareOp::NotEqual,
            O::ScmpCmpLt => ScmpCompareOp::Less,
            O::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
            O::ScmpCmpEq => ScmpCompareOp::Equal,
            O::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
            O::ScmpCmpGt => ScmpCompareOp::Greater,
            O::ScmpCmpMaskedEq => return ScmpArgCompare::new(self.index, ScmpCompareOp::MaskedEqual(self.value), self.value_two),
        };
        ScmpArgCompare::new(self.index, op, self.value)
    }
}

/// One syscall, resolved, with its action and the conditions that must all hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    /// libseccomp's number for the name on the native architecture (negative for a
    /// syscall that only exists on another architecture of the filter).
    pub nr: i32,
    pub action: Action,
    pub conditions: Vec<Condition>,
}

/// `linux.seccomp` after validation: everything resolved, ready to compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub default_action: Action,
    /// The filter's architectures besides the native one.
    pub extra_architectures: Vec<ScmpArch>,
    /// `SECCOMP_FILTER_FLAG_*` bits for `seccomp(2)`.
    pub flags: u32,
    pub rules: Vec<Rule>,
}

/// The compiled filter and the flags to load it with.
#[derive(Debug, Clone)]
pub struct Program {
    /// `struct sock_filter` instructions, as the kernel takes them.
    pub instructions: Vec<libc::sock_filter>,
    pub flags: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp: cannot create the filter: {0}")]
    Context(libseccomp::error::SeccompError),
    #[error("seccomp: cannot add architecture {arch:?}: {source}")]
    Arch { arch: ScmpArch, source: libseccomp::error::SeccompError },
    #[error("seccomp: cannot add the rule for syscall {name:?}: {source}")]
    Rule { name: String, source: libseccomp::error::SeccompError },
    #[error("seccomp: cannot export the filter: {0}")]
    Export(String),
    #[error("seccomp: the filter has {0} instructions, more than the kernel's limit of 4096")]
    TooLong(usize),
    #[error("cannot load the seccomp filter: {0}{1}")]
    Load(nix::errno::Errno, &'static str),
}

const SECCOMP_SET_MODE_FILTER: libc::c_uint = 1;
const FLAG_TSYNC: u32 = 1;
const FLAG_LOG: u32 = 2;
const FLAG_SPEC_ALLOW: u32 = 4;
/// The arguments a syscall has, at most.
const MAX_ARGS: usize = 6;
/// The largest errno the kernel returns as an error (`MAX_ERRNO`).
const MAX_ERRNO: u32 = 4095;

/// The spec name of an architecture (`SCMP_ARCH_X86_64`).
fn arch_spec_name(a: &oci_spec::runtime::Arch) -> String {
    serde_json::to_value(a).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// A short name for messages (`x86_64`).
fn arch_short(a: ScmpArch) -> String {
    match a {
        ScmpArch::X8664 => "x86_64".into(),
        ScmpArch::X86 => "x86".into(),
        ScmpArch::X32 => "x32".into(),
        ScmpArch::Aarch64 => "aarch64".into(),
        ScmpArch::Arm => "arm".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// Check `linux.seccomp` and resolve it. `field` is where it sits ("linux.seccomp").
pub fn convert(s: &LinuxSeccomp, field: &str) -> Result<Profile, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut add = |f: String, m: String| problems.push(Problem { field: f, message: m });

    let default_errno = match s.default_errno_ret() {
        Some(e) if e > MAX_ERRNO => {
            add(format!("{field}.defaultErrnoRet"), format!("{e} is not an errno number (0..{MAX_ERRNO})"));
            None
        }
        other => other,
    };
    let default_action = action(s.default_action(), default_errno).unwrap_or_else(|m| {
        add(format!("{field}.defaultAction"), m);
        Action::Allow
    });
    if s.default_errno_ret().is_some() && !matches!(s.default_action(), LinuxSeccompAction::ScmpActErrno | LinuxSeccompAction::ScmpActTrace) {
        add(format!("{field}.defaultErrnoRet"), "is only meaningful with defaultAction SCMP_ACT_ERRNO or SCMP_ACT_TRACE".into());
    }
    if s.listener_path().is_some() {
        add(format!("{field}.listenerPath"), "seccomp user notification (SCMP_ACT_NOTIFY) is not supported by runtime-rs yet".into());
    }

    let native = ScmpArch::native();
    let mut targets = vec![native];
    let mut extra_architectures = Vec::new();
    for (i, a) in s.architectures().clone().unwrap_or_default().iter().enumerate() {
        let name = arch_spec_name(a);
        match ScmpArch::from_str(&name) {
            Ok(ScmpArch::Native) => {}
            Ok(arch) if !targets.contains(&arch) => {
                targets.push(arch);
                extra_architectures.push(arch);
            }
            Ok(_) => {}
            Err(_) => add(format!("{field}.architectures[{i}]"), format!("{name} is not supported by this libseccomp")),
        }
    }

    let mut flags = 0;
    for (i, f) in s.flags().clone().unwrap_or_default().iter().enumerate() {
        match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => flags |= FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => flags |= FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => flags |= FLAG_SPEC_ALLOW,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                add(format!("{field}.flags[{i}]"), "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV only applies to user notification, which runtime-rs does not support yet".into());
            }
        }
    }

    let mut rules = Vec::new();
    for (i, sc) in s.syscalls().clone().unwrap_or_default().iter().enumerate() {
        let rf = format!("{field}.syscalls[{i}]");
        if sc.names().is_empty() {
            add(format!("{rf}.names"), "must name at least one syscall".into());
        }
        let errno = match sc.errno_ret() {
            Some(e) if e > MAX_ERRNO => {
                add(format!("{rf}.errnoRet"), format!("{e} is not an errno number (0..{MAX_ERRNO})"));
                None
            }
            other => other,
        };
        if sc.errno_ret().is_some() && !matches!(sc.action(), LinuxSeccompAction::ScmpActErrno | LinuxSeccompAction::ScmpActTrace) {
            add(format!("{rf}.errnoRet"), "is only meaningful with action SCMP_ACT_ERRNO or SCMP_ACT_TRACE".into());
        }
        let act = match action(sc.action(), errno) {
            Ok(a) => Some(a),
            Err(m) => {
                add(format!("{rf}.action"), m);
                None
            }
        };
        let mut conditions = Vec::new();
        for (j, a) in sc.args().clone().unwrap_or_default().iter().enumerate() {
            if a.index() >= MAX_ARGS {
                add(format!("{rf}.args[{j}].index"), format!("{} is out of range: a syscall has arguments 0..{}", a.index(), MAX_ARGS - 1));
                continue;
            }
            conditions.push(Condition { index: a.index() as u32, op: a.op(), value: a.value(), value_two: a.value_two().unwrap_or(0) });
        }
        // Conditions on distinct arguments are ANDed in one rule; otherwise each is a rule.
        let distinct = conditions.iter().map(|c| c.index).collect::<HashSet<_>>().len() == conditions.len();
        let groups: Vec<Vec<Condition>> = if distinct { vec![conditions] } else { conditions.into_iter().map(|c| vec![c]).collect() };
        for (k, name) in sc.names().iter().enumerate() {
            let nr = match resolve(name, &targets) {
                Resolved::Unknown => {
                    let archs = targets.iter().map(|a| arch_short(*a)).collect::<Vec<_>>().join(", ");
                    add(format!("{rf}.names[{k}]"), format!("unknown syscall {name:?} for {archs}"));
                    continue;
                }
                Resolved::NotOnTargets => {
                    tracing::debug!("{rf}.names[{k}]: syscall {name:?} does not exist on the filter's architectures; skipped");
                    continue;
                }
                Resolved::Nr(nr) => nr,
            };
            let Some(act) = act else { continue };
            if act == default_action {
                tracing::debug!("{rf}: {name:?} has the default action; skipped");
                continue;
            }
            for g in &groups {
                rules.push(Rule { name: name.clone(), nr, action: act, conditions: g.clone() });
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Profile { default_action, extra_architectures, flags, rules })
}

enum Resolved {
    Unknown,
    NotOnTargets,
    Nr(i32),
}

/// libseccomp gives a real number (≥ 0) where a syscall exists, a negative pseudo number for a
/// name it knows from other architectures, and an error for a name it does not know at all.
fn resolve(name: &str, targets: &[ScmpArch]) -> Resolved {
    let Ok(native) = ScmpSyscall::from_name(name) else { return Resolved::Unknown };
    let exists = targets.iter().any(|a| ScmpSyscall::from_name_by_arch(name, *a).is_ok_and(|s| s.as_raw_syscall() >= 0));
    if exists { Resolved::Nr(native.as_raw_syscall()) } else { Resolved::NotOnTargets }
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<Action, String> {
    use LinuxSeccompAction as A;
    let ret = errno.unwrap_or(libc::EPERM as u32) as u16;
    Ok(match a {
        A::ScmpActKill | A::ScmpActKillThread => Action::KillThread,
        A::ScmpActKillProcess => Action::KillProcess,
        A::ScmpActTrap => Action::Trap,
        A::ScmpActErrno => Action::Errno(ret),
        A::ScmpActTrace => Action::Trace(ret),
        A::ScmpActLog => Action::Log,
        A::ScmpActAllow => Action::Allow,
        A::ScmpActNotify => return Err("SCMP_ACT_NOTIFY (seccomp user notification) is not supported by runtime-rs yet".into()),
    })
}

/// Generate the BPF program for `p`. Runs in the runtime, before anything is forked.
pub fn compile(p: &Profile) -> Result<Program, SeccompError> {
    let mut ctx = ScmpFilterContext::new(p.default_action.to_scmp()).map_err(SeccompError::Context)?;
    // no_new_privs is process.noNewPrivileges' business, not the filter's.
    ctx.set_ctl_nnp(false).map_err(SeccompError::Context)?;
    for arch in &p.extra_architectures {
        ctx.add_arch(*arch).map_err(|source| SeccompError::Arch { arch: *arch, source })?;
    }
    for r in &p.rules {
        let sc = ScmpSyscall::from(r.nr);
        let res = if r.conditions.is_empty() {
            ctx.add_rule(r.action.to_scmp(), sc)
        } else {
            let cmps: Vec<ScmpArgCompare> = r.conditions.iter().map(|c| c.to_scmp()).collect();
            ctx.add_rule_conditional(r.action.to_scmp(), sc, &cmps)
        };
        res.map_err(|source| SeccompError::Rule { name: r.name.clone(), source })?;
    }
    let instructions = export(&ctx)?;
    if instructions.len() > 4096 {
        return Err(SeccompError::TooLong(instructions.len()));
    }
    Ok(Program { instructions, flags: p.flags })
}

/// libseccomp 2.5 exports to a descriptor only: a memfd, read back.
fn export(ctx: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>, SeccompError> {
    let fd = unsafe { libc::memfd_create(c"seccomp-bpf".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(SeccompError::Export(format!("memfd_create: {}", std::io::Error::last_os_error())));
    }
    // SAFETY: just created, owned here.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    ctx.export_bpf(&fd).map_err(|e| SeccompError::Export(e.to_string()))?;
    let mut f = std::fs::File::from(fd);
    let mut bytes = Vec::new();
    f.rewind().and_then(|_| f.read_to_end(&mut bytes)).map_err(|e| SeccompError::Export(e.to_string()))?;
    const SIZE: usize = std::mem::size_of::<libc::sock_filter>();
    if bytes.len() % SIZE != 0 {
        return Err(SeccompError::Export(format!("{} bytes is not a whole number of instructions", bytes.len())));
    }
    Ok(bytes
        .chunks_exact(SIZE)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

impl Program {
    /// Load the filter into the calling process (and, with TSYNC, its threads). The kernel
    /// allows it with no_new_privs set or with CAP_SYS_ADMIN.
    pub fn install(&self) -> Result<(), SeccompError> {
        let prog = libc::sock_fprog { len: self.instructions.len() as u16, filter: self.instructions.as_ptr() as *mut libc::sock_filter };
        let res = unsafe { libc::syscall(libc::SYS_seccomp, SECCOMP_SET_MODE_FILTER, self.flags as libc::c_ulong, &prog as *const libc::sock_fprog) };
        if res < 0 {
            let errno = nix::errno::Errno::last();
            let hint = match errno {
                nix::errno::Errno::EACCES => " (without no_new_privs the process needs CAP_SYS_ADMIN)",
                nix::errno::Errno::EINVAL if self.flags != 0 => " (the kernel may not know one of linux.seccomp.flags)",
                _ => "",
            };
            return Err(SeccompError::Load(errno, hint));
        }
        // With TSYNC a positive result is the id of a thread that could not be synchronized.
        if res > 0 {
            return Err(SeccompError::Load(nix::errno::Errno::ESRCH, " (a thread could not be synchronized)"));
        }
        Ok(())
    }
}

/// For `features`: the spec's names of what this runtime supports.
pub mod supported {
    pub const ACTIONS: &[&str] = &[
        "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP",
    ];
    pub const OPERATORS: &[&str] = &[
        "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE",
    ];
    pub const KNOWN_FLAGS: &[&str] = &["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"];

    /// Architectures libseccomp can build filters for, by their spec names.
    pub fn archs() -> Vec<String> {
        use std::str::FromStr;
        const ALL: &[&str] = &[
            "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", "SCMP_ARCH_LOONGARCH64", "SCMP_ARCH_M68K", "SCMP_ARCH_MIPS",
            "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32",
            "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE",
            "SCMP_ARCH_RISCV64", "SCMP_ARCH_S390", "SCMP_ARCH_S390X", "SCMP_ARCH_SH", "SCMP_ARCH_SHEB", "SCMP_ARCH_X32",
            "SCMP_ARCH_X86", "SCMP_ARCH_X86_64",
        ];
        // An architecture this libseccomp cannot resolve `read` on is one it does not know.
        ALL.iter()
            .filter(|name| {
                libseccomp::ScmpArch::from_str(name)
                    .is_ok_and(|a| libseccomp::ScmpSyscall::from_name_by_arch("read", a).is_ok_and(|s| s.as_raw_syscall() >= 0))
            })
            .map(|s| s.to_string())
            .collect()
    }

    /// The flags the running kernel accepts: it checks flags before reading the (null)
    /// program, so EFAULT means "known".
    pub fn kernel_flags() -> Vec<String> {
        [("SECCOMP_FILTER_FLAG_TSYNC", super::FLAG_TSYNC), ("SECCOMP_FILTER_FLAG_LOG", super::FLAG_LOG), ("SECCOMP_FILTER_FLAG_SPEC_ALLOW", super::FLAG_SPEC_ALLOW)]
            .into_iter()
            .filter(|(_, bit)| {
                let r = unsafe { libc::syscall(libc::SYS_seccomp, super::SECCOMP_SET_MODE_FILTER, *bit as libc::c_ulong, std::ptr::null::<libc::c_void>()) };
                r < 0 && nix::errno::Errno::last() == nix::errno::Errno::EFAULT
            })
            .map(|(n, _)| n.to_string())
            .collect()
    }

    pub fn libseccomp_version() -> Option<String> {
        libseccomp::ScmpVersion::current().ok().map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
    }
}

#[cfg(test)]
mod tests;
