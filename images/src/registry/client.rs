//! The registry client: resolves a reference to a verified manifest for one platform and
//! streams blobs into a caller's sink with size and digest checks. Each registry's
//! endpoints (mirrors, then the registry) come from `hosts`; auth from `auth`.

use std::collections::HashMap;
use std::io::{self, Seek, Write};

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncSeekExt, AsyncWrite, AsyncWriteExt};

use oci_spec::image::{Descriptor, ImageManifest};
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION, RANGE, WWW_AUTHENTICATE,
};
use reqwest::{StatusCode, Url};
use tracing::{debug, warn};

use super::auth::{self, AuthError, Credential, Credentials, Scheme, TokenCache, TokenResponse};
use super::hosts::{self, Endpoint, HostsError};
use super::manifest::{self, Kind, ManifestError, Platform};
use crate::digest::{Digest, DigestWriter};
use crate::reference::Reference;

/// Manifests larger than this are refused (the distribution spec suggests 4 MiB).
const MAX_MANIFEST: usize = 4 << 20;
const MAX_REDIRECTS: usize = 10;

#[derive(Clone)]
pub struct ClientConfig {
    /// A directory of `<registry>/hosts.toml` files; none means each registry directly.
    pub hosts_dir: Option<PathBuf>,
    /// Registries (as named, or `host:port`) to reach over plain HTTP without a hosts file.
    pub insecure: Vec<String>,
    pub credentials: Arc<dyn Credentials>,
    /// A bearer token for the registry given by the caller (CRI `AuthConfig.registry_token`):
    /// sent to the registry's own endpoints, never to mirrors, until a challenge is answered
    /// with a token of our own.
    pub registry_token: Option<String>,
    /// Retries of one request after a transient failure (connect error, 5xx, 429, a
    /// connection lost mid-body).
    pub retries: u32,
    /// The first retry waits this long; each further one twice as long (up to 10 s).
    pub retry_delay: Duration,
    pub connect_timeout: Duration,
    /// How long a response may stall between reads.
    pub read_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            hosts_dir: None,
            insecure: Vec::new(),
            credentials: Arc::new(auth::Anonymous),
            registry_token: None,
            retries: 4,
            retry_delay: Duration::from_millis(250),
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Hosts(#[from] HostsError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{url}: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("{url}: registry answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
        /// The registry's `Retry-After` in seconds, if it sent one.
        retry_after: Option<u64>,
    },
    #[error("{url}: unauthorized: {detail}")]
    Unauthorized { url: String, detail: String },
    #[error("{url}: token request to {realm} failed: {detail}")]
    Token { url: String, realm: String, detail: String },
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { what: String, expected: Digest, actual: Digest },
    #[error("blob {digest}: size mismatch: descriptor says {expected} bytes, registry sent {actual}")]
    SizeMismatch { digest: Digest, expected: u64, actual: u64 },
    #[error("{url}: response ended after {got} of {expected} bytes")]
    ShortBody { url: String, got: u64, expected: u64 },
    #[error("{url}: manifest larger than {MAX_MANIFEST} bytes")]
    ManifestTooLarge { url: String },
    #[error("{url}: more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects { url: String },
    #[error("{url}: redirect without a valid location")]
    BadRedirect { url: String },
    #[error("{reference}: no endpoint in the host config may {action}")]
    NoEndpoint { reference: String, action: &'static str },
    #[error("descriptor in {reference} has an unsupported digest {value:?}")]
    DescriptorDigest { reference: String, value: String },
    #[error("blob {digest}: writing to the sink: {source}")]
    Sink { digest: Digest, source: io::Error },
    #[error("blob {digest}: the download restarted from the beginning but the sink cannot be rewound")]
    NotRewindable { digest: Digest },
    #[error("ca certificate {path}: {detail}")]
    Ca { path: PathBuf, detail: String },
}

impl RegistryError {
    /// Failures worth another try of the same request.
    fn is_transient(&self) -> bool {
        match self {
            RegistryError::Http { source, .. } => {
                // A connection lost mid-body surfaces as a decode error wrapping a body error.
                source.is_connect()
                    || source.is_timeout()
                    || source.is_body()
                    || source.is_decode()
                    || source.is_request()
            }
            RegistryError::Status { status, .. } => *status >= 500 || *status == 429,
            RegistryError::ShortBody { .. } => true,
            _ => false,
        }
    }
}

/// Where blob bytes go. `restart` empties the sink when a download must start over; a sink
/// that cannot (returns false) makes such a download fail.
pub trait BlobSink: Write + Send {
    fn restart(&mut self) -> io::Result<bool>;
}

impl BlobSink for Vec<u8> {
    fn restart(&mut self) -> io::Result<bool> {
        self.clear();
        Ok(true)
    }
}

impl BlobSink for std::fs::File {
    fn restart(&mut self) -> io::Result<bool> {
        self.set_len(0)?;
        self.rewind()?;
        Ok(true)
    }
}

/// An async sink for `fetch_blob_async`; `restart` as for `BlobSink`.
pub trait AsyncBlobSink: AsyncWrite + Unpin + Send {
    fn restart(&mut self) -> impl Future<Output = io::Result<bool>> + Send;
}

impl AsyncBlobSink for Vec<u8> {
    async fn restart(&mut self) -> io::Result<bool> {
        self.clear();
        Ok(true)
    }
}

impl AsyncBlobSink for tokio::fs::File {
    async fn restart(&mut self) -> io::Result<bool> {
        self.set_len(0).await?;
        self.rewind().await?;
        Ok(true)
    }
}

/// The two kinds of sink as the download code sees them.
trait Out: Send {
    fn put(&mut self, bytes: &[u8]) -> impl Future<Output = io::Result<()>> + Send;
    fn restart(&mut self) -> impl Future<Output = io::Result<bool>> + Send;
    /// Called once the blob is complete and verified.
    fn done(&mut self) -> impl Future<Output = io::Result<()>> + Send;
}

struct SyncOut<'s>(&'s mut dyn BlobSink);

