use std::io::Write;
use std::sync::Arc;
use std::os::unix::fs::MetadataExt;

use super::*;

fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A tar built entry by entry; raw headers for what `tar::Builder` refuses to write.
struct Tar {
    b: tar::Builder<Vec<u8>>,
}

impl Tar {
    fn new() -> Tar {
        Tar { b: tar::Builder::new(Vec::new()) }
    }

    fn header(kind: EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    fn dir(mut self, path: &str, mode: u32) -> Tar {
        let mut h = Self::header(EntryType::Directory, mode, 0);
        self.b.append_data(&mut h, path, io::empty()).unwrap();
        self
    }

    fn file(mut self, path: &str, mode: u32, data: &[u8]) -> Tar {
        let mut h = Self::header(EntryType::Regular, mode, data.len() as u64);
        self.b.append_data(&mut h, path, data).unwrap();
        self
    }

    fn with(mut self, mut h: tar::Header, path: &str, data: &[u8]) -> Tar {
        self.b.append_data(&mut h, path, data).unwrap();
        self
    }

    fn link(mut self, kind: EntryType, path: &str, target: &str) -> Tar {
        let mut h = Self::header(kind, 0o777, 0);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }

    /// An entry whose name and link name are written byte for byte.
    fn raw(mut self, kind: EntryType, name: &[u8], link: &[u8], data: &[u8]) -> Tar {
        let mut h = Self::header(kind, 0o644, data.len() as u64);
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    fn pax(mut self, records: &[(&str, &[u8])]) -> Tar {
        let mut data = Vec::new();
        for (k, v) in records {
            let body_len = 1 + k.len() + 1 + v.len() + 1;
            let mut len = body_len + 1;
            while len.to_string().len() + body_len != len {
                len += 1;
            }
            data.extend_from_slice(format!("{len} {k}=").as_bytes());
            data.extend_from_slice(v);
            data.push(b'\n');
        }
        let mut h = Self::header(EntryType::XHeader, 0o644, data.len() as u64);
        h.as_old_mut().name[..9].copy_from_slice(b"PaxHeader");
        h.set_cksum();
        self.b.append(&h, &data[..]).unwrap();
        self
    }

    fn bytes(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

struct Place {
    top: tempfile::TempDir,
}

impl Place {
    fn new() -> Place {
        let top = tempfile::tempdir().unwrap();
        fs::create_dir(top.path().join("snapshots")).unwrap();
        fs::create_dir(top.path().join("outside")).unwrap();
        Place { top }
    }
    fn snapshots(&self) -> PathBuf {
        self.top.path().join("snapshots")
    }
    fn outside(&self) -> PathBuf {
        self.top.path().join("outside")
    }
    fn unpack(&self, data: &[u8]) -> Result<Unpacked, UnpackError> {
        unpack_layer(&self.snapshots(), "layer", None, data)
    }
    /// Nothing outside the snapshot directory was touched, and a refused layer left nothing.
    fn assert_untouched(&self) {
        let mut top: Vec<_> = fs::read_dir(self.top.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        top.sort();
        assert_eq!(top, vec!["outside", "snapshots"]);
        assert_eq!(fs::read_dir(self.outside()).unwrap().count(), 0, "something was written outside");
        let left: Vec<_> = fs::read_dir(self.snapshots()).unwrap().map(|e| e.unwrap().file_name()).filter(|n| n != ".lock-layer").collect();
        assert!(left.is_empty(), "a refused layer left {left:?}");
    }
}

#[test]
fn files_dirs_symlinks_and_hardlinks_are_unpacked_with_modes_and_mtimes() {
    let tar = Tar::new()
        .dir("./", 0o755)
        .dir("bin", 0o750)
        .file("bin/tool", 0o4751, b"#!/bin/sh\n")
        .file("etc/implicit-parent", 0o640, b"x")
        .link(EntryType::Symlink, "bin/sh", "/bin/tool")
        .link(EntryType::Symlink, "dangling", "../../nowhere")
        .link(EntryType::Link, "bin/tool2", "bin/tool")
        .file("replaced", 0o644, b"first")
        .file("replaced", 0o600, b"second")
        .bytes();
    let p = Place::new();
    let u = p.unpack(&tar).unwrap();
    assert_eq!(u.diff_id, Digest::of(&tar));
    assert!(!u.existed);
    assert_eq!(u.fs, p.snapshots().join("layer/fs"));
    let fs_dir = &u.fs;
    let tool = fs::symlink_metadata(fs_dir.join("bin/tool")).unwrap();
    assert_eq!(tool.mode() & 0o7777, 0o4751);
    assert_eq!(tool.mtime(), 1_600_000_000);
    assert_eq!(tool.nlink(), 2);
    assert_eq!(fs::symlink_metadata(fs_dir.join("bin/tool2")).unwrap().ino(), tool.ino());
    let bin = fs::symlink_metadata(fs_dir.join("bin")).unwrap();
    assert_eq!((bin.mode() & 0o7777, bin.mtime()), (0o750, 1_600_000_000));
    assert_eq!(fs::read_link(fs_dir.join("bin/sh")).unwrap(), Path::new("/bin/tool"));
    assert_eq!(fs::symlink_metadata(fs_dir.join("bin/sh")).unwrap().mtime(), 1_600_000_000);
    assert_eq!(fs::read_link(fs_dir.join("dangling")).unwrap(), Path::new("../../nowhere"));
    assert_eq!(fs::read(fs_dir.join("etc/implicit-parent")).unwrap(), b"x");
    assert_eq!(fs::read(fs_dir.join("replaced")).unwrap(), b"second");
    assert_eq!(fs::read_to_string(p.snapshots().join("layer/diffid")).unwrap(), u.diff_id.to_string());
    assert_eq!(fs::read_dir(p.snapshots()).unwrap().count(), 2, "temp dir left behind (expected layer and its lock)");
    assert_eq!(fs::read_dir(p.outside()).unwrap().count(), 0);

    // Once: a second unpack does not read its input.
    let again = unpack_layer(&p.snapshots(), "layer", None, FailingReader).unwrap();
    assert_eq!((again.existed, again.diff_id), (true, u.diff_id));
}

struct FailingReader;
impl Read for FailingReader {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::other("must not be read"))
    }
}

#[test]
fn gzip_and_zstd_layers_are_detected_and_the_diffid_is_of_the_plain_tar() {
    let tar = Tar::new().dir("d", 0o755).file("d/f", 0o644, &[7u8; 100_000]).bytes();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    let p = Place::new();
    for (key, data, mt) in [
        ("gz", &gz, "application/vnd.oci.image.layer.v1.tar+gzip"),
        ("zst", &zst, "application/vnd.oci.image.layer.v1.tar+zstd"),
        ("plain", &tar, "application/vnd.oci.image.layer.v1.tar"),
    ] {
        let u = unpack_layer(&p.snapshots(), key, Some(mt), &data[..]).unwrap();
        assert_eq!(u.diff_id, Digest::of(&tar), "{key}");
        assert_eq!(fs::read(u.fs.join("d/f")).unwrap(), vec![7u8; 100_000], "{key}");
    }
    let err = unpack_layer(&p.snapshots(), "lie", Some("application/vnd.oci.image.layer.v1.tar+gzip"), &zst[..]).unwrap_err();
    assert!(err.to_string().contains("zstd"), "{err}");
    assert!(!p.snapshots().join("lie").exists());
}

/// Each hostile layer is refused with the entry named, and nothing is written anywhere.
#[test]
fn hostile_entries_are_refused_and_nothing_is_written_outside() {
    let p = Place::new();
    let outside = p.outside();
    let outside_s = outside.to_str().unwrap();
    let long = "a/".repeat(2100) + "f";
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("dotdot", Tar::new().raw(EntryType::Regular, b"../evil", b"", b"x").bytes(), "../evil"),
        ("dotdot-inner", Tar::new().raw(EntryType::Regular, b"a/../../evil", b"", b"x").bytes(), "a/../../evil"),
        ("absolute", Tar::new().raw(EntryType::Regular, format!("{outside_s}/evil").as_bytes(), b"", b"x").bytes(), "/evil"),
        (
            "through-symlink",
            Tar::new().link(EntryType::Symlink, "escape", outside_s).raw(EntryType::Regular, b"escape/evil", b"", b"x").bytes(),
            "escape/evil",
        ),
        (
            "through-inner-symlink",
            Tar::new().dir("real", 0o755).link(EntryType::Symlink, "alias", "real").raw(EntryType::Regular, b"alias/f", b"", b"x").bytes(),
            "alias/f",
        ),
        (
            "dir-through-symlink",
            Tar::new().link(EntryType::Symlink, "escape", outside_s).raw(EntryType::Directory, b"escape/sub/", b"", b"").bytes(),
            "escape/sub",
        ),
        (
            "hardlink-absolute",
            Tar::new().raw(EntryType::Link, b"pw", format!("{outside_s}/x").as_bytes(), b"").bytes(),
            "pw",
        ),
        ("hardlink-dotdot", Tar::new().raw(EntryType::Link, b"pw", b"../outside/x", b"").bytes(), "pw"),
        ("hardlink-missing", Tar::new().raw(EntryType::Link, b"pw", b"missing", b"").bytes(), "not an earlier entry"),
        (
            "hardlink-through-symlink",
            Tar::new()
                .file("d/f", 0o644, b"x")
                .link(EntryType::Symlink, "d", outside_s)
                .raw(EntryType::Link, b"pw", b"d/f", b"")
                .bytes(),
            "pw",
        ),
        ("whiteout-dotdot", Tar::new().raw(EntryType::Regular, b".wh...", b"", b"").bytes(), ".wh..."),
        ("oversize-name", Tar::new().file(&long, 0o644, b"x").bytes(), "longer than 4096"),
        ("unknown-type", Tar::new().raw(EntryType::new(b'Z'), b"odd", b"", b"").bytes(), "unsupported entry type"),
    ];
    for (case, data, named) in cases {
        let err = p.unpack(&data).expect_err(case);
        let msg = err.to_string();
        assert!(matches!(err, UnpackError::Refused { .. }), "{case}: {msg}");
        assert!(msg.contains(named), "{case}: {msg:?} does not name {named:?}");
        p.assert_untouched();
    }
}

#[test]
fn oversize_extension_headers_are_refused_before_they_are_read() {
    let p = Place::new();
    // A GNU long name claiming 64 MiB, compressed to almost nothing.
    let mut h = Tar::header(EntryType::GNULongName, 0o644, 64 << 20);
    h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
    h.set_cksum();
    let mut data = h.as_bytes().to_vec();
    data.resize(512 + (64 << 20), b'a');
    let zst = zstd::encode_all(&data[..], 1).unwrap();
    assert!(zst.len() < 100_000);
    let err = p.unpack(&zst).unwrap_err();
    assert!(err.to_string().contains("GNU long name of 67108864 bytes"), "{err}");
    p.assert_untouched();
    // PAX size records are followed: a big file behind a PAX header does not confuse it.
    let big = vec![9u8; 3 << 20];
    let tar = Tar::new().pax(&[("size", big.len().to_string().as_bytes())]).file("big", 0o644, &big).file("after", 0o644, b"x").bytes();
    let u = p.unpack(&tar).unwrap();
    assert_eq!(fs::read(u.fs.join("big")).unwrap().len(), big.len());
    assert_eq!(fs::read(u.fs.join("after")).unwrap(), b"x");
}

#[test]
fn long_names_within_limits_work() {
    let p = Place::new();
    let name = format!("{}/file", "d".repeat(200));
    let target = format!("{}/t", "e".repeat(200));
    let tar = Tar::new().file(&target, 0o644, b"t").file(&name, 0o644, b"x").link(EntryType::Symlink, "l", &target).link(EntryType::Link, "h", &target).bytes();
    let u = p.unpack(&tar).unwrap();
    assert_eq!(fs::read(u.fs.join(&name)).unwrap(), b"x");
    assert_eq!(fs::read_link(u.fs.join("l")).unwrap(), Path::new(&target));
    assert_eq!(fs::read(u.fs.join("h")).unwrap(), b"t");
}

#[test]
fn malformed_headers_are_refused() {
    let p = Place::new();
    let mut data = Tar::new().file("f", 0o644, b"x").bytes();
    data[148] ^= 0x01; // the checksum
    let err = p.unpack(&data).unwrap_err();
    assert!(matches!(err, UnpackError::Tar(_)), "{err}");
    let mut data = Tar::new().file("f", 0o644, b"hello").bytes();
    data[124..136].copy_from_slice(b"77777777777\0"); // size: 8 GiB, far past the end
    assert!(p.unpack(&data).is_err());
    p.assert_untouched();
}

#[test]
fn pax_xattrs_and_fifos_are_unpacked() {
    let p = Place::new();
    let tar = Tar::new()
        .pax(&[("SCHILY.xattr.user.note", b"hello")])
        .file("noted", 0o644, b"x")
        .with(Tar::header(EntryType::Fifo, 0o620, 0), "pipe", b"")
        .bytes();
    let u = p.unpack(&tar).unwrap();
    match xattr::get(u.fs.join("noted"), "user.note") {
        Ok(v) => assert_eq!(v.as_deref(), Some(&b"hello"[..])),
        Err(e) => panic!("user xattrs unsupported here? {e}"),
    }
    let pipe = fs::symlink_metadata(u.fs.join("pipe")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&pipe.file_type()));
    assert_eq!(pipe.mode() & 0o7777, 0o620);
}

#[test]
#[ignore = "needs root"]
fn whiteouts_become_overlay_whiteouts_and_opaque_dirs() {
    assert!(root(), "run as root (scripts/test does)");
    let p = Place::new();
    let tar = Tar::new()
        .dir("etc", 0o755)
        .file("etc/.wh.removed", 0o644, b"")
        .file("var/cache/.wh..wh..opq", 0o644, b"")
        .file(".wh..wh.plnk", 0o644, b"")
        .bytes();
    let u = p.unpack(&tar).unwrap();
    let w = fs::symlink_metadata(u.fs.join("etc/removed")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(&w.file_type()));
    assert_eq!(w.rdev(), 0);
    assert!(!u.fs.join("etc/.wh.removed").exists());
    assert_eq!(xattr::get(u.fs.join("var/cache"), "trusted.overlay.opaque").unwrap().as_deref(), Some(&b"y"[..]));
    assert!(!u.fs.join("var/cache/.wh..wh..opq").exists());
    assert!(!u.fs.join(".wh..wh.plnk").exists());
}

#[test]
#[ignore = "needs root"]
fn ownership_devices_and_privileged_xattrs_are_preserved_as_root() {
    assert!(root(), "run as root (scripts/test does)");
    let p = Place::new();
    let mut owned = Tar::header(EntryType::Regular, 0o2755, 1);
    owned.set_uid(1234);
    owned.set_gid(5678);
    let mut link = Tar::header(EntryType::Symlink, 0o777, 0);
    link.set_uid(42);
    link.set_gid(43);
    link.set_link_name("owned").unwrap();
    let mut null = Tar::header(EntryType::Char, 0o666, 0);
    null.set_device_major(1).unwrap();
    null.set_device_minor(3).unwrap();
    let mut blk = Tar::header(EntryType::Block, 0o660, 0);
    blk.set_device_major(7).unwrap();
    blk.set_device_minor(0).unwrap();
    let cap = [1u8, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]; // cap_net_bind_service
    let tar = Tar::new()
        .pax(&[("SCHILY.xattr.security.capability", &cap), ("SCHILY.xattr.trusted.x", b"t")])
        .with(owned, "owned", b"x")
        .with(link, "owned-link", b"")
        .with(null, "dev/null", b"")
        .with(blk, "dev/loop0", b"")
        .bytes();
    let u = p.unpack(&tar).unwrap();
    let m = fs::symlink_metadata(u.fs.join("owned")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1234, 5678, 0o2755));
    assert_eq!(xattr::get(u.fs.join("owned"), "security.capability").unwrap().as_deref(), Some(&cap[..]));
    assert_eq!(xattr::get(u.fs.join("owned"), "trusted.x").unwrap().as_deref(), Some(&b"t"[..]));
    let l = fs::symlink_metadata(u.fs.join("owned-link")).unwrap();
    assert_eq!((l.uid(), l.gid()), (42, 43));
    let n = fs::symlink_metadata(u.fs.join("dev/null")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(&n.file_type()));
    assert_eq!(n.rdev(), libc::makedev(1, 3));
    let b = fs::symlink_metadata(u.fs.join("dev/loop0")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_block_device(&b.file_type()));
    assert_eq!(b.rdev(), libc::makedev(7, 0));
}

