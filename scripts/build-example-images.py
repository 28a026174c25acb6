#!/usr/bin/env python3
"""Build the walkthrough's example images offline, from Debian packages.

Usage: scripts/build-example-images.py OUTDIR [--only NAME,...]

Writes OCI image layouts OUTDIR/busybox, OUTDIR/nginx, OUTDIR/hello-1.0 and OUTDIR/hello-2.0
(each tagged `latest` in its index.json), ready for `skopeo copy oci:OUTDIR/NAME:latest ...`
(scripts/example-registry.sh pushes them as library/busybox, library/nginx, hello:1.0,
hello:2.0) or `kubelet-rs image import OUTDIR/NAME --name ...`:

- busybox: the image of the tests (scripts/build-test-images.py), busybox-static only.
- nginx: busybox plus Debian's nginx (nginx-light) with the shared libraries `ldd` names, a
  minimal config serving a default page on port 80, logs to stdout/stderr (as the official
  image: symlinks under /var/log/nginx), master as root and workers as user nginx (101),
  `nginx -g 'daemon off;'`.
- hello-1.0, hello-2.0: busybox, then python3 (interpreter, its libraries, the standard
  library without tests, idle, tkinter, ensurepip, lib2to3, bytecode caches) and Flask with the
  Debian packages it depends on, then examples/hello/app.py with HELLO_VERSION=v1 or v2.
  The two share every layer but the last.

Deterministic like the test images (the writer is build-test-images.py's): the same machine,
with the same packages installed, gives the same digests.
"""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

_spec = importlib.util.spec_from_file_location("build_test_images", os.path.join(HERE, "build-test-images.py"))
bti = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bti)
Layer, Layout = bti.Layer, bti.Layout

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PY = "python3.11"
PY_EXCLUDE_DIRS = {"test", "tests", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data",
                   "__pycache__", "site-packages", "dist-packages", "distutils", f"config-3.11-x86_64-linux-gnu"}
# Extension modules the app never loads (and that would pull in more libraries).
DYNLOAD_SKIP = re.compile(r"^(_test|_xxtest|xxlimited|_ctypes_test|_curses|readline|_dbm|nis|ossaudiodev|audioop|_sqlite3|_tkinter)")
REQUIRED = {
    "nginx": ("/usr/sbin/nginx", "nginx-light"),
    "python": (f"/usr/bin/{PY}", "python3"),
    "flask": ("/usr/lib/python3/dist-packages/flask/__init__.py", "python3-flask"),
}


def need(what):
    path, package = REQUIRED[what]
    if not os.path.exists(path):
        sys.exit(f"{path} not found: the example images are built from Debian packages; install them with: "
                 f"apt-get install {package}")


def add_parents(layer, path):
    parts = path.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        d = "/".join(parts[:i])
        if d not in layer.entries:
            layer.dir(d)


def add_host_file(layer, src, dest=None):
    """Copy a file or symlink of this machine into the layer at the same path (or `dest`)."""
    dest = (dest or src).lstrip("/")
    add_parents(layer, dest)
    if os.path.islink(src):
        layer.symlink(dest, os.readlink(src))
    else:
        with open(src, "rb") as f:
            layer.file(dest, f.read(), os.stat(src).st_mode & 0o7777)


def add_libraries(layer, binaries):
    """The shared libraries (and loader) `ldd` names for the binaries, each stored as a regular
    file at the path ldd prints, so the image needs no /lib symlinks of its own."""
    for binary in binaries:
        out = subprocess.run(["ldd", binary], check=True, stdout=subprocess.PIPE, text=True).stdout
        for line in out.splitlines():
            m = re.search(r"(/\S+) \(0x", line)
            if m and m.group(1).lstrip("/") not in layer.entries:
                add_host_file(layer, os.path.realpath(m.group(1)), m.group(1))


NGINX_CONF = b"""# The example nginx image's configuration (scripts/build-example-images.py).
user nginx;
worker_processes 1;
error_log /var/log/nginx/error.log notice;
pid /run/nginx.pid;

events {
    worker_connections 1024;
}

http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log /var/log/nginx/access.log;
    server {
        listen 80;
        server_name localhost;
        root /usr/share/nginx/html;
        index index.html;
    }
}
"""

NGINX_INDEX = b"""<!DOCTYPE html>
<html>
<head><title>Welcome to nginx!</title></head>
<body>
<h1>Welcome to nginx!</h1>
<p>If you see this page, the nginx web server is successfully installed and working.</p>
</body>
</html>
"""


