//! Pulling an image into the store: resolve the reference for a platform, store the
//! manifest and config (verified), download the layers concurrently into the store,
//! unpack each into its snapshot and check its diffID against the config, and write the
//! image record last, so a failed pull leaves no record (its leftovers go with `gc`).

use std::future::{Future, poll_fn};
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use oci_spec::image::Descriptor;
use tokio::io::AsyncWrite;
use tokio::sync::Semaphore;
use tracing::debug;

use crate::digest::Digest;
use crate::reference::Reference;
use crate::registry::{AsyncBlobSink, Client, Platform, RegistryError};
use crate::store::{ImageRecord, Store, StoreError};

/// One layer's download and unpack, run alongside the others.
type Job<'a, T> = Pin<Box<dyn Future<Output = Result<T, PullError>> + Send + 'a>>;

/// How many layers download at once.
const CONCURRENT_LAYERS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("pull {reference}: {source}")]
    Registry { reference: String, source: Box<RegistryError> },
    #[error("pull {reference}: {source}")]
    Store { reference: String, source: StoreError },
    #[error("pull {reference}: blob {digest}: temp file {path}: {source}")]
    Temp { reference: String, digest: Digest, path: PathBuf, source: io::Error },
    #[error("pull {reference}: config {digest}: {detail}")]
    Config { reference: String, digest: Digest, detail: String },
    #[error("pull {reference}: layer descriptor has an unsupported digest {value:?}")]
    LayerDigest { reference: String, value: String },
    #[error("pull {reference}: manifest {manifest} has {layers} layers but its config lists {diff_ids} diffIDs")]
    LayerCount { reference: String, manifest: Digest, layers: usize, diff_ids: usize },
    #[error("pull {reference}: layer {layer}: unpacked diffID {actual} does not match the config's {expected}")]
    DiffId { reference: String, layer: Digest, expected: Digest, actual: Digest },
    #[error("pull {reference}: a store task failed: {detail}")]
    Task { reference: String, detail: String },
}

/// What a pull reports as it goes. Every method defaults to doing nothing.
pub trait Progress: Send + Sync {
    /// A layer download of `size` bytes starts.
    fn start(&self, _layer: &Digest, _size: u64) {}
    /// `bytes` more of `layer` arrived.
    fn advance(&self, _layer: &Digest, _bytes: u64) {}
    /// `layer` is in the store; `downloaded` is false if it already was.
    fn finish(&self, _layer: &Digest, _downloaded: bool) {}
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}

/// Pulls `reference` for `platform` into `store` and returns the record written. Layers
/// already in the store are not downloaded again, and snapshots already unpacked are kept.
pub async fn pull(
    store: &Store,
    client: &Client,
    reference: &Reference,
    platform: &Platform,
    progress: &dyn Progress,
) -> Result<ImageRecord, PullError> {
    let shown = reference.to_string();
    let reg = |source| PullError::Registry { reference: shown.clone(), source: Box::new(source) };
    let st = |source| PullError::Store { reference: shown.clone(), source };

    let resolved = client.resolve(reference, platform).await.map_err(reg)?;
    let manifest = resolved.manifest_digest.clone();
    debug!(%manifest, layers = resolved.layers.len(), "resolved {shown}");
    blocking(&shown, {
        let (store, digest, bytes) = (store.clone(), manifest.clone(), resolved.manifest_bytes.clone());
        move || store.ingest(&digest, bytes.len() as u64, &bytes[..]).map(drop)
    })
    .await?
    .map_err(st)?;

    let config = descriptor_digest(&shown, &resolved.config)?;
    let config_bytes = if store.has_blob(&config) {
        store.read_blob(&config).map_err(st)?
    } else {
        let mut buf = Vec::new();
        client.fetch_blob_async(reference, &resolved.config, &mut buf).await.map_err(reg)?;
        store.ingest(&config, buf.len() as u64, &buf[..]).map_err(st)?;
        buf
    };
    let diff_ids = diff_ids(&shown, &config, &config_bytes)?;
    if diff_ids.len() != resolved.layers.len() {
        return Err(PullError::LayerCount {
            reference: shown,
            manifest,
            layers: resolved.layers.len(),
            diff_ids: diff_ids.len(),
        });
    }

    let limit = Semaphore::new(CONCURRENT_LAYERS);
    let mut jobs: Vec<Job<'_, Digest>> = Vec::new();
    for (desc, expected) in resolved.layers.iter().zip(&diff_ids) {
        let (limit, shown) = (&limit, &shown);
        jobs.push(Box::pin(async move {
            let layer = descriptor_digest(shown, desc)?;
            {
                let _permit = limit.acquire().await.expect("semaphore never closed");
                fetch_layer(store, client, reference, shown, desc, &layer, progress).await?;
            }
            let unpacked = blocking(shown, {
                let (store, layer, media) = (store.clone(), layer.clone(), desc.media_type().to_string());
                move || store.unpack_layer(&layer, Some(&media))
            })
            .await?
            .map_err(|source| PullError::Store { reference: shown.clone(), source })?;
            if unpacked.diff_id != *expected {
                return Err(PullError::DiffId {
                    reference: shown.clone(),
                    layer,
                    expected: expected.clone(),
                    actual: unpacked.diff_id,
                });
            }
            Ok(layer)
        }));
    }
    let layers = try_join_all(jobs).await?;

    let name = record_name(reference);
    let record = ImageRecord { name, manifest, config, layers };
    store.put_record(&record).map_err(st)?;
    Ok(record)
}

