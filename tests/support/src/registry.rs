//! A real OCI registry on loopback for the image tests: Debian's `docker-registry`
//! (distribution 2.8), one per test, with storage in a temporary directory, seeded with
//! `skopeo copy` from the layouts of scripts/build-test-images.sh.
//!
//! ```ignore
//! let reg = Registry::start(Auth::None);
//! let digest = reg.push("busybox", "library/busybox:1.36");   // layout name, repo:tag
//! // pull from format!("{}/library/busybox:1.36", reg.host) over plain HTTP
//! ```
//!
//! Dropping it stops that registry process (by its PID only) and removes its directory; if
//! the test process dies first, the kernel kills the registry (PR_SET_PDEATHSIG).

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::http;
use crate::test_images::{layout_digest, test_image};
use crate::token_issuer::{self, TokenIssuer};

const REGISTRY: &str = "/usr/bin/docker-registry";

/// How clients authenticate to the registry.
#[derive(Clone, Debug)]
pub enum Auth {
    /// Anonymous pull and push.
    None,
    /// HTTP Basic against an htpasswd file (bcrypt, made with apache2-utils' `htpasswd`).
    Basic { user: String, password: String },
    /// Bearer tokens from a [`TokenIssuer`] in the test process; `anonymous_pull` lets clients
    /// without credentials get pull tokens, as Docker Hub does for public repositories.
    Token { user: String, password: String, anonymous_pull: bool },
}

impl Auth {
    pub fn basic(user: &str, password: &str) -> Auth {
        Auth::Basic { user: user.into(), password: password.into() }
    }

    pub fn token(user: &str, password: &str, anonymous_pull: bool) -> Auth {
        Auth::Token { user: user.into(), password: password.into(), anonymous_pull }
    }

    /// The user and password, if any.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        match self {
            Auth::None => None,
            Auth::Basic { user, password } | Auth::Token { user, password, .. } => Some((user, password)),
        }
    }
}

pub struct Registry {
    /// `127.0.0.1:PORT`: the registry host to put in image references.
    pub host: String,
    pub auth: Auth,
    /// The token issuer, for `Auth::Token`.
    pub issuer: Option<TokenIssuer>,
    /// The registry's storage root (`docker/registry/v2/...`), to corrupt blobs on purpose.
    pub storage: PathBuf,
    child: Child,
    log: PathBuf,
    // Last, so the directory goes after the process is stopped.
    dir: tempfile::TempDir,
}