def nginx_layer():
    need("nginx")
    layer = Layer()
    add_host_file(layer, "/usr/sbin/nginx")
    add_libraries(layer, ["/usr/sbin/nginx"])
    add_host_file(layer, "/etc/nginx/mime.types")
    layer.file("etc/nginx/nginx.conf", NGINX_CONF)
    add_parents(layer, "usr/share/nginx/html/index.html")
    layer.file("usr/share/nginx/html/index.html", NGINX_INDEX)
    add_parents(layer, "var/log/nginx/x")
    layer.symlink("var/log/nginx/access.log", "/dev/stdout")
    layer.symlink("var/log/nginx/error.log", "/dev/stderr")
    add_parents(layer, "var/lib/nginx/x")
    layer.dir("var/cache/nginx")
    layer.dir("run")
    # busybox's users and groups plus nginx's, as in the official image (uid and gid 101).
    layer.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n"
               b"nginx:x:101:101:nginx:/nonexistent:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    layer.file("etc/group", b"root:x:0:\ntty:x:5:\nnginx:x:101:\nuser:x:1000:\nnogroup:x:65534:\n")
    return layer


def python_deps(package, seen):
    """`package` and the python3-* packages it depends on, recursively (first installed
    alternative of each dependency)."""
    if package in seen:
        return
    seen.add(package)
    depends = subprocess.run(["dpkg-query", "-W", "-f=${Depends}", package], check=True,
                             stdout=subprocess.PIPE, text=True).stdout
    for dep in filter(None, (d.strip() for d in depends.split(","))):
        for alt in dep.split("|"):
            name = alt.strip().split(" ")[0].split(":")[0]
            if not name.startswith("python3-") or name == "python3-minimal":
                continue
            if subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True).stdout.endswith(" installed"):
                python_deps(name, seen)
                break


def python_layer():
    """python3.11 with the libraries it and its extension modules need, the standard library
    (trimmed), and Flask with its dependencies from /usr/lib/python3/dist-packages."""
    need("python")
    need("flask")
    layer = Layer()
    add_host_file(layer, f"/usr/bin/{PY}")
    layer.symlink("usr/bin/python3", PY)
    stdlib = f"/usr/lib/{PY}"
    extensions = []
    for dirpath, dirnames, filenames in os.walk(stdlib):
        dirnames[:] = sorted(d for d in dirnames if d not in PY_EXCLUDE_DIRS)
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            if name.endswith(".pyc"):
                continue
            if dirpath.endswith("lib-dynload"):
                if DYNLOAD_SKIP.match(name):
                    continue
                extensions.append(full)
            add_host_file(layer, full)
    packages = set()
    python_deps("python3-flask", packages)
    for package in sorted(packages):
        files = subprocess.run(["dpkg-query", "-L", package], check=True, stdout=subprocess.PIPE, text=True).stdout
        for path in files.splitlines():
            if not path.startswith("/usr/lib/python3/dist-packages/") or "__pycache__" in path:
                continue
            if os.path.islink(path) or os.path.isfile(path):
                if path.endswith(".so"):
                    extensions.append(path)
                add_host_file(layer, path)
    add_libraries(layer, [f"/usr/bin/{PY}"] + extensions)
    return layer


def app_layer():
    layer = Layer()
    layer.dir("app")
    with open(os.path.join(REPO, "examples/hello/app.py"), "rb") as f:
        layer.file("app/app.py", f.read())
    return layer


def build_nginx(out, busybox):
    lay = Layout(out)
    config = {
        "Env": [PATH_ENV],
        "Cmd": ["nginx", "-g", "daemon off;"],
        "ExposedPorts": {"80/tcp": {}},
        "StopSignal": "SIGQUIT",
        "WorkingDir": "/",
    }
    lay.finish(lay.image([busybox, nginx_layer()], "gzip", config=config))


def build_hello(out, busybox, python, version):
    lay = Layout(out)
    config = {
        "Env": [PATH_ENV, "PYTHONUNBUFFERED=1", f"HELLO_VERSION={version}"],
        "Cmd": ["python3", "app.py"],
        "ExposedPorts": {"5000/tcp": {}},
        "WorkingDir": "/app",
    }
    lay.finish(lay.image([busybox, python, app_layer()], "gzip", config=config))


IMAGES = ["busybox", "nginx", "hello-1.0", "hello-2.0"]


def main():
    outdir, only = bti.parse_args(IMAGES)
    os.makedirs(outdir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="krs-example-images.") as work:
        busybox = bti.busybox_layer(work)
        python = None
        for name in only:
            tmp = os.path.join(outdir, f".{name}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            if name == "busybox":
                bti.build_busybox(tmp, busybox)
            elif name == "nginx":
                build_nginx(tmp, busybox)
            else:
                python = python or python_layer()
                build_hello(tmp, busybox, python, "v" + name.split("-")[1].split(".")[0])
            final = os.path.join(outdir, name)
            shutil.rmtree(final, ignore_errors=True)
            os.rename(tmp, final)
            print(f"built {final}")


if __name__ == "__main__":
    main()
