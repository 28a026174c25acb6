//! Per-registry host configuration in containerd's `hosts.toml` layout:
//! `<dir>/<registry>/hosts.toml` (e.g. `<dir>/docker.io/hosts.toml`,
//! `<dir>/localhost:5000/hosts.toml`), else `<dir>/_default/hosts.toml`. A file names the
//! upstream `server` and any number of `[host."<url>"]` mirrors, tried in file order before
//! the server. Plain HTTP is used only where a URL says `http://`, for loopback registries,
//! and for registries the caller marks insecure.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::reference::{DOCKER_HUB, DOCKER_HUB_HOST};

#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    #[error("host config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("host config {path}: {source}")]
    Toml { path: PathBuf, source: toml::de::Error },
    #[error("host config {path}: invalid host url {url:?} (expected http:// or https:// followed by a host)")]
    Url { path: PathBuf, url: String },
    #[error("host config {path}: unknown capability {capability:?} for {url} (expected pull, resolve or push)")]
    Capability { path: PathBuf, url: String, capability: String },
}

/// One place to send registry requests to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `http` or `https`.
    pub scheme: String,
    /// `host[:port]`, also the key for credentials and tokens.
    pub host: String,
    /// The API root path, normally `/v2`.
    pub path: String,
    pub pull: bool,
    pub resolve: bool,
    pub skip_verify: bool,
    /// Extra CA certificates (PEM) trusted for this endpoint.
    pub ca: Vec<PathBuf>,
    /// True for a mirror, false for the registry's own server.
    pub mirror: bool,
}

impl Endpoint {
    /// The API root, e.g. `https://registry-1.docker.io/v2`.
    pub fn base(&self) -> String {
        format!("{}://{}{}", self.scheme, self.host, self.path)
    }
}

#[derive(Deserialize, Default)]
struct HostsFile {
    server: Option<String>,
    capabilities: Option<Vec<String>>,
    skip_verify: Option<bool>,
    ca: Option<OneOrMany>,
    override_path: Option<bool>,
    #[serde(default)]
    host: toml::Table,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct HostEntry {
    capabilities: Option<Vec<String>>,
    skip_verify: Option<bool>,
    ca: Option<OneOrMany>,
    override_path: Option<bool>,
}

/// Whether `host[:port]` is a loopback name, which containerd lets use plain HTTP.
pub fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name == "localhost" || name == "::1" || name.parse::<std::net::Ipv4Addr>().is_ok_and(|a| a.is_loopback())
}

/// The endpoint of a registry with no host config: its own server over HTTPS, or plain
/// HTTP for loopback and `insecure` registries.
pub fn default_endpoint(registry: &str, insecure: &[String]) -> Endpoint {
    let host = if registry == DOCKER_HUB { DOCKER_HUB_HOST } else { registry };
    let plain = is_loopback(host) || insecure.iter().any(|i| i == registry || i == host);
    Endpoint {
        scheme: if plain { "http" } else { "https" }.into(),
        host: host.into(),
        path: "/v2".into(),
        pull: true,
        resolve: true,
        skip_verify: false,
        ca: Vec::new(),
        mirror: false,
    }
}

/// The endpoints for `registry`, mirrors first, from `dir` if given and a file exists there.
pub fn endpoints(dir: Option<&Path>, registry: &str, insecure: &[String]) -> Result<Vec<Endpoint>, HostsError> {
    if let Some(dir) = dir {
        for name in [registry, "_default"] {
            let path = dir.join(name).join("hosts.toml");
            match std::fs::read_to_string(&path) {
                Ok(text) => return parse(registry, &text, &path, insecure),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(HostsError::Read { path, source }),
            }
        }
    }
    Ok(vec![default_endpoint(registry, insecure)])
}

/// Parses one `hosts.toml`; `path` names it in errors and anchors relative `ca` paths.
pub fn parse(registry: &str, text: &str, path: &Path, insecure: &[String]) -> Result<Vec<Endpoint>, HostsError> {
    let file: HostsFile = toml::from_str(text).map_err(|source| HostsError::Toml { path: path.into(), source })?;
    let base_dir = path.parent().unwrap_or(Path::new("/"));
    let cas = |c: Option<OneOrMany>| -> Vec<PathBuf> {
        let list = match c {
            None => vec![],
            Some(OneOrMany::One(s)) => vec![s],
            Some(OneOrMany::Many(v)) => v,
        };
        list.into_iter().map(|p| base_dir.join(p)).collect()
    };

    let mut out = Vec::new();
    for (url, value) in file.host {
        let entry: HostEntry = value.try_into().map_err(|source| HostsError::Toml { path: path.into(), source })?;
        let mut ep = endpoint_from_url(&url, entry.override_path.unwrap_or(false), path)?;
        ep.mirror = true;
        apply_capabilities(&mut ep, entry.capabilities.as_deref(), &url, path)?;
        ep.skip_verify = entry.skip_verify.unwrap_or(false);
        ep.ca = cas(entry.ca);
        out.push(ep);
    }
    let mut server = match &file.server {
        Some(url) => endpoint_from_url(url, file.override_path.unwrap_or(false), path)?,
        None => default_endpoint(registry, insecure),
    };
    let server_url = server.base();
    apply_capabilities(&mut server, file.capabilities.as_deref(), &server_url, path)?;
    server.skip_verify = file.skip_verify.unwrap_or(false);
    server.ca = cas(file.ca);
    out.push(server);
    Ok(out)
}

