//! The registry harness itself: a real docker-registry on loopback, seeded with the test
//! images, answering with the tags, digests and platforms pushed, and enforcing Basic and
//! Bearer token auth. Needs docker-registry, skopeo, zstd, apache2-utils and openssl
//! (`.ci/run` installs them); no root.

use std::process::Command;

use test_support::http::{self, basic_auth};
use test_support::registry::{Auth, Registry};
use test_support::test_images::{layout_blob, layout_digest, test_image};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn get(reg: &Registry, path: &str, headers: &[(&str, &str)]) -> http::Response {
    http::get(&format!("{}{path}", reg.url()), headers).expect("GET from the registry")
}

#[test]
fn plain_registry_serves_tags_digests_and_platforms() {
    let reg = Registry::start(Auth::None);
    let busybox = reg.push("busybox", "library/busybox:1.36");
    let multi = reg.push("multiarch", "multiarch:latest");
    let zstd = reg.push("busybox-zstd", "busybox-zstd:latest");
    assert_eq!(busybox, layout_digest(&test_image("busybox")));

    // By tag, then by digest: the same manifest, named by the digest the layout has.
    let accept = [("Accept", OCI_MANIFEST)];
    let by_tag = get(&reg, "/v2/library/busybox/manifests/1.36", &accept);
    assert_eq!(by_tag.status, 200, "{}", reg.log());
    assert_eq!(by_tag.header("docker-content-digest"), Some(busybox.as_str()));
    assert_eq!(by_tag.header("content-type"), Some(OCI_MANIFEST));
    let by_digest = get(&reg, &format!("/v2/library/busybox/manifests/{busybox}"), &accept);
    assert_eq!(by_digest.status, 200);
    assert_eq!(by_digest.body, by_tag.body);

    // Its layer is served byte for byte as built.
    let layer = by_tag.json()["layers"][0]["digest"].as_str().unwrap().to_string();
    let blob = get(&reg, &format!("/v2/library/busybox/blobs/{layer}"), &[]);
    assert_eq!(blob.status, 200);
    assert!(blob.body == layout_blob(&test_image("busybox"), &layer), "layer {layer} differs");

    let tags = get(&reg, "/v2/library/busybox/tags/list", &[]).json();
    assert_eq!(tags["tags"], serde_json::json!(["1.36"]));

    // The index and its two platforms.
    let index = get(&reg, "/v2/multiarch/manifests/latest", &[("Accept", OCI_INDEX)]);
    assert_eq!(index.status, 200);
    assert_eq!(index.header("docker-content-digest"), Some(multi.as_str()));
    let index = index.json();
    assert_eq!(index["mediaType"], OCI_INDEX);
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| format!("{}/{}", m["platform"]["os"].as_str().unwrap(), m["platform"]["architecture"].as_str().unwrap()))
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    for m in index["manifests"].as_array().unwrap() {
        let d = m["digest"].as_str().unwrap();
        assert_eq!(get(&reg, &format!("/v2/multiarch/manifests/{d}"), &accept).status, 200, "{d}");
    }

    // A zstd layer keeps its media type.
    let z = get(&reg, "/v2/busybox-zstd/manifests/latest", &accept);
    assert_eq!(z.header("docker-content-digest"), Some(zstd.as_str()));
    assert_eq!(z.json()["layers"][0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd");

    // And skopeo, a client other than ours, sees the same.
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", &format!("docker://{}", reg.reference("library/busybox:1.36"))])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["Digest"], busybox.as_str());
    assert_eq!(info["Architecture"], "amd64");
}

#[test]
fn layered_image_has_whiteouts() {
    let reg = Registry::start(Auth::None);
    reg.push("layered", "layered:v1");
    let m = get(&reg, "/v2/layered/manifests/v1", &[("Accept", OCI_MANIFEST)]).json();
    assert_eq!(m["layers"].as_array().unwrap().len(), 4);
    let top = m["layers"][3]["digest"].as_str().unwrap();
    let gz = get(&reg, &format!("/v2/layered/blobs/{top}"), &[]).body;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("top.tar.gz"), gz).unwrap();
    let out = Command::new("tar").arg("-tzf").arg(dir.path().join("top.tar.gz")).output().unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    for name in ["data/.wh.gone.txt", "data/.wh.gonedir", "data/opaque/.wh..wh..opq"] {
        assert!(list.lines().any(|l| l == name), "{name} not in the top layer:\n{list}");
    }
}

