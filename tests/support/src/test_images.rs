//! The OCI image layouts of scripts/build-test-images.sh, built once per build directory.
//!
//! The cache directory's name carries a hash of the build script, so editing the script
//! rebuilds the images instead of serving stale ones. Where the script cannot run (the test
//! guest has no python), `KRS_TEST_IMAGES` names a directory of layouts it built beforehand
//! (`scripts/guest/test-in-guest.sh --test-images`).

use std::fs;
use std::hash::{Hash, Hasher};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The images the script builds, each an OCI layout tagged `latest`, all OCI media types:
///
/// - `busybox`: linux/amd64, one gzip layer: busybox-static at /bin/busybox with its applet
///   symlinks, /etc/passwd and /etc/group (root, user 1000, nobody), /home/user owned by
///   1000:1000, /tmp 1777; config Cmd `["sh"]`, Env PATH, WorkingDir `/`.
/// - `busybox-zstd`: the same layer compressed with zstd (`...layer.v1.tar+zstd`).
/// - `layered`: busybox plus three gzip layers under /data. Layer 2 adds keep.txt,
///   gone.txt, gonedir/inner.txt, opaque/old.txt, hardlink-src.txt with hardlink-dst.txt,
///   symlink-rel -> keep.txt, symlink-abs -> /data/keep.txt, setuid (mode 4755),
///   xattr.txt (xattr `user.krs=test`, PAX `SCHILY.xattr`), owned.txt (1000:1000, 0640).
///   Layer 3 replaces keep.txt ("replaced by layer 2"), adds added.txt and opaque/mid.txt.
///   Layer 4 whites out gone.txt and gonedir (`.wh.` files), makes opaque/ opaque
///   (`.wh..wh..opq`) and adds opaque/new.txt. Unpacked, /data holds keep.txt, added.txt,
///   opaque/new.txt only in opaque/, the links, setuid, xattr.txt, owned.txt.
/// - `multiarch`: an image index; linux/amd64 is `busybox`, linux/arm64 a single layer
///   with the file /ARCH containing "arm64\n" (not runnable).
/// - `big`: linux/amd64, 4 gzip layers of seeded random data (incompressible), about 25 MB
///   each: /bigN/large.bin (16 MiB) and 600 small files in /bigN/small/; for the benchmark.
pub const IMAGES: &[&str] = &["busybox", "busybox-zstd", "layered", "multiarch", "big"];

/// A directory of layouts built beforehand, used instead of the per-build cache.
pub const PREBUILT_ENV: &str = "KRS_TEST_IMAGES";

fn script_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts")
}

fn cache_dir() -> PathBuf {
    let py = fs::read(script_dir().join("build-test-images.py")).expect("read build-test-images.py");
    let mut h = std::collections::hash_map::DefaultHasher::new();
    py.hash(&mut h);
    crate::profile_dir().join(format!("krs-test-images-{:016x}", h.finish()))
}

/// The OCI image layout directory of test image `name` (one of [`IMAGES`]), tagged `latest`.
pub fn test_image(name: &str) -> PathBuf {
    assert!(IMAGES.contains(&name), "unknown test image {name:?}; the script builds {IMAGES:?}");
    if let Some(given) = std::env::var_os(PREBUILT_ENV) {
        let image = PathBuf::from(given).join(name);
        assert!(image.join("index.json").exists(), "{PREBUILT_ENV} is set but holds no layout {}", image.display());
        return image;
    }
    let dir = cache_dir();
    let image = dir.join(name);
    if image.join("index.json").exists() {
        return image;
    }
    fs::create_dir_all(&dir).expect("create test image cache");
    let lock = fs::File::create(dir.with_extension("lock")).expect("create test image lock");
    unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    if !image.join("index.json").exists() {
        // The script renames a finished layout into place, so index.json means complete.
        let script = script_dir().join("build-test-images.sh");
        let st = Command::new("sh")
            .arg(&script)
            .arg(&dir)
            .args(["--only", name])
            .status()
            .expect("run build-test-images.sh");
        assert!(st.success(), "{} {} --only {name} failed", script.display(), dir.display());
    }
    image
}

/// The digest (`sha256:…`) of the manifest or index a layout tags `latest`: what a registry
/// serves for the tag after [`crate::registry::Registry::push`].
pub fn layout_digest(layout: &Path) -> String {
    let index: Value = serde_json::from_slice(&fs::read(layout.join("index.json")).expect("read index.json"))
        .expect("parse index.json");
    index["manifests"][0]["digest"].as_str().expect("index.json has a digest").to_string()
}

/// A blob of a layout, by digest (`sha256:…`).
pub fn layout_blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    fs::read(layout.join("blobs/sha256").join(hex)).expect("read layout blob")
}