impl Out for SyncOut<'_> {
    async fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.write_all(bytes)
    }
    async fn restart(&mut self) -> io::Result<bool> {
        self.0.restart()
    }
    async fn done(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

struct AsyncOut<'s, W>(&'s mut W);

impl<W: AsyncBlobSink> Out for AsyncOut<'_, W> {
    async fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.write_all(bytes).await
    }

    async fn done(&mut self) -> io::Result<()> {
        self.0.flush().await
    }
    async fn restart(&mut self) -> io::Result<bool> {
        // Buffered bytes must land before the sink is emptied, not after.
        self.0.flush().await?;
        AsyncBlobSink::restart(self.0).await
    }
}

/// An image resolved for one platform: the manifest, verified, and what it points to.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The reference as asked for, pinned to the digest the tag resolved to (the index's
    /// digest for a multi-platform image).
    pub reference: Reference,
    /// The index (or manifest list) digest when the reference named one.
    pub index_digest: Option<Digest>,
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    /// The manifest exactly as served; its sha256 is `manifest_digest`.
    pub manifest_bytes: Vec<u8>,
    pub manifest: ImageManifest,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

pub struct Client {
    config: ClientConfig,
    tokens: TokenCache,
    /// HTTP clients by TLS settings (skip_verify, CA files).
    http: Mutex<HashMap<(bool, Vec<PathBuf>), reqwest::Client>>,
}

/// One endpoint as used for one repository.
struct Target<'a> {
    ep: &'a Endpoint,
    base: Url,
    http: reqwest::Client,
    registry: &'a str,
    scope: String,
}

impl Client {
    pub fn new(config: ClientConfig) -> Client {
        Client { config, tokens: TokenCache::default(), http: Mutex::new(HashMap::new()) }
    }

    /// Resolves `reference` to the manifest for `platform`, verifying every digest.
    pub async fn resolve(&self, reference: &Reference, platform: &Platform) -> Result<Resolved, RegistryError> {
        let by_digest = reference.digest().is_some();
        let eps = self.endpoints(reference, if by_digest { "pull" } else { "resolve" })?;
        let mut last = None;
        for ep in &eps {
            let target = self.target(ep, reference)?;
            match self.resolve_at(&target, reference, platform).await {
                Ok(r) => return Ok(r),
                Err(e) => {
                    warn!(endpoint = %ep.base(), error = %e, "resolving {reference} failed");
                    last = Some(e);
                }
            }
        }
        Err(last.expect("at least one endpoint"))
    }

    /// Streams the blob `desc` of `reference`'s repository into `sink`, resuming with a
    /// Range request after a dropped connection where the registry allows it. On success
    /// the sink holds exactly the blob; its size and digest have been checked. On failure
    /// the sink has been restarted (emptied) where it can be.
    pub async fn fetch_blob(
        &self,
        reference: &Reference,
        desc: &Descriptor,
        sink: &mut dyn BlobSink,
    ) -> Result<(), RegistryError> {
        self.fetch_blob_into(reference, desc, &mut SyncOut(sink)).await
    }

