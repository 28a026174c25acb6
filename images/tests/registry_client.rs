//! The registry client against a tiny in-process HTTP/1.1 server on loopback that plays a
//! registry: manifests and an index, blobs, Bearer and Basic auth, a redirect to another
//! "host" (port), a connection dropped mid-blob, a corrupt blob, transient 503s and mirrors.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use images::digest::Digest;
use images::reference::Reference;
use images::registry::{Client, ClientConfig, Credential, Platform, RegistryError, StaticCredentials};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

// ---- a minimal HTTP server -------------------------------------------------------------

#[derive(Debug, Clone)]
struct Req {
    path: String,
    headers: HashMap<String, String>,
}

impl Req {
    fn header(&self, n: &str) -> Option<&str> {
        self.headers.get(n).map(String::as_str)
    }
}

#[derive(Default)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Send the full Content-Length but close the connection after this many body bytes.
    cut_after: Option<usize>,
}

fn resp(status: u16, body: impl Into<Vec<u8>>) -> Resp {
    Resp { status, body: body.into(), ..Default::default() }
}

impl Resp {
    fn with(mut self, k: &str, v: &str) -> Resp {
        self.headers.push((k.into(), v.into()));
        self
    }
}

type Handler = Arc<dyn Fn(&Req) -> Resp + Send + Sync>;

/// Serves `handler` on a fresh loopback port, one request per connection; returns the port.
async fn serve(handler: Handler) -> u16 {
    serve_maybe_tls(handler, None).await
}

async fn serve_maybe_tls(handler: Handler, tls: Option<tokio_rustls::TlsAcceptor>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else { return };
            let handler = handler.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    None => answer(sock, handler).await,
                    Some(acceptor) => {
                        if let Ok(s) = acceptor.accept(sock).await {
                            answer(s, handler).await
                        }
                    }
                }
            });
        }
    });
    port
}

async fn answer<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut sock: S, handler: Handler) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut tmp).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or("");
    let path = first.split(' ').nth(1).unwrap_or("/").to_string();
    let mut headers = HashMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let r = handler(&Req { path, headers });
    let reason = match r.status {
        200 => "OK",
        206 => "Partial Content",
        307 => "Temporary Redirect",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Status",
    };
    let mut head =
        format!("HTTP/1.1 {} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n", r.status, r.body.len());
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = sock.write_all(head.as_bytes()).await;
    let n = r.cut_after.unwrap_or(r.body.len()).min(r.body.len());
    let _ = sock.write_all(&r.body[..n]).await;
    let _ = sock.flush().await;
    let _ = sock.shutdown().await;
}

// ---- an image: two platform manifests in an index ---------------------------------------

struct Image {
    blobs: HashMap<String, Vec<u8>>,
    manifests: HashMap<String, (String, Vec<u8>)>,
    index_digest: Digest,
    amd64_manifest: Digest,
    arm64_manifest: Digest,
    layer: Digest,
    layer_bytes: Vec<u8>,
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn image() -> Image {
    image_typed(
        OCI_INDEX,
        OCI_MANIFEST,
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.oci.image.layer.v1.tar+gzip",
    )
}

fn image_typed(index_type: &str, manifest_type: &str, config_type: &str, layer_type: &str) -> Image {
    let mut blobs = HashMap::new();
    let mut manifests = HashMap::new();
    let mut add_blob = |b: Vec<u8>| {
        let d = Digest::of(&b);
        blobs.insert(d.to_string(), b.clone());
        (d, b.len())
    };
    let layer_bytes: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (layer, layer_len) = add_blob(layer_bytes.clone());
    let mut platform_manifest = |arch: &str| {
        let (cfg, cfg_len) = add_blob(
            format!(r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}}}}"#)
                .into_bytes(),
        );
        let m = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": {"mediaType": config_type, "digest": cfg.to_string(), "size": cfg_len},
            "layers": [{"mediaType": layer_type, "digest": layer.to_string(), "size": layer_len}],
        }))
        .unwrap();
        let d = Digest::of(&m);
        manifests.insert(d.to_string(), (manifest_type.to_string(), m.clone()));
        (d, m.len())
    };
    let (amd, amd_len) = platform_manifest("amd64");
    let (arm, arm_len) = platform_manifest("arm64");
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": index_type,
        "manifests": [
            {"mediaType": manifest_type, "digest": arm.to_string(), "size": arm_len, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"mediaType": manifest_type, "digest": amd.to_string(), "size": amd_len, "platform": {"os": "linux", "architecture": "amd64"}},
        ],
    }))
    .unwrap();
    let index_digest = Digest::of(&index);
    manifests.insert(index_digest.to_string(), (index_type.to_string(), index.clone()));
    manifests.insert("v1".to_string(), (index_type.to_string(), index));
    Image { blobs, manifests, index_digest, amd64_manifest: amd, arm64_manifest: arm, layer, layer_bytes }
}

