//! An image's config (OCI image-spec config.md) turned into what a container's runtime spec
//! needs: args from Entrypoint and Cmd (with Kubernetes' command/args overrides), env,
//! working directory, the user resolved to uid/gid with the image's own /etc/passwd and
//! /etc/group, exposed ports, volumes and the stop signal.

use std::fs;
use std::io;
use std::path::PathBuf;

use oci_spec::image::ImageConfiguration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("image config: {0}")]
    Parse(String),
    #[error("image config: no command: neither Entrypoint nor Cmd is set and none was given")]
    NoCommand,
    #[error("user {user:?}: no such user in the image's /etc/passwd")]
    UnknownUser { user: String },
    #[error("user {user:?}: no such group {group:?} in the image's /etc/group")]
    UnknownGroup { user: String, group: String },
    #[error("user {user:?}: {reason}")]
    BadUser { user: String, reason: String },
    #[error("reading {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// What the caller (the CRI container config) sets over the image's values.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// Kubernetes `command`: replaces Entrypoint, and then Cmd is not used.
    pub command: Option<Vec<String>>,
    /// Kubernetes `args`: replaces Cmd.
    pub args: Option<Vec<String>>,
    /// `KEY=value` entries added to, or replacing, the image's.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// Replaces the image's User (same syntax).
    pub user: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessConfig {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: the groups of /etc/group that list the user by name.
    pub additional_gids: Vec<u32>,
    /// As in the config, e.g. `80/tcp`.
    pub exposed_ports: Vec<String>,
    pub volumes: Vec<String>,
    /// As written in the config (e.g. `SIGQUIT`), if set.
    pub stop_signal: Option<String>,
}

/// The image's user and group databases (the text of /etc/passwd and /etc/group).
#[derive(Debug, Default, Clone)]
pub struct UserDb {
    pub passwd: String,
    pub group: String,
}

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Parses an image config blob.
pub fn parse_config(json: &[u8]) -> Result<ImageConfiguration, ConfigError> {
    ImageConfiguration::from_reader(json).map_err(|e| ConfigError::Parse(e.to_string()))
}

/// Combines the image config with the overrides. The user's names are looked up in `users`.
pub fn process_config(image: &ImageConfiguration, overrides: &Overrides, users: &UserDb) -> Result<ProcessConfig, ConfigError> {
    let c = image.config().clone().unwrap_or_default();
    let mut args = match (&overrides.command, &overrides.args) {
        (Some(command), args) => command.iter().chain(args.iter().flatten()).cloned().collect(),
        (None, Some(args)) => c.entrypoint().iter().flatten().chain(args).cloned().collect(),
        (None, None) => c.entrypoint().iter().flatten().chain(c.cmd().iter().flatten()).cloned().collect::<Vec<_>>(),
    };
    if args.is_empty() {
        return Err(ConfigError::NoCommand);
    }
    args.shrink_to_fit();

    let mut env: Vec<String> = c.env().clone().unwrap_or_default();
    for e in &overrides.env {
        let key = e.split('=').next().unwrap_or(e);
        env.retain(|old| old.split('=').next() != Some(key));
        env.push(e.clone());
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.into());
    }

    let cwd = overrides.working_dir.clone().or_else(|| c.working_dir().clone()).filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into());
    let user = overrides.user.clone().or_else(|| c.user().clone()).unwrap_or_default();
    let (uid, gid, additional_gids) = resolve_user(&user, users)?;
    Ok(ProcessConfig {
        args,
        env,
        cwd,
        uid,
        gid,
        additional_gids,
        exposed_ports: c.exposed_ports().clone().unwrap_or_default(),
        volumes: c.volumes().clone().unwrap_or_default(),
        stop_signal: c.stop_signal().clone().filter(|s| !s.is_empty()),
    })
}

struct Passwd<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
}

fn passwd_entries(db: &str) -> impl Iterator<Item = Passwd<'_>> {
    db.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && !l.starts_with('#')).then_some(())?;
        Some(Passwd { name: f[0], uid: f[2].parse().ok()?, gid: f[3].parse().ok()? })
    })
}

/// (name, gid, members) of each /etc/group line.
fn group_entries(db: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    db.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 3 && !l.starts_with('#')).then_some(())?;
        let members = f.get(3).map(|m| m.split(',').filter(|s| !s.is_empty()).collect()).unwrap_or_default();
        Some((f[0], f[2].parse().ok()?, members))
    })
}