impl Registry {
    /// Start a registry and wait until `/v2/` answers. Panics, with the registry's log, if it
    /// cannot be started (install it with `apt-get install docker-registry`).
    pub fn start(auth: Auth) -> Registry {
        assert!(
            std::path::Path::new(REGISTRY).exists(),
            "{REGISTRY} not found: apt-get install docker-registry skopeo (.ci/run does)"
        );
        let mut dir = tempfile::Builder::new().prefix("krs-test-registry.").tempdir().expect("registry temp dir");
        let issuer = match &auth {
            Auth::Token { user, password, anonymous_pull } => {
                Some(TokenIssuer::start(dir.path(), user, password, *anonymous_pull))
            }
            _ => None,
        };
        if let Auth::Basic { user, password } = &auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("run htpasswd (apt-get install apache2-utils)");
            assert!(out.status.success(), "htpasswd failed: {}", String::from_utf8_lossy(&out.stderr));
            fs::write(dir.path().join("htpasswd"), &out.stdout).unwrap();
        }
        let storage = dir.path().join("storage");
        let log = dir.path().join("registry.log");
        // A free port can be taken between our probe and the registry's bind: try again.
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let host = format!("127.0.0.1:{port}");
            let config = dir.path().join("config.yml");
            fs::write(&config, config_yaml(&host, &storage, dir.path(), issuer.as_ref())).unwrap();
            let mut cmd = Command::new(REGISTRY);
            // If the test process is killed (a timeout), its registry goes too. The signal
            // follows the thread that started it: start a registry in the test using it.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let child = cmd
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(fs::File::create(&log).unwrap())
                .stderr(fs::File::create(&log).unwrap())
                .spawn()
                .expect("start docker-registry");
            let mut reg = Registry { host, auth: auth.clone(), issuer: None, storage: storage.clone(), child, log: log.clone(), dir };
            if reg.wait_ready() {
                reg.issuer = issuer;
                return reg;
            }
            last_log = fs::read_to_string(&log).unwrap_or_default();
            // Stop this attempt's process but keep the directory for the next one.
            reg.stop();
            dir = std::mem::replace(&mut reg.dir, tempfile::tempdir().unwrap());
        }
        panic!("docker-registry did not start; its log:\n{last_log}");
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            // Any HTTP answer (200, or 401 with auth) means it is serving.
            if http::get(&format!("{}/v2/", self.url()), &[]).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host)
    }

    /// `127.0.0.1:PORT/repo:tag`, a reference for pulling.
    pub fn reference(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.host)
    }

    /// The registry's log (access log and errors), for assertion messages.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Push test image `image` (a name from [`crate::test_images::IMAGES`], built and cached on
    /// first use) as `repo:tag`, with every manifest of an index. Returns the digest the tag
    /// then points to, the same as the layout's, since skopeo copies blobs unchanged.
    pub fn push(&self, image: &str, repo_tag: &str) -> String {
        let layout = test_image(image);
        self.skopeo_copy(image, repo_tag, &[]);
        layout_digest(&layout)
    }

    /// Push test image `image` converted by skopeo to Docker's media types (schema2 manifest
    /// or manifest list, `...docker.image.rootfs.diff.tar.gzip` layers). Not for `busybox-zstd`:
    /// skopeo 1.9 refuses zstd in Docker images. Returns the digest the tag then points to, which differs
    /// from the layout's.
    pub fn push_docker(&self, image: &str, repo_tag: &str) -> String {
        self.skopeo_copy(image, repo_tag, &["--format=v2s2"]);
        let mut cmd = Command::new("skopeo");
        cmd.args(["inspect", "--raw", "--tls-verify=false"]);
        if let Some((user, password)) = self.auth.credentials() {
            cmd.arg(format!("--creds={user}:{password}"));
        }
        let out = cmd.arg(format!("docker://{}", self.reference(repo_tag))).output().expect("run skopeo inspect");
        assert!(out.status.success(), "skopeo inspect {repo_tag}: {}", String::from_utf8_lossy(&out.stderr));
        let mut sum = Command::new("sha256sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run sha256sum");
        std::io::Write::write_all(&mut sum.stdin.take().unwrap(), &out.stdout).unwrap();
        let hex = String::from_utf8(sum.wait_with_output().unwrap().stdout).unwrap();
        format!("sha256:{}", hex.split_whitespace().next().expect("sha256sum output"))
    }

    fn skopeo_copy(&self, image: &str, repo_tag: &str, extra: &[&str]) {
        let layout = test_image(image);
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--all", "--dest-tls-verify=false"]).args(extra);
        if let Some((user, password)) = self.auth.credentials() {
            cmd.arg(format!("--dest-creds={user}:{password}"));
        }
        cmd.arg(format!("oci:{}:latest", layout.display()));
        cmd.arg(format!("docker://{}", self.reference(repo_tag)));
        let out = cmd.output().expect("run skopeo (apt-get install skopeo)");
        assert!(
            out.status.success(),
            "skopeo copy {image} to {repo_tag} failed: {}\nregistry log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// Where the registry keeps a blob, to corrupt it in a test.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        self.storage.join("docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
    }

    fn stop(&mut self) {
        // Only our own child, by PID; it is reaped here so the PID cannot be reused under us.
        if let Ok(None) = self.child.try_wait() {
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config_yaml(host: &str, storage: &std::path::Path, dir: &std::path::Path, issuer: Option<&TokenIssuer>) -> String {
    let mut y = format!(
        "version: 0.1\n\
         log:\n  level: warn\n\
         storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
         http:\n  addr: {host}\n  secret: krs-test-secret\n",
        storage = storage.display()
    );
    let htpasswd = dir.join("htpasswd");
    if let Some(issuer) = issuer {
        y.push_str(&format!(
            "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {iss}\n    rootcertbundle: {cert}\n",
            realm = issuer.realm(),
            service = token_issuer::SERVICE,
            iss = token_issuer::ISSUER,
            cert = issuer.cert.display()
        ));
    } else if htpasswd.exists() {
        y.push_str(&format!("auth:\n  htpasswd:\n    realm: krs-test\n    path: {}\n", htpasswd.display()));
    }
    y
}
