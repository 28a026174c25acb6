//! Registry authentication: parsing `WWW-Authenticate` challenges, the Docker token flow
//! (Bearer tokens from the challenge's realm, cached per registry and scope until they
//! expire), Basic auth, and where credentials come from (`trait Credentials`; a Docker
//! `config.json` is one source, the CRI `AuthConfig` will be another).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("www-authenticate {header:?}: {problem}")]
    Challenge { header: String, problem: &'static str },
    #[error("docker config {path}: {source}")]
    ConfigRead { path: PathBuf, source: std::io::Error },
    #[error("docker config {path}: {source}")]
    ConfigJson { path: PathBuf, source: serde_json::Error },
    #[error("docker config {path}: auth for {registry:?} is not base64 of user:password")]
    ConfigAuth { path: PathBuf, registry: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    Bearer,
    Basic,
    Other(String),
}

/// One challenge of a `WWW-Authenticate` header; parameter names are lowercased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: Scheme,
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Parses a `WWW-Authenticate` value: one or more `Scheme k=v, k="quoted"` challenges.
pub fn parse_challenges(header: &str) -> Result<Vec<Challenge>, AuthError> {
    let err = |problem| AuthError::Challenge { header: header.into(), problem };
    let b = header.as_bytes();
    let mut i = 0;
    let mut out: Vec<Challenge> = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t' || b[*i] == b',') {
            *i += 1;
        }
    };
    let token = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && !matches!(b[*i], b' ' | b'\t' | b',' | b'=') {
            *i += 1;
        }
        &header[start..*i]
    };
    loop {
        skip_ws(&mut i);
        if i >= b.len() {
            break;
        }
        let word = token(&mut i);
        if word.is_empty() {
            return Err(err("expected a scheme or parameter name"));
        }
        // `word=` is a parameter of the current challenge; a bare word starts a new one.
        let mut j = i;
        while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
            j += 1;
        }
        if j < b.len() && b[j] == b'=' {
            let Some(current) = out.last_mut() else { return Err(err("parameter before any scheme")) };
            i = j + 1;
            while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
                i += 1;
            }
            let value = if i < b.len() && b[i] == b'"' {
                i += 1;
                let mut v = String::new();
                loop {
                    let Some(&c) = b.get(i) else { return Err(err("unterminated quoted value")) };
                    i += 1;
                    match c {
                        b'"' => break,
                        b'\\' => {
                            let Some(&n) = b.get(i) else { return Err(err("unterminated quoted value")) };
                            v.push(n as char);
                            i += 1;
                        }
                        _ => {
                            // Copy a whole UTF-8 sequence at once.
                            let start = i - 1;
                            let mut end = i;
                            while end < b.len() && (b[end] & 0xC0) == 0x80 {
                                end += 1;
                            }
                            v.push_str(&header[start..end]);
                            i = end;
                        }
                    }
                }
                v
            } else {
                token(&mut i).to_string()
            };
            current.params.insert(word.to_ascii_lowercase(), value);
        } else {
            let scheme = match word.to_ascii_lowercase().as_str() {
                "bearer" => Scheme::Bearer,
                "basic" => Scheme::Basic,
                _ => Scheme::Other(word.into()),
            };
            out.push(Challenge { scheme, params: BTreeMap::new() });
        }
    }
    if out.is_empty() {
        return Err(err("no challenge"));
    }
    Ok(out)
}

/// A user name and password (or token used as a password) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential {{ username: {:?}, password: <redacted> }}", self.username)
    }
}

impl Credential {
    /// The value of an `Authorization: Basic ...` header.
    pub fn basic_header(&self) -> String {
        format!("Basic {}", B64.encode(format!("{}:{}", self.username, self.password)))
    }
}

/// Where credentials come from. `registry` is a host as the client contacts it
/// (`registry-1.docker.io`, `localhost:5000`) or the registry as named (`docker.io`).
pub trait Credentials: Send + Sync {
    fn lookup(&self, registry: &str) -> Option<Credential>;
}

/// No credentials: anonymous pulls only.
pub struct Anonymous;