    /// As `fetch_blob`, into an async writer (a `tokio::fs::File`, a pipe to a decompressor).
    pub async fn fetch_blob_async<W: AsyncBlobSink>(
        &self,
        reference: &Reference,
        desc: &Descriptor,
        sink: &mut W,
    ) -> Result<(), RegistryError> {
        self.fetch_blob_into(reference, desc, &mut AsyncOut(sink)).await
    }

    async fn fetch_blob_into<O: Out>(
        &self,
        reference: &Reference,
        desc: &Descriptor,
        out: &mut O,
    ) -> Result<(), RegistryError> {
        let digest = descriptor_digest(reference, desc)?;
        let eps = self.endpoints(reference, "pull")?;
        let mut last = None;
        for ep in &eps {
            let target = self.target(ep, reference)?;
            match self.fetch_blob_at(&target, reference, &digest, desc.size(), out).await {
                Ok(()) => {
                    return out.done().await.map_err(|source| RegistryError::Sink { digest: digest.clone(), source });
                }
                Err(e) => {
                    warn!(endpoint = %ep.base(), error = %e, "fetching blob {digest} failed");
                    let rewound =
                        out.restart().await.map_err(|source| RegistryError::Sink { digest: digest.clone(), source })?;
                    if !rewound {
                        return Err(e);
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.expect("at least one endpoint"))
    }

    fn endpoints(&self, reference: &Reference, action: &'static str) -> Result<Vec<Endpoint>, RegistryError> {
        let eps: Vec<Endpoint> =
            hosts::endpoints(self.config.hosts_dir.as_deref(), reference.registry(), &self.config.insecure)?
                .into_iter()
                .filter(|e| if action == "pull" { e.pull } else { e.resolve })
                .collect();
        if eps.is_empty() {
            return Err(RegistryError::NoEndpoint { reference: reference.to_string(), action });
        }
        Ok(eps)
    }

    fn target<'a>(&self, ep: &'a Endpoint, reference: &'a Reference) -> Result<Target<'a>, RegistryError> {
        let base = Url::parse(&ep.base()).map_err(|_| RegistryError::BadRedirect { url: ep.base() })?;
        Ok(Target {
            ep,
            base,
            http: self.http_client(ep)?,
            registry: reference.registry(),
            scope: format!("repository:{}:pull", reference.repository()),
        })
    }

    fn http_client(&self, ep: &Endpoint) -> Result<reqwest::Client, RegistryError> {
        let key = (ep.skip_verify, ep.ca.clone());
        let mut cache = self.http.lock().unwrap();
        if let Some(c) = cache.get(&key) {
            return Ok(c.clone());
        }
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.config.connect_timeout)
            .read_timeout(self.config.read_timeout)
            .user_agent(concat!("kubelet-rs/", env!("CARGO_PKG_VERSION")))
            .danger_accept_invalid_certs(ep.skip_verify);
        for path in &ep.ca {
            let pem =
                std::fs::read(path).map_err(|e| RegistryError::Ca { path: path.clone(), detail: e.to_string() })?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| RegistryError::Ca { path: path.clone(), detail: e.to_string() })?;
            b = b.add_root_certificate(cert);
        }
        let c = b.build().map_err(|source| RegistryError::Http { url: ep.base(), source })?;
        cache.insert(key, c.clone());
        Ok(c)
    }

    async fn resolve_at(&self, t: &Target<'_>, r: &Reference, platform: &Platform) -> Result<Resolved, RegistryError> {
        let (body, content_type, header_digest) = self.get_manifest(t, r, &r.manifest_ref()).await?;
        let digest = Digest::of(&body);
        if let Some(want) = r.digest() {
            if &digest != want {
                return Err(RegistryError::DigestMismatch {
                    what: format!("manifest {r}"),
                    expected: want.clone(),
                    actual: digest,
                });
            }
        } else if let Some(h) = header_digest.and_then(|h| h.parse::<Digest>().ok())
            && h != digest
        {
            return Err(RegistryError::DigestMismatch {
                what: format!("manifest {r} (Docker-Content-Digest header)"),
                expected: h,
                actual: digest,
            });
        }
        let pinned = r.with_digest(digest.clone());
        let (index_digest, manifest_digest, media_type, bytes) =
            match manifest::kind(content_type.as_deref(), &body, &digest)? {
                Kind::Manifest => (None, digest, content_type, body),
                Kind::Index => {
                    let desc = manifest::select_platform(&body, &digest, platform)?;
                    let want = descriptor_digest(r, &desc)?;
                    debug!(%platform, manifest = %want, "picked from index {digest}");
                    let (m, ct, _) = self.get_manifest(t, r, &want.to_string()).await?;
                    let got = Digest::of(&m);
                    if got != want {
                        return Err(RegistryError::DigestMismatch {
                            what: format!("manifest {want} of {r}"),
                            expected: want,
                            actual: got,
                        });
                    }
                    if m.len() as u64 != desc.size() {
                        return Err(RegistryError::SizeMismatch {
                            digest: want,
                            expected: desc.size(),
                            actual: m.len() as u64,
                        });
                    }
                    if manifest::kind(ct.as_deref(), &m, &want)? != Kind::Manifest {
                        return Err(ManifestError::MediaType {
                            digest: want,
                            media_type: "an index inside an index".into(),
                        }
                        .into());
                    }
                    (Some(digest), want, ct, m)
                }
            };
        let parsed = manifest::parse_manifest(&bytes, &manifest_digest)?;
        let media_type = media_type
            .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
            .filter(|c| c != "application/json" && !c.is_empty())
            .or_else(|| parsed.media_type().as_ref().map(|m| m.to_string()))
            .unwrap_or_else(|| manifest::OCI_MANIFEST.into());
        Ok(Resolved {
            reference: pinned,
            index_digest,
            manifest_digest,
            manifest_media_type: media_type,
            config: parsed.config().clone(),
            layers: parsed.layers().clone(),
            manifest: parsed,
            manifest_bytes: bytes,
        })
    }

    /// GETs `/v2/<repo>/manifests/<what>`: body, Content-Type, Docker-Content-Digest.
    async fn get_manifest(
        &self,
        t: &Target<'_>,
        r: &Reference,
        what: &str,
    ) -> Result<(Vec<u8>, Option<String>, Option<String>), RegistryError> {
        let url = format!("{}/{}/manifests/{what}", t.ep.base(), r.repository());
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(manifest::ACCEPT));
        self.with_retries(&url, || async {
            let mut resp = self.send(t, &url, headers.clone()).await?;
            check_status(&url, &mut resp, &[StatusCode::OK]).await?;
            let header = |n: &str| resp.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
            let ct = header(CONTENT_TYPE.as_str());
            let dcd = header("docker-content-digest");
            if resp.content_length().is_some_and(|l| l as usize > MAX_MANIFEST) {
                return Err(RegistryError::ManifestTooLarge { url: url.clone() });
            }
            let mut body = Vec::new();
            while let Some(chunk) =
                resp.chunk().await.map_err(|source| RegistryError::Http { url: url.clone(), source })?
            {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_MANIFEST {
                    return Err(RegistryError::ManifestTooLarge { url: url.clone() });
                }
            }
            Ok((body, ct, dcd))
        })
        .await
    }

