//! hostPath volumes: the path on the node is mounted as is, after the check its `type` asks
//! for (and creating it for the `...OrCreate` types), with upstream's error messages.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum HostPathError {
    #[error("hostPath type check failed: {path} is not a {what}")]
    WrongType { path: PathBuf, what: &'static str },
    #[error("hostPath type {0:?} is not supported")]
    UnknownType(String),
    #[error("creating hostPath {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Check (or create) `path` as hostPath type `kind` says (`""`: no check).
pub fn check(path: &Path, kind: &str) -> Result<(), HostPathError> {
    let meta = fs::metadata(path).ok();
    let ft = meta.as_ref().map(fs::Metadata::file_type);
    let wrong = |what| {
        Err(HostPathError::WrongType {
            path: path.to_path_buf(),
            what,
        })
    };
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" => match ft {
            None => fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(path)
                .map_err(|source| HostPathError::Create {
                    path: path.to_path_buf(),
                    source,
                }),
            Some(t) if t.is_dir() => Ok(()),
            Some(_) => wrong("directory"),
        },
        "Directory" => {
            if ft.is_some_and(|t| t.is_dir()) {
                Ok(())
            } else {
                wrong("directory")
            }
        }
        "FileOrCreate" => match ft {
            None => fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o644)
                .open(path)
                .map(drop)
                .map_err(|source| HostPathError::Create {
                    path: path.to_path_buf(),
                    source,
                }),
            Some(t) if t.is_file() => Ok(()),
            Some(_) => wrong("file"),
        },
        "File" => {
            if ft.is_some_and(|t| t.is_file()) {
                Ok(())
            } else {
                wrong("file")
            }
        }
        "Socket" => {
            if ft.is_some_and(|t| t.is_socket()) {
                Ok(())
            } else {
                wrong("socket file")
            }
        }
        "CharDevice" => {
            if ft.is_some_and(|t| t.is_char_device()) {
                Ok(())
            } else {
                wrong("character device")
            }
        }
        "BlockDevice" => {
            if ft.is_some_and(|t| t.is_block_device()) {
                Ok(())
            } else {
                wrong("block device")
            }
        }
        other => Err(HostPathError::UnknownType(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_checked_and_created() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        assert_eq!(
            check(&dir, "Directory").unwrap_err().to_string(),
            format!(
                "hostPath type check failed: {} is not a directory",
                dir.display()
            )
        );
        check(&dir, "DirectoryOrCreate").unwrap();
        check(&dir, "Directory").unwrap();
        assert!(check(&dir, "File").is_err());
        let file = dir.join("f");
        assert!(check(&file, "File").is_err());
        check(&file, "FileOrCreate").unwrap();
        check(&file, "File").unwrap();
        assert!(check(&file, "DirectoryOrCreate").is_err());
        assert_eq!(
            check(&file, "Socket").unwrap_err().to_string(),
            format!(
                "hostPath type check failed: {} is not a socket file",
                file.display()
            )
        );
        let sock = dir.join("s");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        check(&sock, "Socket").unwrap();
        check(Path::new("/dev/null"), "CharDevice").unwrap();
        assert!(check(Path::new("/dev/null"), "BlockDevice").is_err());
        check(Path::new("/nonexistent/anything"), "").unwrap();
        assert!(check(&file, "Whatever").is_err());
    }
}