fn endpoint_from_url(url: &str, override_path: bool, path: &Path) -> Result<Endpoint, HostsError> {
    let bad = || HostsError::Url { path: path.into(), url: url.into() };
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    if scheme != "http" && scheme != "https" {
        return Err(bad());
    }
    let (host, api_path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if host.is_empty() || host.contains(['@', '?', '#', ' ']) {
        return Err(bad());
    }
    // As containerd: the API path gets /v2 appended unless it is there or override_path says
    // the path is the API root as given.
    let api_path =
        if override_path || api_path.ends_with("/v2") { api_path.to_string() } else { format!("{api_path}/v2") };
    Ok(Endpoint {
        scheme: scheme.into(),
        host: host.into(),
        path: api_path,
        pull: true,
        resolve: true,
        skip_verify: false,
        ca: Vec::new(),
        mirror: false,
    })
}

fn apply_capabilities(ep: &mut Endpoint, caps: Option<&[String]>, url: &str, path: &Path) -> Result<(), HostsError> {
    let Some(caps) = caps else { return Ok(()) };
    ep.pull = false;
    ep.resolve = false;
    for c in caps {
        match c.as_str() {
            "pull" => ep.pull = true,
            "resolve" => ep.resolve = true,
            "push" => {}
            _ => {
                return Err(HostsError::Capability { path: path.into(), url: url.into(), capability: c.clone() });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "/etc/kubelet-rs/certs.d/docker.io/hosts.toml";

    #[test]
    fn no_config_means_the_registry_itself_over_https() {
        let e = endpoints(None, "docker.io", &[]).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].base(), "https://registry-1.docker.io/v2");
        assert_eq!(default_endpoint("ghcr.io", &[]).base(), "https://ghcr.io/v2");
    }

    #[test]
    fn loopback_and_marked_registries_use_plain_http() {
        assert_eq!(default_endpoint("localhost:5000", &[]).scheme, "http");
        assert_eq!(default_endpoint("127.0.0.1:5000", &[]).scheme, "http");
        assert_eq!(default_endpoint("[::1]:5000", &[]).scheme, "http");
        assert_eq!(default_endpoint("localhost", &[]).scheme, "http");
        assert_eq!(default_endpoint("registry.lan:5000", &[]).scheme, "https");
        assert_eq!(default_endpoint("registry.lan:5000", &["registry.lan:5000".into()]).scheme, "http");
    }

    #[test]
    fn mirrors_come_first_in_file_order_then_the_server() {
        let text = r#"
server = "https://registry-1.docker.io"

[host."http://mirror-b:5000"]
  capabilities = ["pull", "resolve"]

[host."https://mirror-a.lan/prefix"]
  capabilities = ["pull"]
  skip_verify = true
  ca = "mirror-ca.pem"

[host."https://raw.lan/api/root"]
  override_path = true
  ca = ["/abs/ca1.pem", "ca2.pem"]
"#;
        let e = parse("docker.io", text, Path::new(P), &[]).unwrap();
        let bases: Vec<_> = e.iter().map(Endpoint::base).collect();
        assert_eq!(
            bases,
            [
                "http://mirror-b:5000/v2",
                "https://mirror-a.lan/prefix/v2",
                "https://raw.lan/api/root",
                "https://registry-1.docker.io/v2"
            ]
        );
        assert!(e[0].pull && e[0].resolve && e[0].mirror);
        assert!(e[1].pull && !e[1].resolve && e[1].skip_verify);
        assert_eq!(e[1].ca, [PathBuf::from("/etc/kubelet-rs/certs.d/docker.io/mirror-ca.pem")]);
        assert_eq!(
            e[2].ca,
            [PathBuf::from("/abs/ca1.pem"), PathBuf::from("/etc/kubelet-rs/certs.d/docker.io/ca2.pem")]
        );
        assert!(!e[3].mirror && e[3].pull && e[3].resolve);
    }

    #[test]
    fn a_missing_server_defaults_to_the_registry() {
        let e = parse("registry.k8s.io", "[host.\"http://127.0.0.1:5000\"]\n", Path::new(P), &[]).unwrap();
        assert_eq!(e[0].base(), "http://127.0.0.1:5000/v2");
        assert_eq!(e[1].base(), "https://registry.k8s.io/v2");
    }

    #[test]
    fn bad_files_name_the_path_and_the_problem() {
        let e = parse("x.io", "server = 3", Path::new(P), &[]).unwrap_err();
        assert!(e.to_string().contains(P), "{e}");
        let e = parse("x.io", "server = \"ftp://x\"", Path::new(P), &[]).unwrap_err();
        assert!(matches!(e, HostsError::Url { .. }), "{e}");
        let e = parse("x.io", "[host.\"https://m\"]\ncapabilities = [\"fly\"]", Path::new(P), &[]).unwrap_err();
        assert!(e.to_string().contains("\"fly\""), "{e}");
    }

    #[test]
    fn files_are_found_per_registry_then_default() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("localhost:5000")).unwrap();
        std::fs::write(dir.path().join("localhost:5000/hosts.toml"), "server = \"http://localhost:6000\"").unwrap();
        std::fs::create_dir_all(dir.path().join("_default")).unwrap();
        std::fs::write(dir.path().join("_default/hosts.toml"), "[host.\"http://cache:5000\"]").unwrap();
        let e = endpoints(Some(dir.path()), "localhost:5000", &[]).unwrap();
        assert_eq!(e.iter().map(Endpoint::base).collect::<Vec<_>>(), ["http://localhost:6000/v2"]);
        let e = endpoints(Some(dir.path()), "quay.io", &[]).unwrap();
        assert_eq!(e.iter().map(Endpoint::base).collect::<Vec<_>>(), ["http://cache:5000/v2", "https://quay.io/v2"]);
    }
}
