//! Image references as users write them (`nginx`, `ghcr.io/org/app:v1`,
//! `localhost:5000/app@sha256:…`), parsed by the grammar of the distribution project's
//! reference package and normalised the way Docker does: a name without a registry is on
//! Docker Hub (`docker.io`), a single-component Hub name is under `library/`, and a reference
//! with neither tag nor digest means the tag `latest`.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

/// The registry short names are normalised to.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that actually serves Docker Hub's registry API.
pub const DOCKER_HUB_HOST: &str = "registry-1.docker.io";
const DEFAULT_TAG: &str = "latest";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// The registry as named, normalised (`docker.io`, `localhost:5000`, `ghcr.io`).
    registry: String,
    /// The repository path inside the registry (`library/nginx`, `org/app`).
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("image reference is empty")]
    Empty,
    #[error("image reference {reference:?}: repository name must be lowercase")]
    Uppercase { reference: String },
    #[error("image reference {reference:?}: invalid registry host {host:?}")]
    Host { reference: String, host: String },
    #[error(
        "image reference {reference:?}: invalid repository path component {component:?} (lowercase letters, digits and single separators . _ __ - only)"
    )]
    Component { reference: String, component: String },
    #[error(
        "image reference {reference:?}: invalid tag {tag:?} (1 to 128 of letters, digits, _ . -, not starting with . or -)"
    )]
    Tag { reference: String, tag: String },
    #[error("image reference {reference:?}: invalid digest: {source}")]
    Digest { reference: String, source: DigestError },
    #[error("image reference {reference:?}: repository name longer than 255 characters")]
    TooLong { reference: String },
    #[error("image reference {reference:?}: a 64-hex image id is not a repository name")]
    IdentifierOnly { reference: String },
}

impl Reference {
    /// Parses and normalises a reference as a user writes it.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        s.parse()
    }

    /// The registry as named in the reference (`docker.io` for Docker Hub).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host (and port) to contact for the registry API when no mirror is configured.
    pub fn registry_host(&self) -> &str {
        if self.registry == DOCKER_HUB { DOCKER_HUB_HOST } else { &self.registry }
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What goes after `/manifests/` in the API: the digest when there is one (it pins the
    /// content), else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.into(),
        }
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same image pinned to `digest` (the tag is kept for display).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference { digest: Some(digest), ..self.clone() }
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Reference, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let whole = || s.to_string();
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
            return Err(ReferenceError::IdentifierOnly { reference: whole() });
        }

        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => {
                let d = d.parse::<Digest>().map_err(|source| ReferenceError::Digest { reference: whole(), source })?;
                (rest, Some(d))
            }
            None => (s, None),
        };
        // A tag follows the last ':' only if no '/' comes after it (else the ':' is a port).
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(t) = tag
            && !valid_tag(t)
        {
            return Err(ReferenceError::Tag { reference: whole(), tag: t.into() });
        }
        if name.is_empty() {
            return Err(ReferenceError::Empty);
        }

        let (registry, path) = split_registry(name);
        if let Some(host) = &registry
            && !valid_host(host)
        {
            return Err(ReferenceError::Host { reference: whole(), host: host.clone() });
        }
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase { reference: whole() });
        }
        for component in path.split('/') {
            if !valid_component(component) {
                return Err(ReferenceError::Component { reference: whole(), component: component.into() });
            }
        }

        let mut registry = registry.unwrap_or_else(|| DOCKER_HUB.into());
        if registry == "index.docker.io" || registry == DOCKER_HUB_HOST {
            registry = DOCKER_HUB.into();
        }
        let repository =
            if registry == DOCKER_HUB && !path.contains('/') { format!("library/{path}") } else { path.to_string() };
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(ReferenceError::TooLong { reference: whole() });
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.into()),
        };
        Ok(Reference { registry, repository, tag, digest })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Splits off the registry: the first component is a host if it contains '.' or ':', is
/// `localhost`, or has uppercase letters (which a repository cannot have).
fn split_registry(name: &str) -> (Option<String>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (Some(first.to_string()), rest)
        }
        _ => (None, name),
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(t: &str) -> bool {
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    let b = t.as_bytes();
    !b.is_empty() && b.len() <= MAX_TAG_LEN && word(b[0]) && b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
}

/// A DNS name of `[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?` labels or a bracketed IPv6
/// address, with an optional numeric port.
fn valid_host(h: &str) -> bool {
    let (host, port) = if let Some(rest) = h.strip_prefix('[') {
        let Some((addr, after)) = rest.split_once(']') else { return false };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => return valid_port(port),
                None => return false,
            },
        }
    } else {
        match h.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (h, None),
        }
    };
    if let Some(p) = port
        && !valid_port(p)
    {
        return false;
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-')
        })
}