/// Answers `/v2/<repo>/manifests/<ref>` and `/v2/<repo>/blobs/<digest>` for `repo`.
fn registry_answer(img: &Image, repo: &str, r: &Req) -> Resp {
    let prefix = format!("/v2/{repo}/");
    let Some(rest) = r.path.strip_prefix(&prefix) else { return resp(404, "no such repository") };
    if let Some(m) = rest.strip_prefix("manifests/") {
        return match img.manifests.get(m) {
            Some((ct, body)) => resp(200, body.clone())
                .with("Content-Type", ct)
                .with("Docker-Content-Digest", &Digest::of(body).to_string()),
            None => resp(404, r#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#),
        };
    }
    if let Some(b) = rest.strip_prefix("blobs/") {
        return match img.blobs.get(b) {
            Some(body) => resp(200, body.clone()),
            None => resp(404, r#"{"errors":[{"code":"BLOB_UNKNOWN"}]}"#),
        };
    }
    resp(404, "")
}

fn config() -> ClientConfig {
    ClientConfig { retry_delay: Duration::from_millis(10), ..ClientConfig::default() }
}

fn reference(port: u16, rest: &str) -> Reference {
    Reference::parse(&format!("127.0.0.1:{port}/{rest}")).unwrap()
}

async fn fetch_all_blobs(client: &Client, r: &Reference, resolved: &images::registry::Resolved) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for d in std::iter::once(&resolved.config).chain(resolved.layers.iter()) {
        let mut sink = Vec::new();
        client.fetch_blob(r, d, &mut sink).await.unwrap();
        out.push(sink);
    }
    out
}

// ---- tests -------------------------------------------------------------------------------

#[tokio::test]
async fn resolves_a_tag_through_the_index_for_each_platform_and_fetches_blobs() {
    let img = Arc::new(image());
    let i2 = img.clone();
    let port = serve(Arc::new(move |r| registry_answer(&i2, "app", r))).await;
    let client = Client::new(config());
    let r = reference(port, "app:v1");

    let amd = client.resolve(&r, &Platform::default()).await.unwrap();
    assert_eq!(amd.manifest_digest, img.amd64_manifest);
    assert_eq!(amd.index_digest.as_ref(), Some(&img.index_digest));
    assert_eq!(amd.reference.digest(), Some(&img.index_digest));
    assert_eq!(Digest::of(&amd.manifest_bytes), img.amd64_manifest);
    assert_eq!(amd.layers.len(), 1);
    let blobs = fetch_all_blobs(&client, &r, &amd).await;
    assert_eq!(blobs[1], img.layer_bytes);
    assert!(String::from_utf8_lossy(&blobs[0]).contains("amd64"));

    let arm = client.resolve(&r, &Platform::parse("linux/arm64").unwrap()).await.unwrap();
    assert_eq!(arm.manifest_digest, img.arm64_manifest);

    // By digest, straight to a platform manifest.
    let by_digest = reference(port, &format!("app@{}", img.amd64_manifest));
    let m = client.resolve(&by_digest, &Platform::default()).await.unwrap();
    assert_eq!(m.manifest_digest, img.amd64_manifest);
    assert_eq!(m.index_digest, None);

    let e = client.resolve(&r, &Platform::parse("linux/s390x").unwrap()).await.unwrap_err();
    assert!(e.to_string().contains("linux/s390x"), "{e}");
}

#[tokio::test]
async fn a_manifest_that_does_not_match_its_digest_is_refused() {
    let img = Arc::new(image());
    let i2 = img.clone();
    let wanted = img.arm64_manifest.to_string();
    // Serve the amd64 manifest under the arm64 digest.
    let port = serve(Arc::new(move |r| {
        if r.path.ends_with(&format!("manifests/{wanted}")) {
            let (ct, body) = &i2.manifests[&i2.amd64_manifest.to_string()];
            return resp(200, body.clone()).with("Content-Type", ct);
        }
        registry_answer(&i2, "app", r)
    }))
    .await;
    let client = Client::new(config());
    let e = client
        .resolve(&reference(port, &format!("app@{}", img.arm64_manifest)), &Platform::default())
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::DigestMismatch { .. }), "{e}");
    assert!(e.to_string().contains(&img.arm64_manifest.to_string()), "{e}");
    // Through the index the same lie is caught too.
    let e = client.resolve(&reference(port, "app:v1"), &Platform::parse("linux/arm64").unwrap()).await.unwrap_err();
    assert!(matches!(e, RegistryError::DigestMismatch { .. }), "{e}");
}

