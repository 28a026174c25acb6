//! The gRPC server: `RuntimeService` and `ImageService` of CRI `runtime.v1` on a unix
//! socket. [`serve`] binds the socket (mode 0660, a stale file from a dead server replaced),
//! answers until `shutdown` resolves, and removes the socket.
//!
//! - `runtime_service` — version, status, runtime config; the sandbox and container RPCs.
//! - `image_service` — the image RPCs over the `images` store (`image_lookup` finds and
//!   describes images, `pull_auth` turns a CRI `AuthConfig` into credentials, `fs_usage`
//!   measures the store).
//! - `status` — our errors as gRPC statuses.

mod fs_usage;
pub(crate) mod image_lookup;
mod image_service;
mod pull_auth;
mod runtime_service;
mod status;

use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use cri_api::runtime::v1::image_service_server::ImageServiceServer;
use cri_api::runtime::v1::runtime_service_server::RuntimeServiceServer;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tracing::{info, warn};

pub use image_service::{ImageServiceError, Images};
pub use runtime_service::Runtime;

use super::config::CriConfig;

/// Kubelet sends and accepts messages up to 16 MiB (a `ListContainers` of a busy node).
const MAX_MESSAGE: usize = 16 << 20;
/// After `shutdown`, requests under way get this long to finish before the server stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("socket {}: creating its directory {}: {source}", socket.display(), dir.display())]
    SocketDir { socket: PathBuf, dir: PathBuf, source: io::Error },
    #[error("socket {}: another server is listening on it", .0.display())]
    InUse(PathBuf),
    #[error("socket {}: exists and is not a socket; not replacing it", .0.display())]
    NotASocket(PathBuf),
    #[error("socket {}: {what}: {source}", socket.display())]
    Socket { socket: PathBuf, what: &'static str, source: io::Error },
    #[error(transparent)]
    Images(#[from] ImageServiceError),
    #[error(transparent)]
    Start(#[from] runtime_service::StartError),
    #[error("streaming server on {address}: {source}")]
    Streaming { address: std::net::SocketAddr, source: io::Error },
    #[error("serving {}: {source}", socket.display())]
    Transport { socket: PathBuf, source: tonic::transport::Error },
}

/// Serves both CRI services on `config.socket` until `shutdown` resolves, then removes the
/// socket. Must run inside a tokio runtime (a multi-thread one: pulls and store walks run
/// on blocking threads, and requests run concurrently).
pub async fn serve(config: CriConfig, shutdown: impl Future<Output = ()> + Send) -> Result<(), ServeError> {
    let listener = bind(&config.socket)?;
    let socket = config.socket.clone();
    let result = serve_on(listener, config, shutdown).await;
    if let Err(e) = std::fs::remove_file(&socket)
        && e.kind() != io::ErrorKind::NotFound
    {
        warn!(socket = %socket.display(), "removing the socket: {e}");
    }
    result
}

/// Binds the unix socket at `path`: its directory created if missing, a stale socket file
/// (nobody answers on it) removed, the socket made mode 0660.
pub fn bind(path: &Path) -> Result<UnixListener, ServeError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|source| ServeError::SocketDir { socket: path.into(), dir: dir.into(), source })?;
    }
    remove_stale(path)?;
    let sock_err = |what| move |source| ServeError::Socket { socket: path.into(), what, source };
    let listener = UnixListener::bind(path).map_err(sock_err("binding"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(sock_err("setting mode 0660"))?;
    Ok(listener)
}

/// A socket file left by a server that died is removed; a live one, or a file that is not a
/// socket, is an error rather than something to delete.
fn remove_stale(path: &Path) -> Result<(), ServeError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(ServeError::Socket { socket: path.into(), what: "inspecting", source }),
    };
    if !meta.file_type().is_socket() {
        return Err(ServeError::NotASocket(path.into()));
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(ServeError::InUse(path.into()));
    }
    std::fs::remove_file(path).map_err(|source| ServeError::Socket { socket: path.into(), what: "removing the stale socket", source })
}

/// Serves on a bound listener until `shutdown` resolves (plus the grace period for requests
/// under way). The caller removes the socket file.
pub async fn serve_on(
    listener: UnixListener,
    config: CriConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let socket = config.socket.clone();
    let images = Images::new(&config)?;
    let streams_listener = tokio::net::TcpListener::bind(config.stream_address)
        .await
        .map_err(|source| ServeError::Streaming { address: config.stream_address, source })?;
    let stream_address = streams_listener.local_addr().map_err(|source| ServeError::Streaming { address: config.stream_address, source })?;
    let streams = crate::cri::streaming::Streams::new(stream_address);
    // Ends with this function: an exec or port-forward outliving the server has no owner.
    let streaming = AbortOnDrop(tokio::spawn(crate::cri::streaming::serve(streams_listener, streams.clone())));
    info!(address = %stream_address, "streaming server listening");
    let runtime = Runtime::new(config)?.with_streams(streams);
    let stopping = tokio::sync::Notify::new();
    let server = tonic::transport::Server::builder()
        .add_service(
            RuntimeServiceServer::new(runtime).max_decoding_message_size(MAX_MESSAGE).max_encoding_message_size(MAX_MESSAGE),
        )
        .add_service(
            ImageServiceServer::new(images).max_decoding_message_size(MAX_MESSAGE).max_encoding_message_size(MAX_MESSAGE),
        )
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
            shutdown.await;
            info!("shutting down the CRI server");
            stopping.notify_one();
        });
    let grace = async {
        stopping.notified().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    info!(socket = %socket.display(), "CRI server listening");
    let result = tokio::select! {
        result = server => result.map_err(|source| ServeError::Transport { socket, source }),
        () = grace => {
            warn!("requests still under way {SHUTDOWN_GRACE:?} after shutdown; stopping anyway");
            Ok(())
        }
    };
    drop(streaming);
    result
}

/// A task that is stopped when its handle goes, on every way out of `serve_on`.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
