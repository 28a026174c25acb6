//! Manifest media types, the platform of an image, and picking one manifest out of an
//! image index (OCI) or manifest list (Docker schema 2).

use std::fmt;

use oci_spec::image::{Descriptor, ImageManifest};
use serde::Deserialize;

use crate::digest::Digest;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1";

/// The Accept header of a manifest request: every type this client can use.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest {digest}: not valid json for {kind}: {source}")]
    Json { digest: Digest, kind: &'static str, source: serde_json::Error },
    #[error(
        "manifest {digest}: unsupported media type {media_type:?} (docker schema 1 and unknown types cannot be pulled)"
    )]
    MediaType { digest: Digest, media_type: String },
    #[error("image index {digest}: no manifest for platform {platform} (available: {available})")]
    NoPlatform { digest: Digest, platform: Platform, available: String },
    #[error("manifest {digest}: descriptor has an invalid digest {value:?}")]
    DescriptorDigest { digest: Digest, value: String },
}

/// What kind of document a manifest response holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Index,
    Manifest,
}

/// Classifies a manifest by its media type, from the Content-Type header or, when that is
/// missing or generic, from the document's own `mediaType` field (or its shape).
pub fn kind(content_type: Option<&str>, body: &[u8], digest: &Digest) -> Result<Kind, ManifestError> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        #[serde(rename = "schemaVersion")]
        schema_version: Option<u32>,
    }
    let from_type = |t: &str| match t {
        OCI_INDEX | DOCKER_LIST => Some(Kind::Index),
        OCI_MANIFEST | DOCKER_MANIFEST => Some(Kind::Manifest),
        _ => None,
    };
    let ct = content_type.map(|c| c.split(';').next().unwrap_or("").trim().to_string());
    if let Some(k) = ct.as_deref().and_then(from_type) {
        return Ok(k);
    }
    let probe: Probe = serde_json::from_slice(body).map_err(|source| ManifestError::Json {
        digest: digest.clone(),
        kind: "a manifest",
        source,
    })?;
    if let Some(k) = probe.media_type.as_deref().and_then(from_type) {
        return Ok(k);
    }
    let unsupported = probe.media_type.clone().or(ct.clone()).unwrap_or_default();
    if probe.schema_version == Some(1) || unsupported.starts_with(DOCKER_SCHEMA1) {
        return Err(ManifestError::MediaType { digest: digest.clone(), media_type: unsupported });
    }
    // OCI allows mediaType to be absent; the shape tells.
    if probe.media_type.is_none() && probe.schema_version == Some(2) {
        return Ok(if probe.manifests.is_some() { Kind::Index } else { Kind::Manifest });
    }
    Err(ManifestError::MediaType { digest: digest.clone(), media_type: unsupported })
}

pub fn parse_manifest(body: &[u8], digest: &Digest) -> Result<ImageManifest, ManifestError> {
    serde_json::from_slice(body).map_err(|source| ManifestError::Json {
        digest: digest.clone(),
        kind: "an image manifest",
        source,
    })
}

/// The platform an image is for, as an index describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform { os: os.into(), architecture: normalise_arch(architecture), variant: variant.map(Into::into) }
    }

    /// The platform of the machine this runs on.
    pub fn host() -> Platform {
        let arch = normalise_arch(std::env::consts::ARCH);
        let variant = match arch.as_str() {
            "arm" => Some("v7".into()),
            _ => None,
        };
        Platform { os: "linux".into(), architecture: arch, variant }
    }

    /// Parses `os/arch[/variant]`, e.g. `linux/arm64/v8`.
    pub fn parse(s: &str) -> Option<Platform> {
        let mut it = s.split('/');
        let os = it.next().filter(|x| !x.is_empty())?;
        let arch = it.next().filter(|x| !x.is_empty())?;
        let variant = it.next();
        if it.next().is_some() {
            return None;
        }
        Some(Platform::new(os, arch, variant))
    }
}