    async fn fetch_blob_at<O: Out>(
        &self,
        t: &Target<'_>,
        r: &Reference,
        digest: &Digest,
        size: u64,
        out: &mut O,
    ) -> Result<(), RegistryError> {
        let url = format!("{}/{}/blobs/{digest}", t.ep.base(), r.repository());
        // Hashes what has gone to `out`; replaced when the download starts over.
        let mut hash = DigestWriter::new(io::sink());
        let mut attempt = 0;
        loop {
            match self.blob_attempt(t, &url, digest, size, &mut hash, out).await {
                Ok(()) => break,
                Err(e) if e.is_transient() && attempt < self.config.retries => {
                    let delay = self.backoff(attempt, &e);
                    attempt += 1;
                    warn!(%url, error = %e, offset = hash.written(), "blob download interrupted; retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(e),
            }
        }
        let (got, n, _) = hash.finish();
        if n != size {
            return Err(RegistryError::SizeMismatch { digest: digest.clone(), expected: size, actual: n });
        }
        if &got != digest {
            return Err(RegistryError::DigestMismatch {
                what: format!("blob {digest} of {r}"),
                expected: digest.clone(),
                actual: got,
            });
        }
        Ok(())
    }

    /// One GET of a blob, from where `hash` stands (Range) or from the start.
    async fn blob_attempt<O: Out>(
        &self,
        t: &Target<'_>,
        url: &str,
        digest: &Digest,
        size: u64,
        hash: &mut DigestWriter<io::Sink>,
        out: &mut O,
    ) -> Result<(), RegistryError> {
        let sink_err = |source| RegistryError::Sink { digest: digest.clone(), source };
        let offset = hash.written();
        let mut headers = HeaderMap::new();
        if offset > 0 {
            headers.insert(RANGE, HeaderValue::from_str(&format!("bytes={offset}-")).unwrap());
        }
        let mut resp = self.send(t, url, headers).await?;
        check_status(url, &mut resp, &[StatusCode::OK, StatusCode::PARTIAL_CONTENT]).await?;
        let resumed = resp.status() == StatusCode::PARTIAL_CONTENT
            && resp
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with(&format!("bytes {offset}-")));
        if offset > 0 && !resumed {
            debug!(%url, offset, "registry did not resume; starting over");
            if !out.restart().await.map_err(sink_err)? {
                return Err(RegistryError::NotRewindable { digest: digest.clone() });
            }
            *hash = DigestWriter::new(io::sink());
            if resp.status() == StatusCode::PARTIAL_CONTENT {
                // A range we did not ask for: try again from the start.
                return Err(RegistryError::ShortBody { url: url.into(), got: 0, expected: size });
            }
        }
        while let Some(chunk) = resp.chunk().await.map_err(|source| RegistryError::Http { url: url.into(), source })? {
            let actual = hash.written() + chunk.len() as u64;
            if actual > size {
                return Err(RegistryError::SizeMismatch { digest: digest.clone(), expected: size, actual });
            }
            out.put(&chunk).await.map_err(sink_err)?;
            hash.write_all(&chunk).map_err(sink_err)?;
        }
        if hash.written() < size {
            return Err(RegistryError::ShortBody { url: url.into(), got: hash.written(), expected: size });
        }
        Ok(())
    }

    /// The wait before retry `attempt` after `e`: exponential, but at least what a 429 or
    /// 503 asked for in `Retry-After` (capped, so a registry cannot park a pull for hours).
    fn backoff(&self, attempt: u32, e: &RegistryError) -> Duration {
        let exp = (self.config.retry_delay * 2u32.saturating_pow(attempt)).min(Duration::from_secs(10));
        match e {
            RegistryError::Status { retry_after: Some(s), .. } => exp.max(Duration::from_secs((*s).min(60))),
            _ => exp,
        }
    }

    async fn with_retries<T, F, Fut>(&self, url: &str, mut f: F) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        let mut attempt = 0;
        loop {
            match f().await {
                Err(e) if e.is_transient() && attempt < self.config.retries => {
                    let delay = self.backoff(attempt, &e);
                    attempt += 1;
                    warn!(%url, error = %e, "transient failure; retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                }
                other => return other,
            }
        }
    }

    /// GET with auth: cached credentials first; on 401 answer the challenge once and retry.
    async fn send(&self, t: &Target<'_>, url: &str, headers: HeaderMap) -> Result<reqwest::Response, RegistryError> {
        let mut answered = false;
        loop {
            let resp = self.follow(t, url, headers.clone()).await?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            let challenge = resp.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).map(str::to_string);
            if answered {
                return Err(RegistryError::Unauthorized {
                    url: url.into(),
                    detail: format!("credentials refused (challenge {:?})", challenge.unwrap_or_default()),
                });
            }
            answered = true;
            let Some(challenge) = challenge else {
                return Err(RegistryError::Unauthorized {
                    url: url.into(),
                    detail: "401 without www-authenticate".into(),
                });
            };
            self.answer(t, url, &challenge).await?;
        }
    }

    /// Credentials for the host contacted. A mirror gets only its own, never those of the
    /// registry it mirrors (Docker Hub credentials must not go to a local cache).
    fn credential(&self, t: &Target<'_>) -> Option<Credential> {
        let own = self.config.credentials.lookup(&t.ep.host);
        if t.ep.mirror { own } else { own.or_else(|| self.config.credentials.lookup(t.registry)) }
    }

    async fn answer(&self, t: &Target<'_>, url: &str, header: &str) -> Result<(), RegistryError> {
        let challenges = auth::parse_challenges(header)?;
        let cred = self.credential(t);
        if let Some(c) = challenges.iter().find(|c| c.scheme == Scheme::Bearer) {
            let realm = c.param("realm").ok_or_else(|| RegistryError::Unauthorized {
                url: url.into(),
                detail: format!("bearer challenge without realm: {header:?}"),
            })?;
            let token_err = |detail: String| RegistryError::Token { url: url.into(), realm: realm.into(), detail };
            let realm_url = Url::parse(realm).map_err(|e| token_err(format!("invalid realm: {e}")))?;
            let mut query: Vec<(&str, &str)> = Vec::new();
            if let Some(s) = c.param("service") {
                query.push(("service", s));
            }
            query.push(("scope", &t.scope));
            let mut req = t.http.get(realm_url).query(&query);
            if let Some(cred) = &cred {
                req = req.basic_auth(&cred.username, Some(&cred.password));
            }
            let resp = req.send().await.map_err(|e| token_err(e.to_string()))?;
            let status = resp.status();
            if !status.is_success() {
                let body = resp.text().await.unwrap_or_default();
                return Err(token_err(format!("{status}: {}", brief(&body))));
            }
            let body = resp.bytes().await.map_err(|e| token_err(e.to_string()))?;
            let tr: TokenResponse =
                serde_json::from_slice(&body).map_err(|e| token_err(format!("invalid token response: {e}")))?;
            let token = tr
                .token
                .or(tr.access_token)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| token_err("no token in response".into()))?;
            self.tokens.store_bearer(&t.ep.host, &t.scope, token, tr.expires_in);
            return Ok(());
        }
        if challenges.iter().any(|c| c.scheme == Scheme::Basic) {
            let Some(cred) = cred else {
                return Err(RegistryError::Unauthorized {
                    url: url.into(),
                    detail: format!("registry asks for basic auth and no credentials are configured for {}", t.ep.host),
                });
            };
            self.tokens.store_basic(&t.ep.host, cred);
            return Ok(());
        }
        Err(RegistryError::Unauthorized { url: url.into(), detail: format!("unsupported challenge {header:?}") })
    }

