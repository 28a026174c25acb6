//! CRI `ImageService` over the `images` store at `<root>/images`: list, status, pull,
//! remove (with garbage collection of what no image uses any more) and the store's
//! filesystem usage. Store work runs on blocking threads.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use cri_api::runtime::v1::image_service_server::ImageService;
use cri_api::runtime::v1::{
    FilesystemIdentifier, FilesystemUsage, ImageFsInfoRequest, ImageFsInfoResponse, ImageSpec, ImageStatusRequest,
    ImageStatusResponse, ListImagesRequest, ListImagesResponse, PullImageRequest, PullImageResponse, RemoveImageRequest,
    RemoveImageResponse, UInt64Value,
};
use images::digest::Digest;
use images::pull::{self, NoProgress, PullError};
use images::reference::{Reference, ReferenceError};
use images::registry::{Client, ClientConfig, Platform};
use images::store::{Store, StoreError};
use tokio::sync::RwLock;
use tonic::{Request, Response, Status};
use tracing::{debug, info, warn};

use super::{fs_usage, image_lookup, pull_auth};
use crate::cri::config::CriConfig;

#[derive(Debug, thiserror::Error)]
pub enum ImageServiceError {
    #[error("{rpc}: no image given in the image spec")]
    NoImage { rpc: &'static str },
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pull(#[from] PullError),
    #[error("auth config: {0}")]
    Auth(String),
    #[error("image {id}: config is not valid JSON: {source}")]
    Config { id: Digest, source: serde_json::Error },
    #[error("measuring the image store: {}: {source}", path.display())]
    Usage { path: PathBuf, source: std::io::Error },
    #[error("image store task failed: {0}")]
    Task(String),
}

/// What the image RPCs share.
struct ImageState {
    store: Store,
    hosts_dir: PathBuf,
    insecure: Vec<String>,
    /// Pulls hold it shared, garbage collection exclusively: a pull's blobs are unreferenced
    /// until its record is written, and must not be collected before.
    gc_lock: RwLock<()>,
}

/// The `ImageService` implementation; cheap to clone.
#[derive(Clone)]
pub struct Images {
    state: Arc<ImageState>,
}

impl Images {
    /// Opens (creating if needed) the store at `config.images_dir()`.
    pub fn new(config: &CriConfig) -> Result<Images, ImageServiceError> {
        let store = Store::open(config.images_dir())?;
        Ok(Images {
            state: Arc::new(ImageState {
                store,
                hosts_dir: config.hosts_dir.clone(),
                insecure: config.insecure_registries.clone(),
                gc_lock: RwLock::new(()),
            }),
        })
    }

    /// Runs `f` on the store on a blocking thread.
    async fn on_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, ImageServiceError> + Send + 'static,
    ) -> Result<T, ImageServiceError> {
        let store = self.state.store.clone();
        tokio::task::spawn_blocking(move || f(&store)).await.map_err(|e| ImageServiceError::Task(e.to_string()))?
    }

    async fn pull(&self, req: PullImageRequest) -> Result<PullImageResponse, ImageServiceError> {
        let spec = wanted(req.image.as_ref(), "PullImage")?;
        let reference = Reference::parse(&spec)?;
        let auth = pull_auth::pull_auth(req.auth.as_ref(), &reference)?;
        let hosts_dir = self.state.hosts_dir.is_dir().then(|| self.state.hosts_dir.clone());
        let client = Client::new(ClientConfig {
            hosts_dir,
            insecure: self.state.insecure.clone(),
            credentials: auth.credentials,
            registry_token: auth.registry_token,
            ..Default::default()
        });
        let _no_gc = self.state.gc_lock.read().await;
        info!(image = %reference, "pulling");
        let record = pull::pull(&self.state.store, &client, &reference, &Platform::host(), &NoProgress).await?;
        info!(image = %reference, id = %record.config, manifest = %record.manifest, "pulled");
        Ok(PullImageResponse { image_ref: record.config.to_string() })
    }

    async fn remove(&self, req: RemoveImageRequest) -> Result<RemoveImageResponse, ImageServiceError> {
        let spec = wanted(req.image.as_ref(), "RemoveImage")?;
        let removed = self
            .on_store(move |store| {
                let Some(image) = image_lookup::find(store, &spec)? else { return Ok(None) };
                // Like containerd: the image goes with all its names, whichever one was given.
                for record in &image.records {
                    match store.remove_record(&record.name) {
                        Ok(_) | Err(StoreError::RecordNotFound(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(Some(image.id))
            })
            .await?;
        let Some(id) = removed else { return Ok(RemoveImageResponse {}) };
        info!(%id, "removed image");
        // The image is gone either way; a failed collection leaves content for the next one.
        let _gc = self.state.gc_lock.write().await;
        match self.on_store(|store| Ok(store.gc()?)).await {
            Ok(report) => debug!(
                blobs = report.blobs_removed.len(),
                snapshots = report.snapshots_removed.len(),
                bytes = report.bytes_freed,
                "collected"
            ),
            Err(e) => warn!("collecting the content of removed image {id}: {e}"),
        }
        Ok(RemoveImageResponse {})
    }
}

/// The image a request names, which must be given.
fn wanted(spec: Option<&ImageSpec>, rpc: &'static str) -> Result<String, ImageServiceError> {
    match spec.map(|s| s.image.trim()) {
        Some(image) if !image.is_empty() => Ok(image.to_string()),
        _ => Err(ImageServiceError::NoImage { rpc }),
    }
}

fn now_nanos() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

#[tonic::async_trait]
impl ImageService for Images {
    async fn list_images(&self, request: Request<ListImagesRequest>) -> Result<Response<ListImagesResponse>, Status> {
        let filter = request.into_inner().filter.and_then(|f| f.image).map(|s| s.image).filter(|s| !s.is_empty());
        let images = self
            .on_store(move |store| {
                let found = match filter {
                    Some(spec) => image_lookup::find(store, &spec)?.into_iter().collect(),
                    None => image_lookup::all(store)?,
                };
                // One damaged image (its config unreadable) must not hide the others.
                let described = found.iter().filter_map(|image| match image_lookup::describe(store, image) {
                    Ok(i) => Some(i),
                    Err(e) => {
                        warn!(id = %image.id, "not listing image: {e}");
                        None
                    }
                });
                Ok(described.collect::<Vec<_>>())
            })
            .await?;
        Ok(Response::new(ListImagesResponse { images }))
    }

    async fn image_status(&self, request: Request<ImageStatusRequest>) -> Result<Response<ImageStatusResponse>, Status> {
        let req = request.into_inner();
        let spec = wanted(req.image.as_ref(), "ImageStatus")?;
        let response = self
            .on_store(move |store| {
                // An image that is not here is an empty answer, not an error.
                let Some(image) = image_lookup::find(store, &spec)? else { return Ok(ImageStatusResponse::default()) };
                let mut info = HashMap::new();
                if req.verbose {
                    info.insert("info".to_string(), image_lookup::verbose_info(store, &image)?);
                }
                Ok(ImageStatusResponse { image: Some(image_lookup::describe(store, &image)?), info })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn pull_image(&self, request: Request<PullImageRequest>) -> Result<Response<PullImageResponse>, Status> {
        Ok(Response::new(self.pull(request.into_inner()).await?))
    }

    async fn remove_image(&self, request: Request<RemoveImageRequest>) -> Result<Response<RemoveImageResponse>, Status> {
        Ok(Response::new(self.remove(request.into_inner()).await?))
    }

    async fn image_fs_info(&self, _: Request<ImageFsInfoRequest>) -> Result<Response<ImageFsInfoResponse>, Status> {
        let usage = self.on_store(|store| fs_usage::usage(store.root())).await?;
        let usage = FilesystemUsage {
            timestamp: now_nanos(),
            fs_id: Some(FilesystemIdentifier { mountpoint: self.state.store.root().display().to_string() }),
            used_bytes: Some(UInt64Value { value: usage.bytes }),
            inodes_used: Some(UInt64Value { value: usage.inodes }),
        };
        // Containers' writable layers are not on a separate filesystem: no container_filesystems.
        Ok(Response::new(ImageFsInfoResponse { image_filesystems: vec![usage], container_filesystems: Vec::new() }))
    }
}