impl Default for Platform {
    fn default() -> Platform {
        Platform::new("linux", "amd64", None)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

fn normalise_arch(a: &str) -> String {
    match a {
        "x86_64" | "x86-64" => "amd64".into(),
        "aarch64" => "arm64".into(),
        "i386" | "i686" | "x86" => "386".into(),
        other => other.into(),
    }
}

/// The variant an architecture has when the index leaves it out.
fn default_variant(arch: &str) -> Option<&'static str> {
    match arch {
        "arm64" => Some("v8"),
        "arm" => Some("v7"),
        _ => None,
    }
}

#[derive(Deserialize)]
struct IndexJson {
    manifests: Vec<IndexEntry>,
}

#[derive(Deserialize)]
struct IndexEntry {
    digest: String,
    platform: Option<PlatformJson>,
    #[serde(default)]
    annotations: std::collections::HashMap<String, String>,
}

#[derive(Deserialize)]
struct PlatformJson {
    os: String,
    architecture: String,
    variant: Option<String>,
}

/// Picks the manifest for `want` from an index. An exact variant match wins; a platform
/// without a variant accepts any (the architecture's default variant first). Attestation
/// manifests (buildkit's `unknown/unknown` entries) are never picked.
pub fn select_platform(index: &[u8], index_digest: &Digest, want: &Platform) -> Result<Descriptor, ManifestError> {
    let parsed: IndexJson = serde_json::from_slice(index).map_err(|source| ManifestError::Json {
        digest: index_digest.clone(),
        kind: "an image index",
        source,
    })?;
    let descriptors: Vec<Descriptor> = serde_json::from_slice::<serde_json::Value>(index)
        .ok()
        .and_then(|v| v.get("manifests").cloned())
        .map(serde_json::from_value)
        .transpose()
        .map_err(|source| ManifestError::Json { digest: index_digest.clone(), kind: "an image index", source })?
        .unwrap_or_default();

    let want_variant = want.variant.as_deref().or(default_variant(&want.architecture));
    let mut best: Option<(u8, usize)> = None;
    let mut available = Vec::new();
    for (i, entry) in parsed.manifests.iter().enumerate() {
        let Some(p) = &entry.platform else { continue };
        if entry.annotations.get("vnd.docker.reference.type").map(String::as_str) == Some("attestation-manifest") {
            continue;
        }
        let arch = normalise_arch(&p.architecture);
        let have = Platform { os: p.os.clone(), architecture: arch.clone(), variant: p.variant.clone() };
        available.push(have.to_string());
        if p.os != want.os || arch != want.architecture {
            continue;
        }
        let have_variant = p.variant.as_deref().or(default_variant(&arch));
        let score = if have_variant == want_variant {
            2
        } else if want.variant.is_none() {
            1
        } else {
            continue;
        };
        if best.is_none_or(|(s, _)| score > s) {
            best = Some((score, i));
        }
    }
    let Some((_, i)) = best else {
        return Err(ManifestError::NoPlatform {
            digest: index_digest.clone(),
            platform: want.clone(),
            available: if available.is_empty() { "none".into() } else { available.join(", ") },
        });
    };
    descriptors.get(i).cloned().ok_or_else(|| ManifestError::DescriptorDigest {
        digest: index_digest.clone(),
        value: parsed.manifests[i].digest.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, os: &str, arch: &str, variant: Option<&str>) -> serde_json::Value {
        let mut p = serde_json::json!({"os": os, "architecture": arch});
        if let Some(v) = variant {
            p["variant"] = v.into();
        }
        serde_json::json!({
            "mediaType": OCI_MANIFEST,
            "digest": format!("sha256:{}", format!("{n:02x}").repeat(32)),
            "size": 100 + n as u64,
            "platform": p,
        })
    }

    fn index(entries: Vec<serde_json::Value>) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}))
            .unwrap()
    }

    fn pick(idx: &[u8], want: &str) -> Result<u64, ManifestError> {
        select_platform(idx, &Digest::of(idx), &Platform::parse(want).unwrap()).map(|d| d.size())
    }

    #[test]
    fn picks_os_and_architecture() {
        let idx = index(vec![
            entry(1, "linux", "arm64", Some("v8")),
            entry(2, "linux", "amd64", None),
            entry(3, "windows", "amd64", None),
        ]);
        assert_eq!(pick(&idx, "linux/amd64").unwrap(), 102);
        assert_eq!(pick(&idx, "linux/arm64").unwrap(), 101);
        assert_eq!(pick(&idx, "linux/arm64/v8").unwrap(), 101);
        assert_eq!(pick(&idx, "windows/amd64").unwrap(), 103);
        assert_eq!(Platform::default().to_string(), "linux/amd64");
    }

    #[test]
    fn variants_match_exactly_or_default() {
        let idx = index(vec![
            entry(1, "linux", "arm", Some("v6")),
            entry(2, "linux", "arm", Some("v7")),
            entry(3, "linux", "arm64", None),
        ]);
        assert_eq!(pick(&idx, "linux/arm/v6").unwrap(), 101);
        assert_eq!(pick(&idx, "linux/arm/v7").unwrap(), 102);
        assert_eq!(pick(&idx, "linux/arm").unwrap(), 102, "arm without variant prefers v7");
        assert_eq!(pick(&idx, "linux/arm64/v8").unwrap(), 103, "missing arm64 variant means v8");
        assert!(matches!(pick(&idx, "linux/arm/v5"), Err(ManifestError::NoPlatform { .. })));
    }

    #[test]
    fn missing_platform_names_what_is_available_and_attestations_are_skipped() {
        let mut att = entry(9, "unknown", "unknown", None);
        att["annotations"] = serde_json::json!({"vnd.docker.reference.type": "attestation-manifest"});
        let idx = index(vec![entry(1, "linux", "arm64", None), att]);
        let e = pick(&idx, "linux/amd64").unwrap_err().to_string();
        assert!(e.contains("linux/amd64") && e.contains("available: linux/arm64"), "{e}");
        assert!(!e.contains("unknown"), "{e}");
    }

    #[test]
    fn aliases_of_architectures_are_normalised() {
        let idx = index(vec![entry(1, "linux", "x86_64", None)]);
        assert_eq!(pick(&idx, "linux/amd64").unwrap(), 101);
        assert_eq!(Platform::new("linux", "aarch64", None).architecture, "arm64");
    }

    #[test]
    fn kinds_come_from_content_type_or_body() {
        let d = Digest::of(b"");
        assert_eq!(kind(Some(OCI_INDEX), b"{}", &d).unwrap(), Kind::Index);
        assert_eq!(
            kind(
                Some("application/json"),
                br#"{"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#,
                &d
            )
            .unwrap(),
            Kind::Manifest
        );
        assert_eq!(kind(None, br#"{"schemaVersion":2,"manifests":[]}"#, &d).unwrap(), Kind::Index);
        assert_eq!(kind(None, br#"{"schemaVersion":2,"layers":[]}"#, &d).unwrap(), Kind::Manifest);
        let e = kind(Some("application/vnd.docker.distribution.manifest.v1+prettyjws"), br#"{"schemaVersion":1}"#, &d);
        assert!(matches!(e, Err(ManifestError::MediaType { .. })));
    }
}
