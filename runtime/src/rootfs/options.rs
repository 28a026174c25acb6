//! Mount options as the runtime spec and `mount(8)` write them, turned into `mount(2)` flags,
//! propagation changes and filesystem data.

use nix::mount::MsFlags;

/// The parsed `options` of one mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags for the mount call (without `MS_BIND`/`MS_REC`, kept in `bind`/`recursive`).
    pub flags: MsFlags,
    /// Flags the options explicitly cleared (`rw`, `suid`, `dev`, `exec`, ...).
    pub cleared: MsFlags,
    /// Propagation changes, applied after the mount in the order written.
    pub propagation: Vec<MsFlags>,
    /// Filesystem-specific options (`mode=755`, `size=64m`, `lowerdir=...`), comma-joined.
    pub data: Vec<String>,
    pub bind: bool,
    pub recursive: bool,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            flags: MsFlags::empty(),
            cleared: MsFlags::empty(),
            propagation: Vec::new(),
            data: Vec::new(),
            bind: false,
            recursive: false,
        }
    }
}

/// Options whose recursive or id-mapped forms need `mount_setattr(2)`, not supported yet.
const UNSUPPORTED: &[&str] = &[
    "rro", "rrw", "rnosuid", "rsuid", "rnodev", "rdev", "rnoexec", "rexec", "rnodiratime",
    "rdiratime", "rrelatime", "rnorelatime", "rnoatime", "ratime", "rstrictatime",
    "rnostrictatime", "rnosymfollow", "rsymfollow", "idmap", "ridmap", "tmpcopyup",
];

/// `(name, clear, flag)`: the option sets `flag`, or clears it when `clear` is true.
const FLAGS: &[(&str, bool, MsFlags)] = &[
    ("async", true, MsFlags::MS_SYNCHRONOUS),
    ("atime", true, MsFlags::MS_NOATIME),
    ("defaults", false, MsFlags::empty()),
    ("dev", true, MsFlags::MS_NODEV),
    ("diratime", true, MsFlags::MS_NODIRATIME),
    ("dirsync", false, MsFlags::MS_DIRSYNC),
    ("exec", true, MsFlags::MS_NOEXEC),
    ("iversion", false, MsFlags::MS_I_VERSION),
    ("lazytime", false, MsFlags::MS_LAZYTIME),
    ("loud", true, MsFlags::MS_SILENT),
    ("mand", false, MsFlags::MS_MANDLOCK),
    ("noatime", false, MsFlags::MS_NOATIME),
    ("nodev", false, MsFlags::MS_NODEV),
    ("nodiratime", false, MsFlags::MS_NODIRATIME),
    ("noexec", false, MsFlags::MS_NOEXEC),
    ("noiversion", true, MsFlags::MS_I_VERSION),
    ("nolazytime", true, MsFlags::MS_LAZYTIME),
    ("nomand", true, MsFlags::MS_MANDLOCK),
    ("norelatime", true, MsFlags::MS_RELATIME),
    ("nostrictatime", true, MsFlags::MS_STRICTATIME),
    ("nosuid", false, MsFlags::MS_NOSUID),
    ("nosymfollow", false, MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW)),
    ("symfollow", true, MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW)),
    ("relatime", false, MsFlags::MS_RELATIME),
    ("remount", false, MsFlags::MS_REMOUNT),
    ("ro", false, MsFlags::MS_RDONLY),
    ("rw", true, MsFlags::MS_RDONLY),
    ("silent", false, MsFlags::MS_SILENT),
    ("strictatime", false, MsFlags::MS_STRICTATIME),
    ("suid", true, MsFlags::MS_NOSUID),
    ("sync", false, MsFlags::MS_SYNCHRONOUS),
];

const PROPAGATION: &[(&str, MsFlags)] = &[
    ("private", MsFlags::MS_PRIVATE),
    ("rprivate", MsFlags::MS_PRIVATE.union(MsFlags::MS_REC)),
    ("shared", MsFlags::MS_SHARED),
    ("rshared", MsFlags::MS_SHARED.union(MsFlags::MS_REC)),
    ("slave", MsFlags::MS_SLAVE),
    ("rslave", MsFlags::MS_SLAVE.union(MsFlags::MS_REC)),
    ("unbindable", MsFlags::MS_UNBINDABLE),
    ("runbindable", MsFlags::MS_UNBINDABLE.union(MsFlags::MS_REC)),
];