#[test]
fn basic_auth_refuses_anonymous_and_accepts_credentials() {
    let reg = Registry::start(Auth::basic("alice", "s3cret"));
    let anon = get(&reg, "/v2/", &[]);
    assert_eq!(anon.status, 401);
    assert_eq!(anon.header("www-authenticate"), Some("Basic realm=\"krs-test\""));
    assert_eq!(get(&reg, "/v2/", &[("Authorization", &basic_auth("alice", "wrong"))]).status, 401);
    let ok = basic_auth("alice", "s3cret");
    assert_eq!(get(&reg, "/v2/", &[("Authorization", &ok)]).status, 200);

    let digest = reg.push("busybox", "busybox:latest");
    assert_eq!(get(&reg, "/v2/busybox/manifests/latest", &[("Accept", OCI_MANIFEST)]).status, 401);
    let m = get(&reg, "/v2/busybox/manifests/latest", &[("Accept", OCI_MANIFEST), ("Authorization", &ok)]);
    assert_eq!(m.status, 200);
    assert_eq!(m.header("docker-content-digest"), Some(digest.as_str()));
}

/// The `key="value"` parameters of a `WWW-Authenticate: Bearer ...` challenge.
fn challenge(header: &str) -> std::collections::BTreeMap<String, String> {
    let params = header.strip_prefix("Bearer ").expect("a Bearer challenge");
    let mut out = std::collections::BTreeMap::new();
    let mut rest = params;
    while let Some((k, v)) = rest.split_once("=\"") {
        let (v, tail) = v.split_once('"').unwrap();
        out.insert(k.trim_start_matches(',').trim().to_string(), v.to_string());
        rest = tail;
    }
    out
}

#[test]
fn token_auth_challenges_and_accepts_issued_tokens() {
    let reg = Registry::start(Auth::token("bob", "hunter2", false));
    let issuer = reg.issuer.as_ref().unwrap();
    let anon = get(&reg, "/v2/", &[]);
    assert_eq!(anon.status, 401);
    let c = challenge(anon.header("www-authenticate").expect("a challenge"));
    assert_eq!(c["realm"], issuer.realm());
    assert_eq!(c["service"], "krs-test-registry");

    // skopeo goes through the token flow with the credentials to push.
    let digest = reg.push("busybox", "team/busybox:latest");
    assert!(issuer.issued() > 0);

    let accept = ("Accept", OCI_MANIFEST);
    let denied = get(&reg, "/v2/team/busybox/manifests/latest", &[accept]);
    assert_eq!(denied.status, 401);
    let c = challenge(denied.header("www-authenticate").unwrap());
    assert_eq!(c["scope"], "repository:team/busybox:pull");

    // Without credentials this issuer gives nothing; with them, a token the registry takes.
    let token_url = format!("{}?service={}&scope={}", c["realm"], c["service"], c["scope"]);
    assert_eq!(http::get(&token_url, &[]).unwrap().status, 401);
    assert_eq!(http::get(&token_url, &[("Authorization", &basic_auth("bob", "nope"))]).unwrap().status, 401);
    let t = http::get(&token_url, &[("Authorization", &basic_auth("bob", "hunter2"))]).unwrap();
    assert_eq!(t.status, 200);
    let token = t.json()["token"].as_str().unwrap().to_string();
    let bearer = format!("Bearer {token}");
    let m = get(&reg, "/v2/team/busybox/manifests/latest", &[accept, ("Authorization", &bearer)]);
    assert_eq!(m.status, 200, "{}", reg.log());
    assert_eq!(m.header("docker-content-digest"), Some(digest.as_str()));

    // The token is scoped: another repository is refused.
    let other = get(&reg, "/v2/other/manifests/latest", &[accept, ("Authorization", &bearer)]);
    assert_eq!(other.status, 401);
}