fn valid_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn parts(s: &str) -> (String, String, Option<String>, Option<String>) {
        let r = Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        (r.registry().into(), r.repository().into(), r.tag().map(Into::into), r.digest().map(|d| d.to_string()))
    }

    fn p(
        reg: &str,
        repo: &str,
        tag: Option<&str>,
        digest: Option<&str>,
    ) -> (String, String, Option<String>, Option<String>) {
        (reg.into(), repo.into(), tag.map(Into::into), digest.map(Into::into))
    }

    #[test]
    fn short_names_normalise_to_docker_hub_library() {
        assert_eq!(parts("nginx"), p("docker.io", "library/nginx", Some("latest"), None));
        assert_eq!(parts("nginx:1.27"), p("docker.io", "library/nginx", Some("1.27"), None));
        assert_eq!(parts("library/nginx"), p("docker.io", "library/nginx", Some("latest"), None));
        assert_eq!(parts("bitnami/redis:7"), p("docker.io", "bitnami/redis", Some("7"), None));
        assert_eq!(parts("docker.io/nginx"), p("docker.io", "library/nginx", Some("latest"), None));
        assert_eq!(parts("index.docker.io/library/nginx"), p("docker.io", "library/nginx", Some("latest"), None));
        assert_eq!(Reference::parse("nginx").unwrap().registry_host(), "registry-1.docker.io");
        assert_eq!(Reference::parse("nginx").unwrap().to_string(), "docker.io/library/nginx:latest");
    }

    #[test]
    fn digests_pin_and_keep_the_tag_if_given() {
        let s = format!("docker.io/library/nginx@{D}");
        assert_eq!(parts(&s), p("docker.io", "library/nginx", None, Some(D)));
        let r = Reference::parse(&s).unwrap();
        assert_eq!(r.manifest_ref(), D);
        assert_eq!(r.to_string(), s);
        let s = format!("registry:5000/a/b/c:tag@{D}");
        assert_eq!(parts(&s), p("registry:5000", "a/b/c", Some("tag"), Some(D)));
        assert_eq!(Reference::parse(&s).unwrap().manifest_ref(), D);
    }

    #[test]
    fn registries_are_detected_by_dot_colon_or_localhost() {
        assert_eq!(parts("localhost:5000/app:v1"), p("localhost:5000", "app", Some("v1"), None));
        assert_eq!(parts("localhost/app"), p("localhost", "app", Some("latest"), None));
        assert_eq!(parts("ghcr.io/org/app:tag"), p("ghcr.io", "org/app", Some("tag"), None));
        assert_eq!(parts("registry.k8s.io/pause:3.10"), p("registry.k8s.io", "pause", Some("3.10"), None));
        assert_eq!(parts("127.0.0.1:5000/x"), p("127.0.0.1:5000", "x", Some("latest"), None));
        assert_eq!(parts("[::1]:5000/x:y"), p("[::1]:5000", "x", Some("y"), None));
        // Not a host: no dot, colon or localhost, so a Hub user name.
        assert_eq!(parts("registry/app"), p("docker.io", "registry/app", Some("latest"), None));
        assert_eq!(Reference::parse("localhost:5000/app").unwrap().registry_host(), "localhost:5000");
    }

    #[test]
    fn path_components_allow_the_grammar_separators() {
        assert_eq!(parts("a/b.c/d_e/f__g/h---i").1, "a/b.c/d_e/f__g/h---i");
        for bad in ["a/.b", "a/b.", "a/b..c", "a/b___c", "a//b", "a/b-", "a/b_-c"] {
            assert!(
                matches!(Reference::parse(bad), Err(ReferenceError::Component { .. })),
                "{bad} should fail: {:?}",
                Reference::parse(bad)
            );
        }
    }

    #[test]
    fn uppercase_repositories_are_refused_but_hosts_may_have_it() {
        assert_eq!(Reference::parse("Nginx"), Err(ReferenceError::Uppercase { reference: "Nginx".into() }));
        assert!(matches!(Reference::parse("ghcr.io/Org/app"), Err(ReferenceError::Uppercase { .. })));
        assert_eq!(parts("Registry.Example.com/app").0, "Registry.Example.com");
    }

    #[test]
    fn tags_follow_the_grammar() {
        assert_eq!(parts("app:V1_2.3-rc").2.as_deref(), Some("V1_2.3-rc"));
        assert!(matches!(Reference::parse("app:.x"), Err(ReferenceError::Tag { .. })));
        assert!(matches!(Reference::parse("app:-x"), Err(ReferenceError::Tag { .. })));
        assert!(matches!(Reference::parse("app:"), Err(ReferenceError::Tag { .. })));
        assert!(matches!(Reference::parse("app:a+b"), Err(ReferenceError::Tag { .. })));
        let long = format!("app:{}", "a".repeat(129));
        assert!(matches!(Reference::parse(&long), Err(ReferenceError::Tag { .. })));
        assert!(Reference::parse(&format!("app:{}", "a".repeat(128))).is_ok());
    }

    #[test]
    fn bad_digests_hosts_and_lengths_are_named() {
        let e = Reference::parse("nginx@sha256:abc").unwrap_err();
        assert!(matches!(e, ReferenceError::Digest { .. }));
        assert!(e.to_string().contains("nginx@sha256:abc"), "{e}");
        assert!(matches!(Reference::parse("nginx@md5:abc"), Err(ReferenceError::Digest { .. })));
        assert!(matches!(Reference::parse("-bad.io/app"), Err(ReferenceError::Host { .. })));
        assert!(matches!(Reference::parse("host.io:port/app"), Err(ReferenceError::Host { .. })));
        assert!(matches!(Reference::parse("[zz]:5000/app"), Err(ReferenceError::Host { .. })));
        assert_eq!(Reference::parse(""), Err(ReferenceError::Empty));
        assert!(matches!(Reference::parse(&"a".repeat(300)), Err(ReferenceError::TooLong { .. })));
        let id = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(matches!(Reference::parse(id), Err(ReferenceError::IdentifierOnly { .. })));
    }

    #[test]
    fn with_digest_pins_a_tagged_reference() {
        let r = Reference::parse("nginx:1.27").unwrap().with_digest(D.parse().unwrap());
        assert_eq!(r.to_string(), format!("docker.io/library/nginx:1.27@{D}"));
        assert_eq!(r.name(), "docker.io/library/nginx");
    }
}
