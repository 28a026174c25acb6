//! Loading the network configurations from a directory (`/etc/cni/net.d`) as libcni does:
//! `*.conflist`, `*.conf` and `*.json` in lexical order of file name; the first that parses is
//! the default network. A broken file is skipped with a warning, so one bad file dropped in
//! by an operator does not take the node's network down.

use std::path::{Path, PathBuf};

use super::{Error, Result};
use crate::spec::NetConfList;

const EXTENSIONS: [&str; 3] = ["conflist", "conf", "json"];

/// Every valid network configuration in `dir`, in lexical order of file name.
pub fn load_dir(dir: &Path) -> Result<Vec<NetConfList>> {
    Ok(conf_files(dir)?.iter().filter_map(|path| load_file(path)).collect())
}

/// The first valid network configuration in `dir`: the one a pod sandbox is attached to.
pub fn default_network(dir: &Path) -> Result<NetConfList> {
    for path in conf_files(dir)? {
        if let Some(list) = load_file(&path) {
            return Ok(list);
        }
    }
    Err(Error::NoNetwork { dir: dir.to_path_buf() })
}

fn conf_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let read_err = |source| Error::ReadDir { dir: dir.to_path_buf(), source };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        let wanted = path.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.contains(&e));
        if wanted && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn load_file(path: &Path) -> Option<NetConfList> {
    let parsed = std::fs::read(path).map_err(|e| e.to_string()).and_then(|b| NetConfList::parse(&b).map_err(|e| e.to_string()));
    match parsed {
        Ok(list) => Some(list),
        Err(e) => {
            tracing::warn!(file = %path.display(), "skipping network configuration: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_in_lexical_order_skipping_broken_and_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, body: &str| std::fs::write(dir.path().join(name), body).unwrap();
        write("05-broken.conflist", "{ not json");
        write("10-second.conf", r#"{"cniVersion":"1.0.0","name":"second","type":"bridge"}"#);
        write("01-first.json", r#"{"cniVersion":"1.1.0","name":"first","plugins":[{"type":"bridge"}]}"#);
        write("00-ignored.txt", r#"{"cniVersion":"1.1.0","name":"txt","plugins":[{"type":"bridge"}]}"#);
        write("03-noplugins.conflist", r#"{"cniVersion":"1.1.0","name":"empty","plugins":[]}"#);
        let names: Vec<String> = load_dir(dir.path()).unwrap().into_iter().map(|l| l.name).collect();
        assert_eq!(names, ["first", "second"]);
        assert_eq!(default_network(dir.path()).unwrap().name, "first");
        std::fs::remove_file(dir.path().join("01-first.json")).unwrap();
        assert_eq!(default_network(dir.path()).unwrap().name, "second");
    }

    #[test]
    fn empty_or_missing_dir_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(default_network(dir.path()), Err(Error::NoNetwork { .. })));
        let missing = dir.path().join("nope");
        let err = load_dir(&missing).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
