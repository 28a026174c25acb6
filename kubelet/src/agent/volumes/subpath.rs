//! subPath mounts: the path below a volume a container mounts, created as a directory when
//! missing, and refused when it would leave the volume through `..`, an absolute path or a
//! symlink pointing outside it (a container could otherwise plant a symlink in a shared
//! volume and have the next container mount any host path).

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SubPathError {
    #[error("subPath {0:?} must be a relative path without '..'")]
    NotRelative(String),
    #[error("subPath {sub_path:?} resolves to {resolved}, outside the volume {volume}")]
    Escapes {
        sub_path: String,
        resolved: PathBuf,
        volume: PathBuf,
    },
    #[error("subPath {sub_path:?}: {path}: {source}")]
    Io {
        sub_path: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The host path of `sub_path` inside `volume`, creating missing directories with the
/// volume's own mode. The result has no symlinks left in it.
pub fn resolve(volume: &Path, sub_path: &str) -> Result<PathBuf, SubPathError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SubPathError::Io {
            sub_path: sub_path.to_string(),
            path,
            source,
        }
    };
    let relative = Path::new(sub_path);
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(SubPathError::NotRelative(sub_path.to_string()));
    }
    let root = fs::canonicalize(volume).map_err(io(volume))?;
    let mode = fs::metadata(&root).map_err(io(&root))?.permissions().mode() & 0o7777;
    let mut current = root.clone();
    for component in relative.components() {
        let Component::Normal(name) = component else {
            continue;
        };
        let next = current.join(name);
        match fs::symlink_metadata(&next) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .mode(mode)
                    .create(&next)
                    .map_err(io(&next))?;
                fs::set_permissions(&next, fs::Permissions::from_mode(mode)).map_err(io(&next))?;
                current = next;
            }
            Err(e) => return Err(io(&next)(e)),
            Ok(meta) if meta.file_type().is_symlink() => {
                let resolved = fs::canonicalize(&next).map_err(io(&next))?;
                if !resolved.starts_with(&root) {
                    return Err(SubPathError::Escapes {
                        sub_path: sub_path.to_string(),
                        resolved,
                        volume: root,
                    });
                }
                current = resolved;
            }
            Ok(_) => current = next,
        }
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn created_inside_and_refused_outside() {
        let tmp = tempfile::tempdir().unwrap();
        let vol = tmp.path().join("vol");
        fs::create_dir(&vol).unwrap();
        fs::set_permissions(&vol, fs::Permissions::from_mode(0o777)).unwrap();
        let root = fs::canonicalize(&vol).unwrap();

        let p = resolve(&vol, "a/b").unwrap();
        assert_eq!(p, root.join("a/b"));
        assert!(p.is_dir());
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o777
        );

        fs::write(vol.join("a/file"), "x").unwrap();
        assert_eq!(resolve(&vol, "a/file").unwrap(), root.join("a/file"));

        symlink("a", vol.join("inside")).unwrap();
        assert_eq!(resolve(&vol, "inside/b").unwrap(), root.join("a/b"));

        symlink("/etc", vol.join("out")).unwrap();
        assert!(matches!(
            resolve(&vol, "out/passwd"),
            Err(SubPathError::Escapes { .. })
        ));
        symlink("../..", vol.join("a/up")).unwrap();
        assert!(matches!(
            resolve(&vol, "a/up"),
            Err(SubPathError::Escapes { .. })
        ));
        assert!(matches!(
            resolve(&vol, "../x"),
            Err(SubPathError::NotRelative(_))
        ));
        assert!(matches!(
            resolve(&vol, "/etc"),
            Err(SubPathError::NotRelative(_))
        ));
    }
}