impl Credentials for Anonymous {
    fn lookup(&self, _: &str) -> Option<Credential> {
        None
    }
}

/// A fixed map from registry to credential (tests, and a CRI `AuthConfig` per pull).
#[derive(Default, Clone)]
pub struct StaticCredentials(pub HashMap<String, Credential>);

impl Credentials for StaticCredentials {
    fn lookup(&self, registry: &str) -> Option<Credential> {
        self.0.get(&normalise_registry(registry)).or_else(|| self.0.get(registry)).cloned()
    }
}

/// Credentials from a Docker `config.json` (`auths` entries with `auth` = base64 of
/// `user:password`, or `username` and `password`). Credential helpers are not run.
#[derive(Default, Clone)]
pub struct DockerConfig {
    auths: HashMap<String, Credential>,
}

#[derive(Deserialize)]
struct ConfigJson {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

impl DockerConfig {
    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
            return Some(PathBuf::from(d).join("config.json"));
        }
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
    }

    /// Loads `path`; a missing file means no credentials.
    pub fn load(path: &Path) -> Result<DockerConfig, AuthError> {
        match std::fs::read_to_string(path) {
            Ok(text) => DockerConfig::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DockerConfig::default()),
            Err(source) => Err(AuthError::ConfigRead { path: path.into(), source }),
        }
    }

    /// Parses the text of a config.json; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<DockerConfig, AuthError> {
        let cfg: ConfigJson =
            serde_json::from_str(text).map_err(|source| AuthError::ConfigJson { path: path.into(), source })?;
        let mut auths = HashMap::new();
        for (key, entry) in cfg.auths {
            let bad = || AuthError::ConfigAuth { path: path.into(), registry: key.clone() };
            let cred = match (entry.auth.filter(|a| !a.is_empty()), entry.username, entry.password) {
                (Some(a), _, _) => {
                    let raw = B64.decode(a.trim()).map_err(|_| bad())?;
                    let s = String::from_utf8(raw).map_err(|_| bad())?;
                    let (u, p) = s.split_once(':').ok_or_else(bad)?;
                    Credential { username: u.into(), password: p.into() }
                }
                (None, Some(u), Some(p)) => Credential { username: u, password: p },
                _ => continue,
            };
            auths.insert(normalise_registry(&key), cred);
        }
        Ok(DockerConfig { auths })
    }
}

impl Credentials for DockerConfig {
    fn lookup(&self, registry: &str) -> Option<Credential> {
        self.auths.get(&normalise_registry(registry)).cloned()
    }
}

/// Reduces a config.json key or host to `host[:port]`, with Docker Hub's many names as
/// `docker.io` (`https://index.docker.io/v1/` is the key `docker login` writes).
pub fn normalise_registry(key: &str) -> String {
    let k = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    let host = k.split('/').next().unwrap_or(k);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" | "registry.hub.docker.com" => "docker.io".into(),
        h => h.to_string(),
    }
}

/// A token answer of the Docker token protocol.
#[derive(Deserialize)]
pub struct TokenResponse {
    pub token: Option<String>,
    pub access_token: Option<String>,
    pub expires_in: Option<u64>,
}

/// Bearer tokens per (host, scope) and hosts known to want Basic auth.
#[derive(Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<(String, String), (String, Instant)>>,
    basic: Mutex<HashMap<String, Credential>>,
}

/// Tokens without `expires_in` last 60 s by the spec; we stop using one a little early.
const DEFAULT_TOKEN_LIFETIME: u64 = 60;
const EXPIRY_MARGIN: Duration = Duration::from_secs(5);

impl TokenCache {
    pub fn bearer(&self, host: &str, scope: &str) -> Option<String> {
        let tokens = self.tokens.lock().unwrap();
        let (t, until) = tokens.get(&(host.to_string(), scope.to_string()))?;
        (Instant::now() < *until).then(|| t.clone())
    }

