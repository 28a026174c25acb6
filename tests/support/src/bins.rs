//! Binaries of other workspace packages, for a test that runs them (a kubelet-rs test needs
//! the CNI plugins and runtime-rs): built on first use with the cargo running the tests,
//! into this test binary's own profile directory, once per test process. Run outside cargo
//! (no `CARGO` in the environment), a binary already there is used as it is.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);

/// `target/<profile>/<bin>` of `package`, built if this process has not built it yet.
pub fn workspace_bin(package: &str, bin: &str) -> PathBuf {
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let built = built.get_or_insert_with(HashMap::new);
    let key = format!("{package}/{bin}");
    if let Some(p) = built.get(&key) {
        return p.clone();
    }
    let path = crate::profile_dir().join(bin);
    // Run outside cargo (the test guest has no cargo, scripts/guest adds the binaries): use
    // what is there.
    if std::env::var_os("CARGO").is_none() && path.exists() {
        built.insert(key, path.clone());
        return path;
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).expect("workspace dir").to_path_buf();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace).args(["build", "-q", "-p", package, "--bin", bin]);
    if crate::profile_dir().file_name().is_some_and(|p| p == "release") {
        cmd.arg("--release");
    }
    let status = cmd.status().unwrap_or_else(|e| panic!("run cargo build -p {package}: {e}"));
    assert!(status.success(), "cargo build -p {package} --bin {bin} failed");
    assert!(path.exists(), "{} was not built", path.display());
    built.insert(key, path.clone());
    path
}