/// Resolves `user`, `uid`, `user:group`, `uid:gid` (and mixes) as Docker and containerd do:
/// a numeric uid need not exist (its gid is then 0 unless given), a name must.
pub fn resolve_user(spec: &str, db: &UserDb) -> Result<(u32, u32, Vec<u32>), ConfigError> {
    if spec.is_empty() {
        return Ok((0, 0, supplementary(db, "root", 0)));
    }
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() || group == Some("") {
        return Err(ConfigError::BadUser { user: spec.into(), reason: "empty user or group".into() });
    }
    let entry = match user.parse::<u32>() {
        Ok(uid) => passwd_entries(&db.passwd).find(|p| p.uid == uid).map(|p| (p.name, p.uid, p.gid)).or(Some(("", uid, 0))),
        Err(_) => passwd_entries(&db.passwd).find(|p| p.name == user).map(|p| (p.name, p.uid, p.gid)),
    };
    let Some((name, uid, mut gid)) = entry else { return Err(ConfigError::UnknownUser { user: spec.into() }) };
    if let Some(group) = group {
        gid = match group.parse::<u32>() {
            Ok(g) => g,
            Err(_) => group_entries(&db.group)
                .find(|(n, _, _)| *n == group)
                .map(|(_, g, _)| g)
                .ok_or_else(|| ConfigError::UnknownGroup { user: spec.into(), group: group.into() })?,
        };
    }
    let extra = if name.is_empty() { Vec::new() } else { supplementary(db, name, gid) };
    Ok((uid, gid, extra))
}

fn supplementary(db: &UserDb, name: &str, primary: u32) -> Vec<u32> {
    let mut gids: Vec<u32> = group_entries(&db.group).filter(|(_, g, m)| *g != primary && m.contains(&name)).map(|(_, g, _)| g).collect();
    gids.sort_unstable();
    gids.dedup();
    gids
}

impl UserDb {
    /// Reads etc/passwd and etc/group from an image's layer snapshots, topmost first: the
    /// first layer holding the file decides (a whiteout there hides the ones below). Only
    /// regular files under a real `etc` directory are read; symlinks are not followed, so
    /// an image cannot make the host's files be read. A missing file is empty.
    pub fn from_layers(layers_top_first: &[PathBuf]) -> Result<UserDb, ConfigError> {
        Ok(UserDb { passwd: read_from_layers(layers_top_first, "passwd")?, group: read_from_layers(layers_top_first, "group")? })
    }
}