    /// One GET, following redirects by hand so credentials go only to the endpoint's own
    /// origin (a CDN on another host gets a signed URL, not our token).
    async fn follow(&self, t: &Target<'_>, url: &str, headers: HeaderMap) -> Result<reqwest::Response, RegistryError> {
        let mut current = Url::parse(url).map_err(|_| RegistryError::BadRedirect { url: url.into() })?;
        for _ in 0..=MAX_REDIRECTS {
            let mut req = t.http.get(current.clone()).headers(headers.clone());
            if same_origin(&current, &t.base) {
                if let Some(tok) = self.tokens.bearer(&t.ep.host, &t.scope) {
                    req = req.bearer_auth(tok);
                } else if let Some(c) = self.tokens.basic(&t.ep.host) {
                    req = req.header(AUTHORIZATION, c.basic_header());
                } else if let Some(tok) = self.config.registry_token.as_ref().filter(|_| !t.ep.mirror) {
                    req = req.bearer_auth(tok);
                }
            }
            let resp = req.send().await.map_err(|source| RegistryError::Http { url: current.to_string(), source })?;
            if !resp.status().is_redirection() || resp.status() == StatusCode::NOT_MODIFIED {
                return Ok(resp);
            }
            let next = resp
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| current.join(l).ok())
                .ok_or_else(|| RegistryError::BadRedirect { url: current.to_string() })?;
            debug!(from = %current, to = %next, "redirect");
            current = next;
        }
        Err(RegistryError::TooManyRedirects { url: url.into() })
    }
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme() && a.host_str() == b.host_str() && a.port_or_known_default() == b.port_or_known_default()
}

async fn check_status(url: &str, resp: &mut reqwest::Response, ok: &[StatusCode]) -> Result<(), RegistryError> {
    if ok.contains(&resp.status()) {
        return Ok(());
    }
    let status = resp.status().as_u16();
    let retry_after =
        resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
    let mut body = Vec::new();
    while let Ok(Some(c)) = resp.chunk().await {
        body.extend_from_slice(&c);
        if body.len() > 1024 {
            break;
        }
    }
    Err(RegistryError::Status { url: url.into(), status, body: brief(&String::from_utf8_lossy(&body)), retry_after })
}

fn brief(s: &str) -> String {
    let s = s.trim();
    if s.len() > 300 {
        let mut end = 300;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s.to_string()
    }
}

fn descriptor_digest(r: &Reference, d: &Descriptor) -> Result<Digest, RegistryError> {
    let value = d.digest().to_string();
    value.parse().map_err(|_| RegistryError::DescriptorDigest { reference: r.to_string(), value })
}