#[test]
fn concurrent_unpacks_of_one_layer_agree_and_leave_one_snapshot() {
    let mut t = Tar::new();
    for i in 0..200 {
        t = t.file(&format!("d{}/f{i}", i % 10), 0o644, &[i as u8; 3000]);
    }
    let tar = Arc::new(t.bytes());
    let p = Place::new();
    let snapshots = p.snapshots();
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let (tar, snapshots) = (tar.clone(), snapshots.clone());
            std::thread::spawn(move || unpack_layer(&snapshots, "layer", None, &tar[..]).unwrap())
        })
        .collect();
    let results: Vec<Unpacked> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(results.iter().all(|u| u.diff_id == Digest::of(&tar) && u.fs == snapshots.join("layer/fs")));
    let mut names: Vec<_> = fs::read_dir(&snapshots).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, vec![".lock-layer", "layer"], "temp dirs left behind");
    assert_eq!(results.iter().filter(|u| !u.existed).count(), 1, "the layer was unpacked more than once");
    assert_eq!(fs::read(snapshots.join("layer/fs/d7/f197")).unwrap(), vec![197u8; 3000]);
}

/// Unmounts (lazily) when dropped, so a failing assertion leaves no mount behind.
struct Mounted(PathBuf);
impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
#[ignore = "needs root"]
fn snapshots_stack_as_overlayfs_lower_layers_with_whiteouts_honoured() {
    assert!(root(), "run as root (scripts/test does)");
    let p = Place::new();
    let base = Tar::new()
        .file("etc/a", 0o644, b"a")
        .file("etc/b", 0o644, b"b")
        .file("var/cache/old", 0o644, b"old")
        .bytes();
    let top = Tar::new()
        .file("etc/.wh.a", 0o644, b"")
        .file("var/cache/.wh..wh..opq", 0o644, b"")
        .file("var/cache/new", 0o644, b"new")
        .bytes();
    let base = unpack_layer(&p.snapshots(), "base", None, &base[..]).unwrap();
    let top = unpack_layer(&p.snapshots(), "top", None, &top[..]).unwrap();
    let target = tempfile::tempdir().unwrap();
    let options = format!("lowerdir={}:{}", top.fs.display(), base.fs.display());
    nix::mount::mount(Some("overlay"), target.path(), Some("overlay"), nix::mount::MsFlags::MS_RDONLY, Some(options.as_str()))
        .expect("mount overlay");
    let mounted = Mounted(target.path().to_path_buf());
    let m = &mounted.0;
    assert!(!m.join("etc/a").exists(), "the whiteout hides etc/a");
    assert_eq!(fs::read(m.join("etc/b")).unwrap(), b"b");
    let cache: Vec<_> = fs::read_dir(m.join("var/cache")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(cache, vec!["new"], "the opaque dir hides the lower var/cache");
}