fn read_from_layers(layers: &[PathBuf], name: &str) -> Result<String, ConfigError> {
    for layer in layers {
        let etc = layer.join("etc");
        match fs::symlink_metadata(&etc) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Ok(String::new()), // etc replaced (symlink, whiteout, file) in this layer
            Err(_) => continue,
        }
        let path = etc.join(name);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => {
                return fs::read_to_string(&path).map_err(|source| ConfigError::Io { path, source });
            }
            Ok(_) => return Ok(String::new()),
            Err(_) => {}
        }
        // An opaque etc hides the layers below.
        if matches!(xattr::get(&etc, "trusted.overlay.opaque"), Ok(Some(v)) if v == b"y") {
            return Ok(String::new());
        }
    }
    Ok(String::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnginx:x:101:101:nginx:/var/cache/nginx:/sbin/nologin\nbob:x:1000:1000::/home/bob:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nnginx:x:101:\nbob:x:1000:\nwheel:x:10:root,bob\naudio:x:29:bob\n";

    fn db() -> UserDb {
        UserDb { passwd: PASSWD.into(), group: GROUP.into() }
    }

    fn image(json: &str) -> ImageConfiguration {
        parse_config(json.as_bytes()).unwrap()
    }

    const NGINX: &str = r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},
        "config":{"User":"nginx","Env":["PATH=/usr/bin:/bin","NGINX_VERSION=1.27"],
        "Entrypoint":["/docker-entrypoint.sh"],"Cmd":["nginx","-g","daemon off;"],"WorkingDir":"/srv",
        "ExposedPorts":{"80/tcp":{}},"Volumes":{"/var/cache/nginx":{}},"StopSignal":"SIGQUIT"}}"#;

    #[test]
    fn the_config_becomes_a_process() {
        let p = process_config(&image(NGINX), &Overrides::default(), &db()).unwrap();
        assert_eq!(
            p,
            ProcessConfig {
                args: vec!["/docker-entrypoint.sh".into(), "nginx".into(), "-g".into(), "daemon off;".into()],
                env: vec!["PATH=/usr/bin:/bin".into(), "NGINX_VERSION=1.27".into()],
                cwd: "/srv".into(),
                uid: 101,
                gid: 101,
                additional_gids: vec![],
                exposed_ports: vec!["80/tcp".into()],
                volumes: vec!["/var/cache/nginx".into()],
                stop_signal: Some("SIGQUIT".into()),
            }
        );
    }

    #[test]
    fn overrides_follow_kubernetes_command_and_args() {
        let img = image(NGINX);
        let run = |o: Overrides| process_config(&img, &o, &db()).unwrap();
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(run(Overrides { command: Some(v(&["sh"])), ..Default::default() }).args, v(&["sh"]));
        assert_eq!(run(Overrides { command: Some(v(&["sh"])), args: Some(v(&["-c", "x"])), ..Default::default() }).args, v(&["sh", "-c", "x"]));
        assert_eq!(run(Overrides { args: Some(v(&["-v"])), ..Default::default() }).args, v(&["/docker-entrypoint.sh", "-v"]));
        let p = run(Overrides { env: v(&["NGINX_VERSION=2", "X=1"]), working_dir: Some("/w".into()), user: Some("bob".into()), ..Default::default() });
        assert_eq!(p.env, v(&["PATH=/usr/bin:/bin", "NGINX_VERSION=2", "X=1"]));
        assert_eq!((p.cwd.as_str(), p.uid, p.gid, p.additional_gids), ("/w", 1000, 1000, vec![10, 29]));
    }

    #[test]
    fn an_empty_config_gets_defaults_or_an_error() {
        let img = image(r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{"Cmd":["sh"]}}"#);
        let p = process_config(&img, &Overrides::default(), &UserDb::default()).unwrap();
        assert_eq!((p.args, p.cwd.as_str(), p.uid, p.gid), (vec!["sh".to_string()], "/", 0, 0));
        assert_eq!(p.env, vec![DEFAULT_PATH.to_string()]);
        assert_eq!(p.stop_signal, None);
        let none = image(r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#);
        assert!(matches!(process_config(&none, &Overrides::default(), &db()), Err(ConfigError::NoCommand)));
        assert!(matches!(parse_config(b"{"), Err(ConfigError::Parse(_))));
    }

    #[test]
    fn users_resolve_by_name_number_and_group() {
        let r = |s: &str| resolve_user(s, &db());
        assert_eq!(r("").unwrap(), (0, 0, vec![10]));
        assert_eq!(r("nginx").unwrap(), (101, 101, vec![]));
        assert_eq!(r("1000").unwrap(), (1000, 1000, vec![10, 29]));
        assert_eq!(r("4242").unwrap(), (4242, 0, vec![]), "numeric uids need not exist");
        assert_eq!(r("4242:4343").unwrap(), (4242, 4343, vec![]));
        assert_eq!(r("bob:wheel").unwrap(), (1000, 10, vec![29]));
        assert_eq!(r("nginx:77").unwrap(), (101, 77, vec![]));
        assert_eq!(r("1000:audio").unwrap(), (1000, 29, vec![10]));
        assert!(matches!(r("alice"), Err(ConfigError::UnknownUser { user }) if user == "alice"));
        let err = r("bob:nogroup").unwrap_err();
        assert!(matches!(err, ConfigError::UnknownGroup { .. }) && err.to_string().contains("nogroup"), "{err}");
        assert!(matches!(r("bob:"), Err(ConfigError::BadUser { .. })));
    }

    #[test]
    fn the_user_db_comes_from_the_topmost_layer_and_never_through_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let (top, mid, base) = (dir.path().join("top"), dir.path().join("mid"), dir.path().join("base"));
        for l in [&top, &mid, &base] {
            fs::create_dir_all(l.join("etc")).unwrap();
        }
        fs::write(base.join("etc/passwd"), "root:x:0:0::/:/bin/sh\n").unwrap();
        fs::write(base.join("etc/group"), "root:x:0:\n").unwrap();
        fs::write(mid.join("etc/passwd"), PASSWD).unwrap();
        let db = UserDb::from_layers(&[top.clone(), mid.clone(), base.clone()]).unwrap();
        assert_eq!((db.passwd.as_str(), db.group.as_str()), (PASSWD, "root:x:0:\n"));
        std::os::unix::fs::symlink("/etc/passwd", top.join("etc/passwd")).unwrap();
        let db = UserDb::from_layers(&[top, mid, base]).unwrap();
        assert_eq!(db.passwd, "", "a symlinked passwd is not followed to the host's");
    }
}