/// The flags for a propagation name (`rootfsPropagation`, or a mount option).
pub fn propagation_flags(name: &str) -> Option<MsFlags> {
    PROPAGATION.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// Every option name `parse` understands, for `features`.
pub fn known_options() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = FLAGS.iter().map(|(n, _, _)| *n).chain(PROPAGATION.iter().map(|(n, _)| *n)).collect();
    names.extend(["bind", "rbind"]);
    names.sort();
    names
}

impl MountOptions {
    /// Parse a mount's options; an unsupported one is an error naming it.
    pub fn parse<S: AsRef<str>>(options: &[S]) -> Result<Self, String> {
        let mut o = MountOptions::default();
        for opt in options {
            let opt = opt.as_ref();
            match opt {
                "bind" => o.bind = true,
                "rbind" => {
                    o.bind = true;
                    o.recursive = true;
                }
                _ if UNSUPPORTED.contains(&opt) => {
                    return Err(format!("mount option {opt:?} is not supported by runtime-rs yet"));
                }
                _ => {
                    if let Some((_, clear, flag)) = FLAGS.iter().find(|(n, _, _)| *n == opt) {
                        if *clear {
                            o.flags.remove(*flag);
                            o.cleared.insert(*flag);
                        } else {
                            o.flags.insert(*flag);
                            o.cleared.remove(*flag);
                        }
                    } else if let Some(p) = propagation_flags(opt) {
                        o.propagation.push(p);
                    } else {
                        o.data.push(opt.to_string());
                    }
                }
            }
        }
        Ok(o)
    }

    pub fn data_string(&self) -> Option<String> {
        if self.data.is_empty() { None } else { Some(self.data.join(",")) }
    }

    /// Flags that a bind mount only takes effect with through a second, remounting call.
    pub fn needs_bind_remount(&self) -> bool {
        let remountable = MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC
            | MsFlags::MS_NOATIME
            | MsFlags::MS_NODIRATIME
            | MsFlags::MS_RELATIME
            | MsFlags::MS_STRICTATIME
            | MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW);
        self.flags.intersects(remountable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_dev_mount() {
        let o = MountOptions::parse(&["nosuid", "strictatime", "mode=755", "size=65536k"]).unwrap();
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(o.data_string().as_deref(), Some("mode=755,size=65536k"));
        assert!(!o.bind);
    }

    #[test]
    fn rbind_with_propagation_and_ro() {
        let o = MountOptions::parse(&["rbind", "rprivate", "ro", "nosuid"]).unwrap();
        assert!(o.bind && o.recursive);
        assert_eq!(o.propagation, vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC]);
        assert!(o.flags.contains(MsFlags::MS_RDONLY));
        assert!(o.needs_bind_remount());
        assert_eq!(o.data_string(), None);
    }

    #[test]
    fn later_option_wins() {
        let o = MountOptions::parse(&["ro", "rw"]).unwrap();
        assert!(!o.flags.contains(MsFlags::MS_RDONLY));
        assert!(o.cleared.contains(MsFlags::MS_RDONLY));
        let o = MountOptions::parse(&["rw", "ro"]).unwrap();
        assert!(o.flags.contains(MsFlags::MS_RDONLY));
        assert!(!o.cleared.contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn plain_bind_needs_no_remount() {
        let o = MountOptions::parse(&["bind"]).unwrap();
        assert!(o.bind && !o.recursive && !o.needs_bind_remount());
    }

    #[test]
    fn unsupported_option_is_named() {
        let err = MountOptions::parse(&["rbind", "rro"]).unwrap_err();
        assert!(err.contains("\"rro\""), "{err}");
    }

    #[test]
    fn propagation_names() {
        assert_eq!(propagation_flags("rslave"), Some(MsFlags::MS_SLAVE | MsFlags::MS_REC));
        assert_eq!(propagation_flags("bogus"), None);
    }
}
