//! The result cache: after a successful ADD, libcni writes the attachment (its result, the
//! network configuration, `CNI_ARGS` and capability arguments) to
//! `<cache_dir>/results/<network>-<container id>-<ifname>`. DEL and CHECK take their
//! `prevResult` from it, GC finds stale attachments in it, and the CRI finds a pod's IPs in it
//! after a restart. The JSON layout is libcni's (`kind: cniCacheV1`, `config` base64), so
//! either can read the other's entries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::{Attachment, CniRuntime, Error, Result};
use crate::spec::{CniResult, NetConfList};

const KIND: &str = "cniCacheV1";

/// An attachment as the cache remembers it.
#[derive(Debug, Clone)]
pub struct CachedAttachment {
    pub network: String,
    pub attachment: Attachment,
    /// The network configuration it was added with; `None` if the entry's copy is unreadable.
    pub config: Option<NetConfList>,
    pub result: Option<CniResult>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    kind: String,
    container_id: String,
    #[serde(default)]
    config: String,
    if_name: String,
    network_name: String,
    #[serde(default)]
    netns: String,
    #[serde(default)]
    cni_args: Vec<[String; 2]>,
    #[serde(default)]
    capability_args: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    result: Option<serde_json::Value>,
}

impl CniRuntime {
    fn results_dir(&self) -> PathBuf {
        self.cache_dir.join("results")
    }

    fn cache_path(&self, network: &str, container_id: &str, ifname: &str) -> PathBuf {
        self.results_dir().join(format!("{network}-{container_id}-{ifname}"))
    }

    /// The result of the last successful ADD of this attachment, if it is cached.
    pub fn cached_result(&self, network: &str, container_id: &str, ifname: &str) -> Result<Option<CniResult>> {
        Ok(self.read_entry(&self.cache_path(network, container_id, ifname))?.and_then(|c| c.result))
    }

    /// Every cached attachment of `network` (for GC, and for the CRI to recover after a
    /// restart). Unreadable entries are skipped with a warning.
    pub fn cached_attachments(&self, network: &str) -> Result<Vec<CachedAttachment>> {
        let dir = self.results_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(Error::CacheIo { path: dir, source }),
        };
        let mut found = Vec::new();
        for entry in entries {
            let path = entry.map_err(|source| Error::CacheIo { path: dir.clone(), source })?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            // The prefix only narrows the search: "net-a-..." also starts with "net-", so
            // the entry's own network name decides.
            if name.starts_with('.') || !name.starts_with(&format!("{network}-")) {
                continue;
            }
            match self.read_entry(&path) {
                Ok(Some(cached)) if cached.network == network => found.push(cached),
                Ok(_) => {}
                Err(e) => tracing::warn!("skipping cached attachment: {e}"),
            }
        }
        found.sort_by(|a, b| (&a.attachment.container_id, &a.attachment.ifname).cmp(&(&b.attachment.container_id, &b.attachment.ifname)));
        Ok(found)
    }

    /// The cache entry for an attachment; `None` when there is none.
    pub(super) fn read_cached(&self, network: &str, attachment: &Attachment) -> Result<Option<CachedAttachment>> {
        self.read_entry(&self.cache_path(network, &attachment.container_id, &attachment.ifname))
    }

    fn read_entry(&self, path: &Path) -> Result<Option<CachedAttachment>> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::CacheIo { path: path.to_path_buf(), source }),
        };
        let decode = |msg: String| Error::CacheDecode { path: path.to_path_buf(), msg };
        let entry: Entry = serde_json::from_slice(&bytes).map_err(|e| decode(e.to_string()))?;
        if entry.kind != KIND {
            return Err(decode(format!("unknown kind {:?}", entry.kind)));
        }
        let result = match &entry.result {
            Some(v) if !v.is_null() => Some(CniResult::from_json(v).map_err(|e| decode(format!("cached result: {e}")))?.1),
            _ => None,
        };
        let config = base64_decode(&entry.config).and_then(|b| NetConfList::parse(&b).ok());
        let attachment = Attachment {
            container_id: entry.container_id,
            netns: PathBuf::from(entry.netns),
            ifname: entry.if_name,
            args: entry.cni_args.into_iter().map(|[k, v]| (k, v)).collect(),
            capability_args: entry.capability_args,
        };
        Ok(Some(CachedAttachment { network: entry.network_name, attachment, config, result }))
    }

    /// Writes the entry to a temporary file and renames it into place, so a crash never
    /// leaves a half-written entry for DEL to trip over.
    pub(super) fn write_cached(&self, list: &NetConfList, attachment: &Attachment, result: &CniResult) -> Result<()> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let entry = Entry {
            kind: KIND.to_string(),
            container_id: attachment.container_id.clone(),
            config: base64_encode(list_json(list).to_string().as_bytes()),
            if_name: attachment.ifname.clone(),
            network_name: list.name.clone(),
            netns: attachment.netns.to_string_lossy().into_owned(),
            cni_args: attachment.args.iter().map(|(k, v)| [k.clone(), v.clone()]).collect(),
            capability_args: attachment.capability_args.clone(),
            result: Some(result.to_json(list.cni_version)),
        };
        let dir = self.results_dir();
        let path = self.cache_path(&list.name, &attachment.container_id, &attachment.ifname);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::CacheIo { path, source }
        };
        create_private_dir(&dir).map_err(io(&dir))?;
        let tmp = dir.join(format!(
            ".{}.{}.{}.tmp",
            path.file_name().and_then(|n| n.to_str()).unwrap_or_default(),
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let bytes = serde_json::to_vec(&entry).expect("a cache entry always serialises");
        let written = write_private(&tmp, &bytes).and_then(|_| std::fs::rename(&tmp, &path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(io(&path))
    }

    /// Removes an attachment's entry; a missing entry is fine (DEL is idempotent).
    pub(super) fn remove_cached(&self, network: &str, attachment: &Attachment) -> Result<()> {
        let path = self.cache_path(network, &attachment.container_id, &attachment.ifname);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::CacheIo { path, source: e }),
            _ => Ok(()),
        }
    }
}

