//! Finding the program to run inside the container, and the environment it gets.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use nix::unistd::{access, AccessFlags};

use crate::spec::ProcessConfig;

/// Resolve `args[0]` as `execvp` would, with the process's own `PATH`. The error text matches
/// runc's, which users and tools already know.
pub fn find_program(p: &ProcessConfig) -> Result<PathBuf, String> {
    let name = &p.args[0];
    if name.contains('/') {
        let path = PathBuf::from(name);
        return match check_executable(&path) {
            Ok(()) => Ok(path),
            Err(e) => Err(format!("exec: {name:?}: {e}")),
        };
    }
    let search = p.env_var("PATH").unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in search.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(name);
        if check_executable(&candidate).is_ok() {
            return Ok(candidate);
        }
    }
    Err(format!("exec: {name:?}: executable file not found in $PATH"))
}

/// Errors worded as Go's `exec.LookPath` words them (`stat /x: no such file or directory`):
/// clients of containerd match on that text (Docker maps "no such file or directory" in a
/// start error to exit code 127).
fn check_executable(path: &Path) -> Result<(), String> {
    let md = std::fs::metadata(path).map_err(|e| format!("stat {}: {}", path.display(), errno_text(&e)))?;
    if md.is_dir() {
        return Err("is a directory".into());
    }
    access(path, AccessFlags::X_OK).map_err(|e| e.desc().to_lowercase())
}

/// An OS error as Go prints it: the lowercase strerror text, without Rust's "(os error N)".
fn errno_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_lowercase(),
        None => e.to_string(),
    }
}

/// The environment as `execve` takes it, with `HOME` filled in from the container's
/// `/etc/passwd` when the spec does not set it (runc does the same).
pub fn environment(p: &ProcessConfig, passwd: Option<&str>) -> Vec<CString> {
    let mut env: Vec<String> = p.env.clone();
    if p.env_var("HOME").is_none() {
        let home = passwd.and_then(|text| home_of(text, p.uid)).unwrap_or_else(|| "/".to_string());
        env.push(format!("HOME={home}"));
    }
    env.into_iter().filter_map(|kv| CString::new(kv).ok()).collect()
}

/// The home directory of `uid` in passwd(5) text.
fn home_of(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 6 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[5].to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(args: &[&str], env: &[&str]) -> ProcessConfig {
        ProcessConfig {
            terminal: false,
            console_size: None,
            args: args.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|s| s.to_string()).collect(),
            cwd: "/".into(),
            uid: 1000,
            gid: 1000,
            additional_gids: vec![],
            umask: None,
            capabilities: None,
            rlimits: vec![],
            no_new_privileges: false,
            oom_score_adj: None,
        }
    }

    #[test]
    fn program_is_found_on_the_process_path() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("tool");
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let path_env = format!("PATH=/nonexistent:{}", dir.path().display());
        assert_eq!(find_program(&process(&["tool"], &[&path_env])).unwrap(), bin);
        let err = find_program(&process(&["nope"], &[&path_env])).unwrap_err();
        assert_eq!(err, "exec: \"nope\": executable file not found in $PATH");
    }

    #[test]
    fn explicit_path_must_be_executable() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data");
        std::fs::write(&file, "x").unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        let err = find_program(&process(&[file.to_str().unwrap()], &[])).unwrap_err();
        // root may execute anything with an x bit; without any x bit even root is refused.
        assert!(err.contains("permission denied"), "{err}");
    }

    #[test]
    fn missing_program_is_worded_like_runc() {
        let err = find_program(&process(&["/nonexistent/tool"], &[])).unwrap_err();
        assert_eq!(err, "exec: \"/nonexistent/tool\": stat /nonexistent/tool: no such file or directory");
        let dir = tempfile::tempdir().unwrap();
        let err = find_program(&process(&[dir.path().to_str().unwrap()], &[])).unwrap_err();
        assert!(err.ends_with(": is a directory"), "{err}");
    }

    #[test]
    fn home_comes_from_passwd_unless_set() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n";
        let env = environment(&process(&["sh"], &["A=1"]), Some(passwd));
        assert_eq!(env.last().unwrap().to_str().unwrap(), "HOME=/home/user");
        let env = environment(&process(&["sh"], &["HOME=/x"]), Some(passwd));
        assert_eq!(env.len(), 1);
        let env = environment(&process(&["sh"], &[]), None);
        assert_eq!(env[0].to_str().unwrap(), "HOME=/");
    }
}
