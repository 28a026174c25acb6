#!/usr/bin/env python3
"""Build the OCI image layouts the image tests pull from a loopback registry.

Usage: scripts/build-test-images.py OUTDIR [--only NAME,...]

Offline and reproducible: the content comes from Debian's busybox-static (through
scripts/build-busybox-rootfs.sh) and from seeded pseudo-random data; tar entries are sorted,
with mtime 0 and uid/gid 0 unless stated, and gzip headers carry no name or time, so the same
machine always gives the same digests. Each image is an OCI image layout directory
OUTDIR/NAME whose index.json names it `latest` (org.opencontainers.image.ref.name), ready for
`skopeo copy oci:OUTDIR/NAME:latest docker://...`.
"""

import gzip
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_TAR = "application/vnd.oci.image.layer.v1.tar"
MT_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"


class Layer:
    """A layer being written: a deterministic tar built from entries added in sorted order."""

    def __init__(self):
        self.entries = {}  # path -> (TarInfo, bytes or None)

    def _info(self, path, kind, mode, uid=0, gid=0):
        ti = tarfile.TarInfo(path)
        ti.type = kind
        ti.mode = mode
        ti.uid, ti.gid = uid, gid
        ti.uname = ti.gname = ""
        ti.mtime = 0
        return ti

    def dir(self, path, mode=0o755, uid=0, gid=0):
        self.entries[path] = (self._info(path, tarfile.DIRTYPE, mode, uid, gid), None)

    def file(self, path, data, mode=0o644, uid=0, gid=0, xattrs=None):
        ti = self._info(path, tarfile.REGTYPE, mode, uid, gid)
        ti.size = len(data)
        if xattrs:
            ti.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
        self.entries[path] = (ti, data)

    def symlink(self, path, target):
        ti = self._info(path, tarfile.SYMTYPE, 0o777)
        ti.linkname = target
        self.entries[path] = (ti, None)

    def hardlink(self, path, target):
        ti = self._info(path, tarfile.LNKTYPE, 0o644)
        ti.linkname = target
        self.entries[path] = (ti, None)

    def whiteout(self, path):
        """An OCI whiteout: `dir/.wh.name` deletes `dir/name` of the layers below."""
        d, name = os.path.split(path)
        self.file(os.path.join(d, ".wh." + name), b"", mode=0o600)

    def opaque(self, path):
        """An OCI opaque marker: the layers below contribute nothing inside `path`."""
        self.file(os.path.join(path, ".wh..wh..opq"), b"", mode=0o600)

    def add_tree(self, root, owners=None):
        """Add a directory tree from disk, all owned by 0:0 except paths in `owners`."""
        owners = owners or {}
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                full = os.path.join(dirpath, name)
                rel = os.path.relpath(full, root)
                uid, gid = owners.get(rel, (0, 0))
                st = os.lstat(full)
                mode = st.st_mode & 0o7777
                if os.path.islink(full):
                    self.symlink(rel, os.readlink(full))
                elif os.path.isdir(full):
                    self.dir(rel, mode, uid, gid)
                else:
                    with open(full, "rb") as f:
                        self.file(rel, f.read(), mode, uid, gid)

    def tar(self):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
            # Hardlinks last: a link entry may only name a file written before it.
            for path in sorted(self.entries, key=lambda p: (self.entries[p][0].type == tarfile.LNKTYPE, p)):
                ti, data = self.entries[path]
                t.addfile(ti, io.BytesIO(data) if data is not None else None)
        return buf.getvalue()


class Layout:
    """An OCI image layout directory being filled with blobs."""

    def __init__(self, path):
        self.path = path
        os.makedirs(os.path.join(path, "blobs", "sha256"))
        with open(os.path.join(path, "oci-layout"), "w") as f:
            f.write('{"imageLayoutVersion":"1.0.0"}')

    def blob(self, data, media_type, **extra):
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.path, "blobs", "sha256", digest), "wb") as f:
            f.write(data)
        desc = {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}
        desc.update(extra)
        return desc

    def json_blob(self, obj, media_type, **extra):
        return self.blob(json.dumps(obj, separators=(",", ":")).encode(), media_type, **extra)

    def layer(self, layer, compression):
        raw = layer.tar()
        diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
        if compression == "gzip":
            data, mt = gzip.compress(raw, compresslevel=6, mtime=0), MT_GZIP
        elif compression == "zstd":
            data = subprocess.run(["zstd", "-q", "-c", "-3", "--no-check"], input=raw, check=True,
                                  stdout=subprocess.PIPE).stdout
            mt = MT_ZSTD
        else:
            data, mt = raw, MT_TAR
        return self.blob(data, mt), diff_id

    def image(self, layers, compression, arch="amd64", config=None):
        """Write the layers, config and manifest; return the manifest's descriptor."""
        descs, diff_ids = [], []
        for layer in layers:
            d, diff_id = self.layer(layer, compression)
            descs.append(d)
            diff_ids.append(diff_id)
        cfg = {
            "architecture": arch,
            "os": "linux",
            "config": config or {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": ["sh"],
                "WorkingDir": "/",
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "scripts/build-test-images.py"}
                        for _ in layers],
        }
        manifest = {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": self.json_blob(cfg, MT_CONFIG),
            "layers": descs,
        }
        return self.json_blob(manifest, MT_MANIFEST, platform={"architecture": arch, "os": "linux"})

    def finish(self, desc, tag="latest"):
        desc = dict(desc)
        desc["annotations"] = {"org.opencontainers.image.ref.name": tag}
        index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [desc]}
        with open(os.path.join(self.path, "index.json"), "w") as f:
            json.dump(index, f, separators=(",", ":"))