#[test]
fn token_auth_with_anonymous_pull() {
    let reg = Registry::start(Auth::token("bob", "hunter2", true));
    reg.push("busybox", "library/busybox:latest");
    let realm = reg.issuer.as_ref().unwrap().realm();
    let url = format!("{realm}?service=krs-test-registry&scope=repository%3Alibrary%2Fbusybox%3Apull%2Cpush");
    let t = http::get(&url, &[]).unwrap();
    assert_eq!(t.status, 200);
    let bearer = format!("Bearer {}", t.json()["token"].as_str().unwrap());
    let m = get(&reg, "/v2/library/busybox/manifests/latest", &[("Accept", OCI_MANIFEST), ("Authorization", &bearer)]);
    assert_eq!(m.status, 200, "{}", reg.log());
}

#[test]
fn dropping_the_registry_stops_it_and_removes_its_files() {
    let reg = Registry::start(Auth::None);
    let url = reg.url();
    let storage = reg.storage.clone();
    reg.push("busybox", "busybox:latest");
    assert!(storage.exists());
    drop(reg);
    assert!(http::get(&format!("{url}/v2/"), &[]).is_err(), "registry still answers after drop");
    assert!(!storage.exists(), "{} left behind", storage.display());
}

#[test]
fn big_image_is_served_with_ranges() {
    let reg = Registry::start(Auth::None);
    let digest = reg.push("big", "big:latest");
    let m = get(&reg, &format!("/v2/big/manifests/{digest}"), &[("Accept", OCI_MANIFEST)]).json();
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 4);
    let total: u64 = layers.iter().map(|l| l["size"].as_u64().unwrap()).sum();
    assert!((90 << 20..120 << 20).contains(&total), "big is {total} bytes");

    // Where a test can corrupt a blob, and a resumed download's Range request.
    let layer = layers[0]["digest"].as_str().unwrap();
    assert!(reg.blob_path(layer).exists(), "{}", reg.blob_path(layer).display());
    let part = get(&reg, &format!("/v2/big/blobs/{layer}"), &[("Range", "bytes=1000-1999")]);
    assert_eq!(part.status, 206);
    assert_eq!(part.body, layout_blob(&test_image("big"), layer)[1000..2000]);
}

#[test]
fn cutting_proxy_interrupts_once_then_passes() {
    use test_support::cutting_proxy::CuttingProxy;
    let reg = Registry::start(Auth::None);
    reg.push("busybox", "busybox:latest");
    let m = get(&reg, "/v2/busybox/manifests/latest", &[("Accept", OCI_MANIFEST)]).json();
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_string();
    let size = m["layers"][0]["size"].as_u64().unwrap() as usize;
    let proxy = CuttingProxy::start(&reg.host, 100_000, 1);
    let url = format!("http://{}/v2/busybox/blobs/{layer}", proxy.host);

    // HTTP/1.0 reads to the end of the connection: the cut shows as a short body.
    let first = http::get(&url, &[]).unwrap();
    assert_eq!(proxy.cut(), 1);
    assert!(first.body.len() < size, "the first download was not cut");
    let got = first.body.len();
    let rest = http::get(&url, &[("Range", &format!("bytes={got}-"))]).unwrap();
    assert_eq!(rest.status, 206);
    let whole = [first.body, rest.body].concat();
    assert!(whole == layout_blob(&test_image("busybox"), &layer), "resumed blob differs");
}

#[test]
fn docker_media_types_on_request() {
    let reg = Registry::start(Auth::basic("alice", "s3cret"));
    let list = reg.push_docker("multiarch", "dmulti:latest");
    let one = reg.push_docker("busybox", "dbusybox:latest");
    let auth = basic_auth("alice", "s3cret");
    let accept_list = "application/vnd.docker.distribution.manifest.list.v2+json";
    let l = get(&reg, "/v2/dmulti/manifests/latest", &[("Accept", accept_list), ("Authorization", &auth)]);
    assert_eq!(l.header("docker-content-digest"), Some(list.as_str()));
    assert_eq!(l.json()["mediaType"], accept_list);
    let accept_v2 = "application/vnd.docker.distribution.manifest.v2+json";
    let m = get(&reg, "/v2/dbusybox/manifests/latest", &[("Accept", accept_v2), ("Authorization", &auth)]);
    assert_eq!(m.header("docker-content-digest"), Some(one.as_str()));
    let m = m.json();
    assert_eq!(m["mediaType"], accept_v2);
    assert_eq!(m["layers"][0]["mediaType"], "application/vnd.docker.image.rootfs.diff.tar.gzip");
}