/// The name an image is recorded under: the normalised reference, with `:latest` when it
/// had neither tag nor digest.
pub fn record_name(reference: &Reference) -> String {
    if reference.tag().is_none() && reference.digest().is_none() {
        format!("{}:latest", reference.name())
    } else {
        reference.to_string()
    }
}

/// Downloads one layer into the store unless it is there (holding the layer's store lock):
/// into a temp file in the store's
/// `tmp/` (the client verifies size and digest), then ingested, which checks again and
/// renames it into place.
async fn fetch_layer(
    store: &Store,
    client: &Client,
    reference: &Reference,
    shown: &str,
    desc: &Descriptor,
    layer: &Digest,
    progress: &dyn Progress,
) -> Result<(), PullError> {
    if store.has_blob(layer) {
        progress.finish(layer, false);
        return Ok(());
    }
    // Held across the download: another pull of this layer (in this process or another)
    // waits, then finds it stored, so the layer is downloaded once.
    let (store1, layer1) = (store.clone(), layer.clone());
    let lock = blocking(shown, move || store1.lock_blob(&layer1))
        .await?
        .map_err(|source| PullError::Store { reference: shown.into(), source })?;
    if store.has_blob(layer) {
        progress.finish(layer, false);
        return Ok(());
    }
    progress.start(layer, desc.size());
    let tmp = store.temp_path(&format!("pull-{}", layer.hex()));
    let temp_err = |source| PullError::Temp { reference: shown.into(), digest: layer.clone(), path: tmp.clone(), source };
    let result = async {
        let file = tokio::fs::File::create(&tmp).await.map_err(temp_err)?;
        let mut sink = Counting { inner: file, layer, progress };
        client
            .fetch_blob_async(reference, desc, &mut sink)
            .await
            .map_err(|source| PullError::Registry { reference: shown.into(), source: Box::new(source) })?;
        drop(sink);
        let (store2, layer2, tmp2, size) = (store.clone(), layer.clone(), tmp.clone(), desc.size());
        blocking(shown, move || {
            let file = std::fs::File::open(&tmp2).map_err(|e| StoreError::Io { path: tmp2.clone(), source: e })?;
            store2.ingest_locked(&lock, &layer2, size, io::BufReader::with_capacity(1 << 20, file)).map(drop)
        })
        .await?
        .map_err(|source| PullError::Store { reference: shown.into(), source })
    }
    .await;
    let _ = tokio::fs::remove_file(&tmp).await;
    result?;
    progress.finish(layer, true);
    Ok(())
}

/// A temp file that reports the bytes written to it.
struct Counting<'a> {
    inner: tokio::fs::File,
    layer: &'a Digest,
    progress: &'a dyn Progress,
}

impl AsyncWrite for Counting<'_> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.progress.advance(self.layer, *n as u64);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl AsyncBlobSink for Counting<'_> {
    async fn restart(&mut self) -> io::Result<bool> {
        AsyncBlobSink::restart(&mut self.inner).await
    }
}

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(shown: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<T, PullError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| PullError::Task { reference: shown.into(), detail: e.to_string() })
}

/// Runs `jobs` together; the first error wins and cancels the rest. Results keep the jobs'
/// order.
async fn try_join_all<'a, T>(
    mut jobs: Vec<Job<'a, T>>,
) -> Result<Vec<T>, PullError> {
    let mut results: Vec<Option<T>> = jobs.iter().map(|_| None).collect();
    let mut done = vec![false; jobs.len()];
    poll_fn(|cx| {
        for (i, job) in jobs.iter_mut().enumerate() {
            if done[i] {
                continue;
            }
            if let Poll::Ready(r) = job.as_mut().poll(cx) {
                done[i] = true;
                match r {
                    Ok(v) => results[i] = Some(v),
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
        }
        if done.iter().all(|d| *d) { Poll::Ready(Ok(())) } else { Poll::Pending }
    })
    .await?;
    Ok(results.into_iter().map(|r| r.expect("every job finished")).collect())
}

fn descriptor_digest(shown: &str, desc: &Descriptor) -> Result<Digest, PullError> {
    let value = desc.digest().to_string();
    value.parse().map_err(|_| PullError::LayerDigest { reference: shown.into(), value })
}

/// The config's `rootfs.diff_ids`, read loosely so Docker and OCI configs both work.
fn diff_ids(shown: &str, config: &Digest, bytes: &[u8]) -> Result<Vec<Digest>, PullError> {
    let err = |detail: String| PullError::Config { reference: shown.into(), digest: config.clone(), detail };
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| err(format!("not JSON: {e}")))?;
    let ids = v["rootfs"]["diff_ids"].as_array().ok_or_else(|| err("no rootfs.diff_ids".into()))?;
    ids.iter()
        .map(|id| {
            id.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| err(format!("invalid diffID {id}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_names_default_the_tag() {
        let r = |s| record_name(&Reference::parse(s).unwrap());
        assert_eq!(r("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(r("localhost:5000/app:v1"), "localhost:5000/app:v1");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(r(&format!("localhost:5000/app@{d}")), format!("localhost:5000/app@{d}"));
    }

    #[test]
    fn diff_ids_are_read_from_the_config() {
        let c = Digest::of(b"c");
        let id = Digest::of(b"layer");
        let json = format!(r#"{{"rootfs":{{"type":"layers","diff_ids":["{id}"]}}}}"#);
        assert_eq!(diff_ids("x", &c, json.as_bytes()).unwrap(), vec![id]);
        let e = diff_ids("x", &c, b"{}").unwrap_err().to_string();
        assert!(e.contains(&c.to_string()) && e.contains("rootfs.diff_ids"), "{e}");
    }
}