/// The list as a `.conflist`, for the cache and for DEL of a network whose file is gone.
fn list_json(list: &NetConfList) -> serde_json::Value {
    serde_json::json!({
        "cniVersion": list.cni_version.as_str(),
        "name": list.name,
        "disableCheck": list.disable_check,
        "disableGC": list.disable_gc,
        "plugins": list.plugins,
    })
}

/// Cached results hold addresses of pods: readable by root only, as libcni does.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding: how Go's encoding/json writes the `[]byte` config field.
fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = B64.iter().position(|b| *b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_like_go() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        for s in ["", "f", "fo", "foo", "{\"name\":\"krs\"}"] {
            assert_eq!(base64_decode(&base64_encode(s.as_bytes())).unwrap(), s.as_bytes());
        }
        assert!(base64_decode("!!").is_none());
    }

    #[test]
    fn writes_reads_lists_and_removes_entries() {
        let dir = tempfile::tempdir().unwrap();
        let rt = CniRuntime::new(vec![]).with_cache_dir(dir.path());
        let list = NetConfList::parse(br#"{"cniVersion":"1.1.0","name":"net","plugins":[{"type":"bridge"}]}"#).unwrap();
        let other = NetConfList::parse(br#"{"cniVersion":"1.1.0","name":"net-a","plugins":[{"type":"bridge"}]}"#).unwrap();
        let a = Attachment::for_pod("ns", "p", "u", "c1", "/run/netns/x")
            .with_capability("portMappings", serde_json::json!([{"hostPort": 80, "containerPort": 8080}]));
        let result = CniResult::from_json(&serde_json::json!({"cniVersion":"1.1.0","ips":[{"address":"10.0.0.2/24"}]})).unwrap().1;
        rt.write_cached(&list, &a, &result).unwrap();
        rt.write_cached(&other, &a, &result).unwrap();
        assert_eq!(rt.cached_result("net", "c1", "eth0").unwrap(), Some(result));
        let cached = rt.cached_attachments("net").unwrap();
        assert_eq!(cached.len(), 1, "net-a's entry is not net's");
        assert_eq!(cached[0].attachment, a);
        assert_eq!(cached[0].config.as_ref().unwrap().plugins, list.plugins);
        let raw: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("results/net-c1-eth0")).unwrap()).unwrap();
        assert_eq!(raw["kind"], "cniCacheV1");
        assert_eq!(raw["cniArgs"][1], serde_json::json!(["K8S_POD_NAMESPACE", "ns"]));
        rt.remove_cached("net", &a).unwrap();
        rt.remove_cached("net", &a).unwrap();
        assert_eq!(rt.cached_result("net", "c1", "eth0").unwrap(), None);
        std::fs::write(dir.path().join("results/net-bad-eth0"), "{").unwrap();
        assert!(rt.cached_attachments("net").unwrap().is_empty(), "corrupt entries are skipped");
        assert!(matches!(rt.cached_result("net", "bad", "eth0"), Err(Error::CacheDecode { .. })));
    }
}
