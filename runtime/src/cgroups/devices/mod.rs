//! The device controller of cgroup v2: an eBPF program (`BPF_PROG_TYPE_CGROUP_DEVICE`)
//! attached to the container's cgroup decides every open and mknod of a device node.
//!
//! `rules.rs` is the rule list and its meaning, `program.rs` compiles it with the
//! assembler of `insn.rs`, `bpf.rs` is the kernel. A program needs no controller in
//! `cgroup.subtree_control`, only a cgroup2 directory, so it works on hybrid hosts too. It
//! goes away with the cgroup: removing the directory detaches it.

mod bpf;
mod insn;
mod program;
mod rules;

use std::io;
use std::path::{Path, PathBuf};

pub use bpf::{Bpf, DeviceKernel, LoadFailure, PROGRAM_NAME};
pub use insn::{encode_all, Insn};
pub use program::compile;
pub use rules::{container_rules, decide, Access, DeviceRule, DeviceType, ALWAYS_ALLOWED};

#[derive(Debug, thiserror::Error)]
pub enum DevicesError {
    #[error("cannot build the device program: {0}")]
    Assemble(#[from] insn::AsmError),
    #[error("open cgroup {path} for its device program: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("loading the device program was refused (EPERM): this needs CAP_SYS_ADMIN (or CAP_BPF) in the host's user namespace; a rootless runtime cannot restrict devices")]
    LoadPermission,
    #[error("load the device program: {source}{}", log_suffix(log))]
    Load { source: io::Error, log: String },
    #[error("attach the device program to cgroup {path}: {source}")]
    Attach { path: PathBuf, source: io::Error },
    #[error("list the device programs of cgroup {path}: {source}")]
    Query { path: PathBuf, source: io::Error },
    #[error("detach the old device program {id} from cgroup {path}: {source}")]
    Detach { path: PathBuf, id: u32, source: io::Error },
}

fn log_suffix(log: &str) -> String {
    if log.is_empty() {
        String::new()
    } else {
        format!("; verifier log:\n{log}")
    }
}

/// Make `rules` the device rules of the cgroup at `path`: load their program, attach it, then
/// detach the device programs that were attached there before (an earlier create, or the
/// rules `update` replaces). While both are attached the kernel requires both to allow, so
/// no access is ever allowed that neither the old nor the new rules allow.
pub fn replace<K: DeviceKernel>(kernel: &K, path: &Path, rules: &[DeviceRule]) -> Result<(), DevicesError> {
    let program = compile(rules)?;
    let cgroup = kernel.open_cgroup(path).map_err(|source| DevicesError::Open { path: path.to_path_buf(), source })?;
    let loaded = kernel.load(&program).map_err(|f| match f.source.raw_os_error() {
        Some(libc::EPERM) => DevicesError::LoadPermission,
        _ => DevicesError::Load { source: f.source, log: f.log },
    })?;
    let old = kernel.attached(&cgroup).map_err(|source| DevicesError::Query { path: path.to_path_buf(), source })?;
    kernel.attach(&cgroup, &loaded).map_err(|source| DevicesError::Attach { path: path.to_path_buf(), source })?;
    for id in old {
        match kernel.detach(&cgroup, id) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => other.map_err(|source| DevicesError::Detach { path: path.to_path_buf(), id, source })?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Records what the install does; programs are numbered from 100.
    #[derive(Default)]
    struct FakeKernel {
        attached: RefCell<Vec<u32>>,
        calls: RefCell<Vec<String>>,
        load_error: Option<i32>,
        detach_missing: bool,
    }

    impl DeviceKernel for FakeKernel {
        type Cgroup = PathBuf;
        type Program = (u32, usize);

        fn open_cgroup(&self, path: &Path) -> io::Result<PathBuf> {
            self.calls.borrow_mut().push(format!("open {}", path.display()));
            Ok(path.to_path_buf())
        }
        fn load(&self, program: &[Insn]) -> Result<(u32, usize), LoadFailure> {
            if let Some(errno) = self.load_error {
                return Err(LoadFailure { source: io::Error::from_raw_os_error(errno), log: "0: (61) r2 = *(u32 *)(r1 +0)\ninvalid bpf_context access".into() });
            }
            self.calls.borrow_mut().push(format!("load {} insns", program.len()));
            Ok((100 + self.calls.borrow().len() as u32, program.len()))
        }
        fn attached(&self, _: &PathBuf) -> io::Result<Vec<u32>> {
            self.calls.borrow_mut().push("query".into());
            Ok(self.attached.borrow().clone())
        }
        fn attach(&self, _: &PathBuf, p: &(u32, usize)) -> io::Result<()> {
            self.calls.borrow_mut().push(format!("attach {}", p.0));
            self.attached.borrow_mut().push(p.0);
            Ok(())
        }
        fn detach(&self, _: &PathBuf, id: u32) -> io::Result<()> {
            self.calls.borrow_mut().push(format!("detach {id}"));
            if self.detach_missing {
                return Err(io::Error::from_raw_os_error(libc::ENOENT));
            }
            self.attached.borrow_mut().retain(|x| *x != id);
            Ok(())
        }
    }

    fn deny_all() -> Vec<DeviceRule> {
        container_rules(vec![DeviceRule { allow: false, kind: None, major: None, minor: None, access: Access::ALL }], &[])
    }

    #[test]
    fn first_install_attaches_one_program() {
        let k = FakeKernel::default();
        replace(&k, Path::new("/cg/c1"), &deny_all()).unwrap();
        let calls = k.calls.borrow();
        assert_eq!(calls[0], "open /cg/c1");
        assert!(calls[1].starts_with("load "));
        assert_eq!(calls[2..], ["query".to_string(), "attach 102".to_string()]);
        assert_eq!(*k.attached.borrow(), vec![102]);
    }

    #[test]
    fn replacing_attaches_the_new_program_before_detaching_the_old_ones() {
        let k = FakeKernel { attached: RefCell::new(vec![7, 8]), ..Default::default() };
        replace(&k, Path::new("/cg/c1"), &deny_all()).unwrap();
        let calls = k.calls.borrow();
        assert_eq!(calls[2..], ["query", "attach 102", "detach 7", "detach 8"].map(String::from));
        assert_eq!(*k.attached.borrow(), vec![102]);
    }

    #[test]
    fn an_old_program_already_gone_is_fine() {
        let k = FakeKernel { attached: RefCell::new(vec![7]), detach_missing: true, ..Default::default() };
        replace(&k, Path::new("/cg/c1"), &deny_all()).unwrap();
    }

    #[test]
    fn load_errors_carry_the_verifier_log_and_eperm_says_why() {
        let k = FakeKernel { load_error: Some(libc::EINVAL), ..Default::default() };
        let err = replace(&k, Path::new("/cg/c1"), &deny_all()).unwrap_err().to_string();
        assert!(err.starts_with("load the device program: Invalid argument"), "{err}");
        assert!(err.contains("verifier log:\n0: (61)"), "{err}");
        assert!(k.attached.borrow().is_empty());

        let k = FakeKernel { load_error: Some(libc::EPERM), ..Default::default() };
        let err = replace(&k, Path::new("/cg/c1"), &deny_all()).unwrap_err().to_string();
        assert!(err.contains("(EPERM)") && err.contains("CAP_SYS_ADMIN"), "{err}");
    }
}