    pub fn store_bearer(&self, host: &str, scope: &str, token: String, expires_in: Option<u64>) {
        let life = Duration::from_secs(expires_in.unwrap_or(DEFAULT_TOKEN_LIFETIME).max(1));
        let until = Instant::now() + life.saturating_sub(EXPIRY_MARGIN).max(Duration::from_secs(1));
        self.tokens.lock().unwrap().insert((host.into(), scope.into()), (token, until));
    }

    pub fn forget_bearer(&self, host: &str, scope: &str) {
        self.tokens.lock().unwrap().remove(&(host.to_string(), scope.to_string()));
    }

    pub fn basic(&self, host: &str) -> Option<Credential> {
        self.basic.lock().unwrap().get(host).cloned()
    }

    pub fn store_basic(&self, host: &str, cred: Credential) {
        self.basic.lock().unwrap().insert(host.into(), cred);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_bearer_challenge() {
        let h = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#;
        let c = parse_challenges(h).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, Scheme::Bearer);
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(c[0].param("scope"), Some("repository:library/nginx:pull"));
    }

    #[test]
    fn basic_multiple_challenges_tokens_and_escapes() {
        let c =
            parse_challenges(r#"Basic realm="Registry Realm", Bearer realm=https://t/x, error="a \"q\" b""#).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, Scheme::Basic);
        assert_eq!(c[0].param("realm"), Some("Registry Realm"));
        assert_eq!(c[1].scheme, Scheme::Bearer);
        assert_eq!(c[1].param("realm"), Some("https://t/x"));
        assert_eq!(c[1].param("error"), Some(r#"a "q" b"#));
        let c = parse_challenges("basic").unwrap();
        assert_eq!(c[0].scheme, Scheme::Basic);
        let c = parse_challenges("Bearer REALM = \"x\"").unwrap();
        assert_eq!(c[0].param("realm"), Some("x"));
    }

    #[test]
    fn bad_challenges_are_named() {
        assert!(parse_challenges("").is_err());
        assert!(parse_challenges("realm=x").is_err());
        let e = parse_challenges(r#"Bearer realm="x"#).unwrap_err();
        assert!(e.to_string().contains("unterminated"), "{e}");
    }

    #[test]
    fn docker_config_auth_and_username_password() {
        let text = r#"{"auths": {
            "https://index.docker.io/v1/": {"auth": "dXNlcjpwYTpzcw=="},
            "localhost:5000": {"username": "u2", "password": "p2"},
            "ghcr.io": {}
        }}"#;
        let c = DockerConfig::parse(text, Path::new("/c.json")).unwrap();
        let hub = Credential { username: "user".into(), password: "pa:ss".into() };
        assert_eq!(c.lookup("docker.io"), Some(hub.clone()));
        assert_eq!(c.lookup("registry-1.docker.io"), Some(hub));
        assert_eq!(c.lookup("localhost:5000").unwrap().username, "u2");
        assert_eq!(c.lookup("ghcr.io"), None);
        let e = DockerConfig::parse(r#"{"auths":{"x.io":{"auth":"!!"}}}"#, Path::new("/c.json")).err().unwrap();
        assert!(e.to_string().contains("x.io") && e.to_string().contains("/c.json"), "{e}");
        assert!(DockerConfig::load(Path::new("/nonexistent/config.json")).unwrap().lookup("docker.io").is_none());
    }

    #[test]
    fn tokens_are_cached_per_host_and_scope_until_expiry() {
        let c = TokenCache::default();
        c.store_bearer("h", "repository:a:pull", "t1".into(), Some(300));
        assert_eq!(c.bearer("h", "repository:a:pull").as_deref(), Some("t1"));
        assert_eq!(c.bearer("h", "repository:b:pull"), None);
        assert_eq!(c.bearer("other", "repository:a:pull"), None);
        // A token that lives less than the margin is stored but expires at once.
        c.store_bearer("h", "s", "t2".into(), Some(1));
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(c.bearer("h", "s"), None);
    }

    #[test]
    fn credentials_do_not_print_passwords() {
        let c = Credential { username: "u".into(), password: "secret".into() };
        assert!(!format!("{c:?}").contains("secret"));
        assert_eq!(c.basic_header(), "Basic dTpzZWNyZXQ=");
    }
}
