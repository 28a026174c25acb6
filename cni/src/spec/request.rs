//! The request a runtime makes of a plugin through its environment (`CNI_COMMAND` and the
//! rest), checked per command as the spec requires.

use std::path::PathBuf;

use super::error::{Error, ErrorCode};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl Command {
    pub fn parse(s: &str) -> Result<Command, Error> {
        Ok(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            other => {
                return Err(Error::new(
                    ErrorCode::InvalidEnvironment,
                    format!("unknown CNI_COMMAND {other:?}: expected ADD, DEL, CHECK, VERSION, STATUS or GC"),
                ));
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Status => "STATUS",
            Command::Gc => "GC",
        }
    }
}

/// A plugin invocation's parameters, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub command: Command,
    pub container_id: String,
    pub netns: Option<PathBuf>,
    pub ifname: String,
    /// `CNI_ARGS`, `K=V;K=V`, in order.
    pub args: Vec<(String, String)>,
    /// `CNI_PATH`: where to find delegated plugins (IPAM).
    pub path: Vec<PathBuf>,
}

impl Request {
    /// Reads the request from environment variables through `get` (the process environment
    /// in a plugin, a map in tests).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Request, Error> {
        let get = |k: &str| get(k).filter(|v| !v.is_empty());
        let command = Command::parse(&get("CNI_COMMAND").ok_or_else(|| missing("CNI_COMMAND"))?)?;
        let container_id = get("CNI_CONTAINERID").unwrap_or_default();
        let netns = get("CNI_NETNS").map(PathBuf::from);
        let ifname = get("CNI_IFNAME").unwrap_or_default();
        let path: Vec<PathBuf> = get("CNI_PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
        let args = match get("CNI_ARGS") {
            Some(a) => parse_args(&a)?,
            None => Vec::new(),
        };
        let (needs_container, needs_netns) = match command {
            Command::Add | Command::Check => (true, true),
            Command::Del => (true, false),
            Command::Version | Command::Status | Command::Gc => (false, false),
        };
        if needs_container {
            if container_id.is_empty() {
                return Err(missing("CNI_CONTAINERID"));
            }
            validate_container_id(&container_id)?;
            if ifname.is_empty() {
                return Err(missing("CNI_IFNAME"));
            }
            validate_ifname(&ifname)?;
        }
        if needs_netns && netns.is_none() {
            return Err(missing("CNI_NETNS"));
        }
        if command != Command::Version && path.is_empty() {
            return Err(missing("CNI_PATH"));
        }
        Ok(Request { command, container_id, netns, ifname, args, path })
    }

    /// The value of one `CNI_ARGS` key (e.g. `K8S_POD_NAME`).
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

fn missing(var: &str) -> Error {
    Error::new(ErrorCode::InvalidEnvironment, format!("required environment variable {var} is not set"))
}

fn parse_args(s: &str) -> Result<Vec<(String, String)>, Error> {
    s.split(';')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(Error::new(ErrorCode::InvalidEnvironment, format!("invalid CNI_ARGS pair {kv:?}: expected KEY=VALUE"))),
        })
        .collect()
}

/// Container IDs: non-empty, `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$` (they name files on disk).
pub(crate) fn validate_container_id(id: &str) -> Result<(), Error> {
    let mut chars = id.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::new(ErrorCode::InvalidEnvironment, format!("invalid CNI_CONTAINERID {id:?}")))
    }
}

/// Checks an interface name from `CNI_IFNAME`.
pub(crate) fn validate_ifname(name: &str) -> Result<(), Error> {
    validate_link_name(name).map_err(|e| Error::new(ErrorCode::InvalidEnvironment, format!("invalid CNI_IFNAME: {}", e.msg)))
}

/// Link names as the kernel takes them: 1 to 15 bytes, not `.` or `..`, no `/`, `:` or
/// whitespace.
pub fn validate_link_name(name: &str) -> Result<(), Error> {
    let bad = name.is_empty()
        || name.len() > 15
        || name == "."
        || name == ".."
        || name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace());
    if bad {
        Err(Error::invalid_config(format!("{name:?} is not a valid link name: 1 to 15 characters, without '/', ':' or spaces")))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn add_needs_everything_del_not_netns_version_nothing() {
        let full = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_NETNS", "/var/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
            ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=web"),
        ];
        let req = Request::from_env(env(&full)).unwrap();
        assert_eq!(req.path.len(), 2);
        assert_eq!(req.arg("K8S_POD_NAME"), Some("web"));
        let no_netns: Vec<_> = full.iter().copied().filter(|(k, _)| *k != "CNI_NETNS").collect();
        let err = Request::from_env(env(&no_netns)).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidEnvironment);
        assert!(err.msg.contains("CNI_NETNS"));
        let mut del = no_netns.clone();
        del[0] = ("CNI_COMMAND", "DEL");
        assert!(Request::from_env(env(&del)).is_ok());
        assert!(Request::from_env(env(&[("CNI_COMMAND", "VERSION")])).is_ok());
        assert!(Request::from_env(env(&[("CNI_COMMAND", "GC"), ("CNI_PATH", "/opt/cni/bin")])).is_ok());
    }

    #[test]
    fn refuses_bad_values() {
        for (k, v, needle) in [
            ("CNI_COMMAND", "FROB", "unknown CNI_COMMAND"),
            ("CNI_IFNAME", "a-very-long-interface", "CNI_IFNAME"),
            ("CNI_CONTAINERID", "../etc", "CNI_CONTAINERID"),
            ("CNI_ARGS", "novalue", "CNI_ARGS"),
        ] {
            let mut pairs = vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "abc"),
                ("CNI_NETNS", "/x"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_PATH", "/opt/cni/bin"),
            ];
            pairs.retain(|(key, _)| *key != k);
            pairs.push((k, v));
            let err = Request::from_env(env(&pairs)).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidEnvironment);
            assert!(err.msg.contains(needle), "{}", err.msg);
        }
    }
}