def busybox_layer(work):
    """One layer: busybox-static, its applet symlinks, /etc/passwd and /etc/group."""
    rootfs = os.path.join(work, "busybox-rootfs")
    env = dict(os.environ)
    if os.geteuid() != 0:
        # The rootfs script chowns home/user to 1000; the tar records that owner anyway.
        shim = os.path.join(work, "shim")
        os.makedirs(shim, exist_ok=True)
        with open(os.path.join(shim, "chown"), "w") as f:
            f.write("#!/bin/sh\nexit 0\n")
        os.chmod(os.path.join(shim, "chown"), 0o755)
        env["PATH"] = shim + ":" + env["PATH"]
    subprocess.run(["sh", os.path.join(HERE, "build-busybox-rootfs.sh"), rootfs], check=True, env=env)
    layer = Layer()
    layer.add_tree(rootfs, owners={"home/user": (1000, 1000)})
    return layer


def build_busybox(out, busybox, compression="gzip"):
    lay = Layout(out)
    lay.finish(lay.image([busybox], compression))


def build_layered(out, busybox):
    """Three layers over busybox exercising whiteouts, opaque dirs, links, setuid and xattrs."""
    l1 = Layer()
    l1.dir("data")
    l1.file("data/keep.txt", b"kept from layer 1\n")
    l1.file("data/gone.txt", b"deleted by layer 3\n")
    l1.dir("data/gonedir")
    l1.file("data/gonedir/inner.txt", b"deleted with its directory by layer 3\n")
    l1.dir("data/opaque")
    l1.file("data/opaque/old.txt", b"hidden by layer 3's opaque marker\n")
    l1.file("data/hardlink-src.txt", b"one inode, two names\n")
    l1.hardlink("data/hardlink-dst.txt", "data/hardlink-src.txt")
    l1.symlink("data/symlink-rel", "keep.txt")
    l1.symlink("data/symlink-abs", "/data/keep.txt")
    l1.file("data/setuid", b"#!/bin/sh\necho setuid\n", mode=0o4755)
    l1.file("data/xattr.txt", b"carries user.krs=test\n", xattrs={"user.krs": "test"})
    l1.file("data/owned.txt", b"owned by 1000:1000\n", mode=0o640, uid=1000, gid=1000)

    l2 = Layer()
    l2.dir("data")
    l2.file("data/keep.txt", b"replaced by layer 2\n")
    l2.file("data/added.txt", b"added by layer 2\n")
    l2.dir("data/opaque")
    l2.file("data/opaque/mid.txt", b"hidden by layer 3's opaque marker\n")

    l3 = Layer()
    l3.dir("data")
    l3.whiteout("data/gone.txt")
    l3.whiteout("data/gonedir")
    l3.dir("data/opaque")
    l3.opaque("data/opaque")
    l3.file("data/opaque/new.txt", b"the only file left in data/opaque\n")

    lay = Layout(out)
    lay.finish(lay.image([busybox, l1, l2, l3], "gzip"))


def build_multiarch(out, busybox):
    """An index with linux/amd64 (busybox) and linux/arm64 (a marker file only, not runnable)."""
    lay = Layout(out)
    amd64 = lay.image([busybox], "gzip", arch="amd64")
    arm = Layer()
    arm.file("ARCH", b"arm64\n")
    arm64 = lay.image([arm], "gzip", arch="arm64", config={"Cmd": ["/bin/false"]})
    index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [amd64, arm64]}
    lay.finish(lay.json_blob(index, MT_INDEX))


def build_big(out):
    """About 100 MB in 4 gzip layers of seeded random files (incompressible), 1 large + many small."""
    rng = random.Random(20261123)
    layers = []
    for n in range(4):
        layer = Layer()
        layer.dir(f"big{n}")
        layer.file(f"big{n}/large.bin", rng.randbytes(16 << 20))
        layer.dir(f"big{n}/small")
        for i in range(600):
            layer.file(f"big{n}/small/{i:04}.bin", rng.randbytes(rng.randrange(1024, 28 << 10)))
        layers.append(layer)
    lay = Layout(out)
    lay.finish(lay.image(layers, "gzip", config={"Cmd": ["/bin/false"]}))


IMAGES = ["busybox", "busybox-zstd", "layered", "multiarch", "big"]


def parse_args(images):
    """`OUTDIR [--only NAME,...]` from the command line: (absolute OUTDIR, the names to build)."""
    args = sys.argv[1:]
    if not args or args[0].startswith("-") or len(args) not in (1, 3) or (len(args) == 3 and args[1] != "--only"):
        sys.exit(f"usage: {sys.argv[0]} OUTDIR [--only NAME,...]   (names: {', '.join(images)})")
    only = images if len(args) == 1 else args[2].split(",")
    unknown = set(only) - set(images)
    if unknown:
        sys.exit(f"unknown image(s): {', '.join(sorted(unknown))}; known: {', '.join(images)}")
    return os.path.abspath(args[0]), only


def main():
    outdir, only = parse_args(IMAGES)
    if shutil.which("zstd") is None:
        sys.exit("zstd not found; install it with: apt-get install zstd")
    os.makedirs(outdir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="krs-test-images.") as work:
        busybox = busybox_layer(work)
        builders = {
            "busybox": lambda d: build_busybox(d, busybox),
            "busybox-zstd": lambda d: build_busybox(d, busybox, "zstd"),
            "layered": lambda d: build_layered(d, busybox),
            "multiarch": lambda d: build_multiarch(d, busybox),
            "big": build_big,
        }
        for name in only:
            tmp = os.path.join(outdir, f".{name}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            builders[name](tmp)
            final = os.path.join(outdir, name)
            shutil.rmtree(final, ignore_errors=True)
            os.rename(tmp, final)


if __name__ == "__main__":
    main()
