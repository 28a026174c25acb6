//! Network namespaces for the benchmark (`krs-bp<pid>-<role>`), deleted on drop, and
//! running a closure on a thread inside one (setns moves only the calling thread).

use std::fs::File;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;

pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(role: &str) -> Result<Netns, String> {
        let name = format!("krs-bp{}-{role}", std::process::id());
        let _ = Command::new("ip").args(["netns", "delete", &name]).stderr(Stdio::null()).status();
        run(&["ip", "netns", "add", &name])?;
        let ns = Netns { name };
        ns.run(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `argv` inside the namespace; its stderr on failure.
    pub fn run(&self, argv: &[&str]) -> Result<(), String> {
        let mut all = vec!["ip", "netns", "exec", &self.name];
        all.extend_from_slice(argv);
        run(&all)
    }

    /// Runs `f` on a new thread that has joined this namespace.
    pub fn thread<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<Result<T, String>> {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = File::open(&path).map_err(|e| format!("{path}: {e}"))?;
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns {path}: {e}"))?;
            Ok(f())
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "delete", &self.name]).status();
    }
}

fn run(argv: &[&str]) -> Result<(), String> {
    let out = Command::new(argv[0]).args(&argv[1..]).stdin(Stdio::null()).output().map_err(|e| format!("{}: {e}", argv[0]))?;
    if !out.status.success() {
        return Err(format!("{argv:?}: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(())
}