#[tokio::test]
async fn bearer_tokens_are_fetched_with_credentials_and_cached() {
    let img = Arc::new(image());
    let token_requests = Arc::new(AtomicUsize::new(0));
    let (tr, i2) = (token_requests.clone(), img.clone());
    let port_cell = Arc::new(Mutex::new(0u16));
    let pc = port_cell.clone();
    let port = serve(Arc::new(move |r| {
        let port = *pc.lock().unwrap();
        if r.path.starts_with("/token") {
            tr.fetch_add(1, Ordering::SeqCst);
            // "alice:secret"
            if r.header("authorization") != Some("Basic YWxpY2U6c2VjcmV0") {
                return resp(401, "bad credentials");
            }
            if !r.path.contains("scope=repository%3Aorg%2Fapp%3Apull") || !r.path.contains("service=test-registry") {
                return resp(400, format!("bad query {}", r.path));
            }
            return resp(200, r#"{"token":"tok-1","expires_in":300}"#);
        }
        if r.header("authorization") != Some("Bearer tok-1") {
            return resp(401, "").with(
                "WWW-Authenticate",
                &format!(r#"Bearer realm="http://127.0.0.1:{port}/token",service="test-registry",scope="repository:org/app:pull""#),
            );
        }
        registry_answer(&i2, "org/app", r)
    }))
    .await;
    *port_cell.lock().unwrap() = port;

    let r = reference(port, "org/app:v1");
    let anonymous = Client::new(config());
    let e = anonymous.resolve(&r, &Platform::default()).await.unwrap_err();
    assert!(matches!(e, RegistryError::Token { .. }), "{e}");

    let mut creds = StaticCredentials::default();
    creds.0.insert(format!("127.0.0.1:{port}"), Credential { username: "alice".into(), password: "secret".into() });
    let client = Client::new(ClientConfig { credentials: Arc::new(creds), ..config() });
    token_requests.store(0, Ordering::SeqCst);
    let res = client.resolve(&r, &Platform::default()).await.unwrap();
    let blobs = fetch_all_blobs(&client, &r, &res).await;
    assert_eq!(blobs[1], img.layer_bytes);
    client.resolve(&r, &Platform::default()).await.unwrap();
    assert_eq!(token_requests.load(Ordering::SeqCst), 1, "the token is cached for the scope");
}

#[tokio::test]
async fn basic_auth_uses_configured_credentials() {
    let img = Arc::new(image());
    let i2 = img.clone();
    let port = serve(Arc::new(move |r| {
        // "bob:pw"
        if r.header("authorization") != Some("Basic Ym9iOnB3") {
            return resp(401, "").with("WWW-Authenticate", r#"Basic realm="Registry Realm""#);
        }
        registry_answer(&i2, "app", r)
    }))
    .await;
    let r = reference(port, "app:v1");
    let e = Client::new(config()).resolve(&r, &Platform::default()).await.unwrap_err();
    assert!(matches!(e, RegistryError::Unauthorized { .. }), "{e}");
    assert!(e.to_string().contains("no credentials"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("config.json");
    std::fs::write(
        &cfg_path,
        format!(r#"{{"auths":{{"http://127.0.0.1:{port}":{{"username":"bob","password":"pw"}}}}}}"#),
    )
    .unwrap();
    let creds = images::registry::DockerConfig::load(&cfg_path).unwrap();
    let client = Client::new(ClientConfig { credentials: Arc::new(creds), ..config() });
    let res = client.resolve(&r, &Platform::default()).await.unwrap();
    assert_eq!(fetch_all_blobs(&client, &r, &res).await[1], img.layer_bytes);

    let mut wrong = StaticCredentials::default();
    wrong.0.insert(format!("127.0.0.1:{port}"), Credential { username: "bob".into(), password: "nope".into() });
    let e = Client::new(ClientConfig { credentials: Arc::new(wrong), ..config() })
        .resolve(&r, &Platform::default())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("credentials refused"), "{e}");
}

#[tokio::test]
async fn blob_redirects_to_another_host_do_not_carry_the_token() {
    let img = Arc::new(image());
    let cdn_saw_auth = Arc::new(Mutex::new(Vec::new()));
    let (seen, i_cdn) = (cdn_saw_auth.clone(), img.clone());
    let cdn = serve(Arc::new(move |r| {
        seen.lock().unwrap().push(r.header("authorization").map(str::to_string));
        let d = r.path.trim_start_matches("/cdn/").split('?').next().unwrap().to_string();
        match i_cdn.blobs.get(&d) {
            Some(b) => resp(200, b.clone()),
            None => resp(404, ""),
        }
    }))
    .await;
    let i2 = img.clone();
    let port_cell = Arc::new(Mutex::new(0u16));
    let pc = port_cell.clone();
    let port = serve(Arc::new(move |r| {
        let port = *pc.lock().unwrap();
        if r.path.starts_with("/token") {
            return resp(200, r#"{"access_token":"tok-2"}"#);
        }
        if r.header("authorization") != Some("Bearer tok-2") {
            return resp(401, "")
                .with("WWW-Authenticate", &format!(r#"Bearer realm="http://127.0.0.1:{port}/token",service="s""#));
        }
        if let Some(d) = r.path.strip_prefix("/v2/app/blobs/") {
            return resp(307, "").with("Location", &format!("http://127.0.0.1:{cdn}/cdn/{d}?sig=abc"));
        }
        registry_answer(&i2, "app", r)
    }))
    .await;
    *port_cell.lock().unwrap() = port;

    let client = Client::new(config());
    let r = reference(port, "app:v1");
    let res = client.resolve(&r, &Platform::default()).await.unwrap();
    let blobs = fetch_all_blobs(&client, &r, &res).await;
    assert_eq!(blobs[1], img.layer_bytes);
    let seen = cdn_saw_auth.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(Option::is_none), "the cdn got an authorization header: {seen:?}");
}

/// A blob server that drops the first connection halfway; `ranges` says whether it then
/// honours Range requests.
async fn flaky_blob_server(img: Arc<Image>, ranges: bool) -> (u16, Arc<Mutex<Vec<Option<String>>>>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let range_headers = Arc::new(Mutex::new(Vec::new()));
    let rh = range_headers.clone();
    let layer = img.layer.to_string();
    let port = serve(Arc::new(move |r| {
        if !r.path.ends_with(&layer) {
            return registry_answer(&img, "app", r);
        }
        rh.lock().unwrap().push(r.header("range").map(str::to_string));
        let body = &img.layer_bytes;
        if calls.fetch_add(1, Ordering::SeqCst) == 0 {
            return Resp { cut_after: Some(body.len() / 2), ..resp(200, body.clone()) };
        }
        match r.header("range").and_then(|v| v.strip_prefix("bytes=")).and_then(|v| v.strip_suffix('-')) {
            Some(from) if ranges => {
                let from: usize = from.parse().unwrap();
                resp(206, body[from..].to_vec())
                    .with("Content-Range", &format!("bytes {from}-{}/{}", body.len() - 1, body.len()))
            }
            _ => resp(200, body.clone()),
        }
    }))
    .await;
    (port, range_headers)
}

#[tokio::test]
async fn an_interrupted_blob_resumes_with_a_range_request() {
    let img = Arc::new(image());
    let (port, ranges) = flaky_blob_server(img.clone(), true).await;
    let client = Client::new(config());
    let r = reference(port, "app:v1");
    let res = client.resolve(&r, &Platform::default()).await.unwrap();
    let mut sink = Vec::new();
    client.fetch_blob(&r, &res.layers[0], &mut sink).await.unwrap();
    assert_eq!(sink, img.layer_bytes);
    let ranges = ranges.lock().unwrap();
    assert_eq!(ranges.len(), 2);
    assert_eq!(ranges[0], None);
    let from: usize = ranges[1].as_deref().unwrap().trim_start_matches("bytes=").trim_end_matches('-').parse().unwrap();
    assert!(from > 0 && from <= img.layer_bytes.len() / 2, "resumed from {from}");
}

#[tokio::test]
async fn an_interrupted_blob_restarts_when_ranges_are_not_supported() {
    let img = Arc::new(image());
    let (port, ranges) = flaky_blob_server(img.clone(), false).await;
    let client = Client::new(config());
    let r = reference(port, "app:v1");
    let res = client.resolve(&r, &Platform::default()).await.unwrap();
    // A file sink, rewound when the registry starts over.
    let mut file = tempfile::tempfile().unwrap();
    client.fetch_blob(&r, &res.layers[0], &mut file).await.unwrap();
    use std::io::{Read, Seek};
    file.rewind().unwrap();
    let mut got = Vec::new();
    file.read_to_end(&mut got).unwrap();
    assert_eq!(got, img.layer_bytes);
    assert_eq!(ranges.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_corrupt_blob_is_an_error_naming_its_digest() {
    let img = Arc::new(image());
    let i2 = img.clone();
    let layer = img.layer.to_string();
    let port = serve(Arc::new(move |r| {
        if r.path.ends_with(&layer) {
            let mut b = i2.layer_bytes.clone();
            b[1000] ^= 0xff;
            return resp(200, b);
        }
        registry_answer(&i2, "app", r)
    }))
    .await;
    let client = Client::new(config());
    let r = reference(port, "app:v1");
    let res = client.resolve(&r, &Platform::default()).await.unwrap();
    let mut sink = Vec::new();
    let e = client.fetch_blob(&r, &res.layers[0], &mut sink).await.unwrap_err();
    assert!(matches!(e, RegistryError::DigestMismatch { .. }), "{e}");
    assert!(e.to_string().contains(&img.layer.to_string()), "{e}");
    assert!(sink.is_empty(), "the sink was emptied after the failure");

    // A descriptor that lies about the size is caught as well.
    let mut short = res.layers[0].clone();
    short.set_size(10);
    let e = client.fetch_blob(&r, &short, &mut Vec::new()).await.unwrap_err();
    assert!(matches!(e, RegistryError::SizeMismatch { .. }), "{e}");
}

#[tokio::test]
async fn transient_errors_are_retried() {
    let img = Arc::new(image());
    let i2 = img.clone();
    let failures = Arc::new(AtomicUsize::new(0));
    let f = failures.clone();
    let port = serve(Arc::new(move |r| {
        if f.fetch_add(1, Ordering::SeqCst) < 2 {
            return resp(503, "busy");
        }
        registry_answer(&i2, "app", r)
    }))
    .await;
    let client = Client::new(config());
    let res = client.resolve(&reference(port, "app:v1"), &Platform::default()).await.unwrap();
    assert_eq!(res.manifest_digest, img.amd64_manifest);

    // A 429 with Retry-After is waited for at least that long.
    let (i3, f3) = (img.clone(), Arc::new(AtomicUsize::new(0)));
    let limited = serve(Arc::new(move |r| {
        if f3.fetch_add(1, Ordering::SeqCst) == 0 {
            return resp(429, "slow down").with("Retry-After", "1");
        }
        registry_answer(&i3, "app", r)
    }))
    .await;
    let started = std::time::Instant::now();
    client.resolve(&reference(limited, "app:v1"), &Platform::default()).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1), "waited only {:?}", started.elapsed());

    let always = serve(Arc::new(|_| resp(500, "down"))).await;
    let e = Client::new(ClientConfig { retries: 1, ..config() })
        .resolve(&reference(always, "app:v1"), &Platform::default())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("500"), "{e}");
}

#[tokio::test]
async fn mirrors_serve_docker_hub_names_offline_in_order() {
    let img = Arc::new(image());
    let i2 = img.clone();
    let mirror_saw_auth = Arc::new(AtomicUsize::new(0));
    let saw = mirror_saw_auth.clone();
    let mirror = serve(Arc::new(move |r| {
        if r.header("authorization").is_some() {
            saw.fetch_add(1, Ordering::SeqCst);
        }
        registry_answer(&i2, "library/nginx", r)
    }))
    .await;
    // A mirror that is down (nothing listens), tried first.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("docker.io")).unwrap();
    std::fs::write(
        dir.path().join("docker.io/hosts.toml"),
        format!(
            "server = \"https://registry-1.docker.io\"\n\n[host.\"http://127.0.0.1:{dead}\"]\ncapabilities = [\"pull\", \"resolve\"]\n\n[host.\"http://127.0.0.1:{mirror}\"]\ncapabilities = [\"pull\", \"resolve\"]\n"
        ),
    )
    .unwrap();
    // Docker Hub credentials are configured; the mirrors must not be sent them.
    let mut creds = StaticCredentials::default();
    creds.0.insert("docker.io".into(), Credential { username: "hub".into(), password: "hub-secret".into() });
    let client = Client::new(ClientConfig {
        hosts_dir: Some(dir.path().into()),
        retries: 0,
        credentials: Arc::new(creds),
        ..config()
    });
    let r = Reference::parse("nginx:v1").unwrap();
    let res = client.resolve(&r, &Platform::default()).await.unwrap();
    assert_eq!(res.manifest_digest, img.amd64_manifest);
    assert_eq!(res.reference.to_string(), format!("docker.io/library/nginx:v1@{}", img.index_digest));
    let blobs = fetch_all_blobs(&client, &r, &res).await;
    assert_eq!(blobs[1], img.layer_bytes);
    assert_eq!(mirror_saw_auth.load(Ordering::SeqCst), 0);
}

/// The kubelet spawns pulls on tokio's multi-threaded runtime, so the futures must be Send.
#[allow(dead_code)]
fn client_futures_are_send(c: &Client, r: &Reference, p: &Platform, d: &oci_spec::image::Descriptor) {
    fn send<T: Send>(_: &T) {}
    send(&c.resolve(r, p));
    let mut sink = Vec::new();
    send(&c.fetch_blob(r, d, &mut sink));
    send(&c.fetch_blob_async(r, d, &mut sink));
    fn share<T: Send + Sync>() {}
    share::<Client>();
}

/// A CA and a server certificate for 127.0.0.1, made with the openssl command.
fn make_certs(dir: &std::path::Path) -> bool {
    let run = |args: &[&str]| {
        std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=kubelet-rs test ca"],
    ]
    .concat())
        && run(&[&["req"][..], &ec, &["-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1"]].concat())
        && run(&[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "srv.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ])
}

#[tokio::test]
async fn https_endpoints_trust_a_configured_ca_or_skip_verify() {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = tempfile::tempdir().unwrap();
    if !make_certs(certs.path()) {
        eprintln!("SKIPPED: the openssl command is missing or failed; https test not run");
        return;
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(certs.path().join("srv.pem")).unwrap().map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_file(certs.path().join("srv.key")).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let server = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let img = Arc::new(image());
    let i2 = img.clone();
    let port = serve_maybe_tls(
        Arc::new(move |r| registry_answer(&i2, "app", r)),
        Some(tokio_rustls::TlsAcceptor::from(Arc::new(server))),
    )
    .await;
    let registry = format!("127.0.0.1:{port}");
    let r = reference(port, "app:v1");
    let hosts = tempfile::tempdir().unwrap();
    let host_dir = hosts.path().join(&registry);
    std::fs::create_dir_all(&host_dir).unwrap();
    let client = |toml: String| {
        std::fs::write(host_dir.join("hosts.toml"), toml).unwrap();
        Client::new(ClientConfig { hosts_dir: Some(hosts.path().into()), retries: 0, ..config() })
    };

    // Not trusted: the bundled and system roots do not know our CA.
    let e = client(format!("server = \"https://{registry}\"\n")).resolve(&r, &Platform::default()).await.unwrap_err();
    assert!(matches!(e, RegistryError::Http { .. }), "{e}");

    std::fs::copy(certs.path().join("ca.pem"), host_dir.join("ca.pem")).unwrap();
    let c = client(format!("server = \"https://{registry}\"\nca = \"ca.pem\"\n"));
    let res = c.resolve(&r, &Platform::default()).await.unwrap();
    assert_eq!(fetch_all_blobs(&c, &r, &res).await[1], img.layer_bytes);

    let c = client(format!("server = \"https://{registry}\"\nskip_verify = true\n"));
    assert_eq!(c.resolve(&r, &Platform::default()).await.unwrap().manifest_digest, img.amd64_manifest);
}

#[tokio::test]
async fn a_mirror_asking_for_auth_is_not_sent_the_upstream_credentials() {
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let mirror = serve(Arc::new(move |r| {
        g.lock().unwrap().push(r.header("authorization").map(str::to_string));
        resp(401, "").with("WWW-Authenticate", r#"Basic realm="mirror""#)
    }))
    .await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("docker.io")).unwrap();
    std::fs::write(
        dir.path().join("docker.io/hosts.toml"),
        format!("server = \"http://127.0.0.1:{dead}\"\n[host.\"http://127.0.0.1:{mirror}\"]\n"),
    )
    .unwrap();
    let mut creds = StaticCredentials::default();
    creds.0.insert("docker.io".into(), Credential { username: "hub".into(), password: "hub-secret".into() });
    let client = Client::new(ClientConfig {
        hosts_dir: Some(dir.path().into()),
        retries: 0,
        credentials: Arc::new(creds),
        ..config()
    });
    assert!(client.resolve(&Reference::parse("nginx").unwrap(), &Platform::default()).await.is_err());
    let got = got.lock().unwrap();
    assert!(!got.is_empty());
    assert!(got.iter().all(Option::is_none), "the mirror was sent credentials: {got:?}");
}

#[tokio::test]
async fn async_sinks_resume_and_restart_too() {
    use tokio::io::AsyncSeekExt;
    let img = Arc::new(image());
    let (port, _) = flaky_blob_server(img.clone(), true).await;
    let client = Client::new(config());
    let r = reference(port, "app:v1");
    let res = client.resolve(&r, &Platform::default()).await.unwrap();
    let mut sink: Vec<u8> = Vec::new();
    client.fetch_blob_async(&r, &res.layers[0], &mut sink).await.unwrap();
    assert_eq!(sink, img.layer_bytes);

    let (port, ranges) = flaky_blob_server(img.clone(), false).await;
    let r = reference(port, "app:v1");
    let dir = tempfile::tempdir().unwrap();
    let mut file = tokio::fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.path().join("blob"))
        .await
        .unwrap();
    client.fetch_blob_async(&r, &res.layers[0], &mut file).await.unwrap();
    file.rewind().await.unwrap();
    let mut got = Vec::new();
    file.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, img.layer_bytes);
    assert_eq!(ranges.lock().unwrap().len(), 2);

    let bad = serve(Arc::new(|_| resp(200, "not the blob"))).await;
    let mut sink: Vec<u8> = Vec::new();
    let mut d = res.layers[0].clone();
    d.set_size(12);
    let e = client.fetch_blob_async(&reference(bad, "app:v1"), &d, &mut sink).await.unwrap_err();
    assert!(matches!(e, RegistryError::DigestMismatch { .. }), "{e}");
    assert!(sink.is_empty());
}

#[tokio::test]
async fn docker_schema2_lists_and_manifests_resolve() {
    let img = Arc::new(image_typed(
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.container.image.v1+json",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
    ));
    let i2 = img.clone();
    let port = serve(Arc::new(move |r| registry_answer(&i2, "app", r))).await;
    let client = Client::new(config());
    let r = reference(port, "app:v1");
    let res = client.resolve(&r, &Platform::parse("linux/arm64/v8").unwrap()).await.unwrap();
    assert_eq!(res.manifest_digest, img.arm64_manifest);
    assert_eq!(res.manifest_media_type, "application/vnd.docker.distribution.manifest.v2+json");
    assert_eq!(res.layers[0].media_type().to_string(), "application/vnd.docker.image.rootfs.diff.tar.gzip");
    assert_eq!(fetch_all_blobs(&client, &r, &res).await[1], img.layer_bytes);
}
