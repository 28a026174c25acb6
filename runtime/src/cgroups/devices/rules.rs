//! Device rules: what `linux.resources.devices` says, plus the devices every container may
//! use, as one ordered list, and what that list decides for one access.
//!
//! Semantics: the rules are read in order and, for each kind of access (mknod, read, write)
//! on its own, the last rule that matches the device and names that access decides. An access
//! no rule decides is denied. An open for reading and writing is allowed only when both are.
//! This is cgroup v1's allow/deny list as runc emulates it, except in two corners where v1
//! (and runc) differ from what the rules say: a deny inside an earlier wildcard allow does
//! punch a hole (v1 ignores it, runc refuses the config), and a rule of type `a` keeps its
//! major, minor and access (v1 treats any `a` rule as "every device, rwm").

use std::fmt;
use std::path::Path;

use crate::rootfs::DEFAULT_DEVICES;
use crate::spec::{Device, DeviceKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceType {
    Char,
    Block,
}

impl DeviceType {
    /// The type as `struct bpf_cgroup_dev_ctx` gives it (`BPF_DEVCG_DEV_*`).
    pub const fn bpf(self) -> u32 {
        match self {
            DeviceType::Block => 1,
            DeviceType::Char => 2,
        }
    }

    fn letter(self) -> char {
        match self {
            DeviceType::Char => 'c',
            DeviceType::Block => 'b',
        }
    }
}

/// A set of accesses, with the kernel's bit values (`BPF_DEVCG_ACC_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Access(u8);

impl Access {
    pub const MKNOD: Access = Access(1);
    pub const READ: Access = Access(2);
    pub const WRITE: Access = Access(4);
    pub const ALL: Access = Access(7);
    /// Each single access, in the order programs test them.
    pub const EACH: [Access; 3] = [Access::MKNOD, Access::READ, Access::WRITE];

    /// Parse `rwm` letters; the error is the first letter that is none of them.
    pub fn parse(s: &str) -> Result<Access, char> {
        let mut bits = 0;
        for c in s.chars() {
            bits |= match c {
                'm' => 1,
                'r' => 2,
                'w' => 4,
                other => return Err(other),
            };
        }
        Ok(Access(bits))
    }

    pub const fn bits(self) -> u8 {
        self.0
    }

    pub const fn from_bits(bits: u8) -> Access {
        Access(bits & 7)
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub const fn contains(self, other: Access) -> bool {
        self.0 & other.0 == other.0
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (bit, c) in [(Access::READ, 'r'), (Access::WRITE, 'w'), (Access::MKNOD, 'm')] {
            if self.contains(bit) {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// One allow or deny rule. `None` is a wildcard: any type, major or minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRule {
    pub allow: bool,
    pub kind: Option<DeviceType>,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: Access,
}

impl DeviceRule {
    pub const fn allow(kind: Option<DeviceType>, major: Option<u32>, minor: Option<u32>, access: Access) -> DeviceRule {
        DeviceRule { allow: true, kind, major, minor, access }
    }

    /// Whether the rule is about this device (access aside).
    pub fn matches(&self, kind: DeviceType, major: u32, minor: u32) -> bool {
        self.kind.is_none_or(|k| k == kind) && self.major.is_none_or(|m| m == major) && self.minor.is_none_or(|m| m == minor)
    }

    /// A rule that matches every device.
    pub fn is_unconditional(&self) -> bool {
        self.kind.is_none() && self.major.is_none() && self.minor.is_none()
    }
}

/// As cgroup v1's `devices.list` writes a rule: `allow c 1:3 rwm`, `deny a *:* rwm`.
impl fmt::Display for DeviceRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let num = |n: Option<u32>| n.map_or_else(|| "*".to_string(), |n| n.to_string());
        write!(
            f,
            "{} {} {}:{} {}",
            if self.allow { "allow" } else { "deny" },
            self.kind.map_or('a', DeviceType::letter),
            num(self.major),
            num(self.minor),
            self.access
        )
    }
}

/// Whether `rules` let a process make the access `access` (one or more bits) to a device.
/// This is the meaning the generated program must have; tests compare the two.
pub fn decide(rules: &[DeviceRule], kind: DeviceType, major: u32, minor: u32, access: Access) -> bool {
    Access::EACH.iter().filter(|bit| access.contains(**bit)).all(|bit| {
        rules
            .iter()
            .rev()
            .find(|r| r.access.contains(*bit) && r.matches(kind, major, minor))
            .is_some_and(|r| r.allow)
    })
}

const CHAR: Option<DeviceType> = Some(DeviceType::Char);

/// What every container may do besides its own rules, as runc (1.2.4 and later) allows it:
/// mknod of any device (opening it is another matter), the pty slaves of its devpts
/// (136:*), `/dev/ptmx` (5:2) and tun/tap (10:200; runc 1.2.0 dropped it and 1.2.4 put it
/// back, because orchestrators such as Kubernetes give users no easy way to allow it). Not
/// `/dev/console` (5:1): a container's console is a pty slave. The default nodes
/// (`/dev/null` and the others) are added by [`container_rules`] unless the spec puts a
/// device of its own at their path.
pub const ALWAYS_ALLOWED: &[DeviceRule] = &[
    DeviceRule::allow(CHAR, None, None, Access::MKNOD),
    DeviceRule::allow(Some(DeviceType::Block), None, None, Access::MKNOD),
    DeviceRule::allow(CHAR, Some(136), None, Access::ALL),
    DeviceRule::allow(CHAR, Some(5), Some(2), Access::ALL),
    DeviceRule::allow(CHAR, Some(10), Some(200), Access::ALL),
];

/// The container's whole rule list: its own rules (`linux.resources.devices`) first, then
/// the allowed defaults, then full access to each device of `linux.devices`, which the spec
/// says must be available in the container. Like runc, the defaults come after the
/// container's rules, so those cannot take them away.
pub fn container_rules(own: Vec<DeviceRule>, spec_devices: &[Device]) -> Vec<DeviceRule> {
    let mut rules = own;
    rules.extend_from_slice(ALWAYS_ALLOWED);
    for (path, major, minor) in DEFAULT_DEVICES {
        // A spec device at the same path replaces the default node (see rootfs::devices).
        if !spec_devices.iter().any(|d| d.path == Path::new(path)) {
            rules.push(DeviceRule::allow(CHAR, Some(*major as u32), Some(*minor as u32), Access::ALL));
        }
    }
    for d in spec_devices {
        let kind = match d.kind {
            DeviceKind::Char => DeviceType::Char,
            DeviceKind::Block => DeviceType::Block,
            // The device controller does not check pipes.
            DeviceKind::Fifo => continue,
        };
        if let (Ok(major), Ok(minor)) = (u32::try_from(d.major), u32::try_from(d.minor)) {
            rules.push(DeviceRule::allow(Some(kind), Some(major), Some(minor), Access::ALL));
        }
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: DeviceType = DeviceType::Char;
    const B: DeviceType = DeviceType::Block;

    fn rule(allow: bool, kind: Option<DeviceType>, major: Option<u32>, minor: Option<u32>, access: &str) -> DeviceRule {
        DeviceRule { allow, kind, major, minor, access: Access::parse(access).unwrap() }
    }

    #[test]
    fn access_parses_letters_and_names_a_bad_one() {
        assert_eq!(Access::parse("rwm"), Ok(Access::ALL));
        assert_eq!(Access::parse("mr"), Ok(Access::from_bits(3)));
        assert_eq!(Access::parse(""), Ok(Access::default()));
        assert_eq!(Access::parse("rx"), Err('x'));
        assert_eq!(Access::from_bits(6).to_string(), "rw");
    }

    #[test]
    fn rules_print_like_devices_list() {
        assert_eq!(rule(true, Some(C), Some(1), Some(3), "rwm").to_string(), "allow c 1:3 rwm");
        assert_eq!(rule(false, None, None, None, "rwm").to_string(), "deny a *:* rwm");
        assert_eq!(rule(true, Some(B), None, Some(0), "m").to_string(), "allow b *:0 m");
    }

    #[test]
    fn last_matching_rule_decides_each_access() {
        let rules = [
            rule(false, None, None, None, "rwm"),
            rule(true, Some(C), Some(1), None, "rw"),
            rule(false, Some(C), Some(1), Some(7), "w"),
        ];
        assert!(decide(&rules, C, 1, 3, Access::READ));
        assert!(decide(&rules, C, 1, 3, Access::parse("rw").unwrap()));
        assert!(!decide(&rules, C, 1, 3, Access::MKNOD));
        assert!(decide(&rules, C, 1, 7, Access::READ));
        assert!(!decide(&rules, C, 1, 7, Access::WRITE));
        assert!(!decide(&rules, C, 1, 7, Access::parse("rw").unwrap()), "read+write needs both");
        assert!(!decide(&rules, B, 1, 3, Access::READ));
        assert!(!decide(&[], C, 1, 3, Access::READ), "no rule: denied");
    }

    fn fuse() -> Device {
        Device { path: "/dev/fuse".into(), kind: DeviceKind::Char, major: 10, minor: 229, mode: 0o666, uid: 0, gid: 0 }
    }

    #[test]
    fn container_rules_add_defaults_and_spec_devices_after_the_own_rules() {
        let deny_all = rule(false, None, None, None, "rwm");
        let rules = container_rules(vec![deny_all], &[fuse()]);
        assert_eq!(rules[0], deny_all);
        for (major, minor) in [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 2), (136, 4), (10, 200), (10, 229)] {
            assert!(decide(&rules, C, major, minor, Access::ALL), "c {major}:{minor}");
        }
        assert!(decide(&rules, C, 1, 1, Access::MKNOD), "mknod of anything, as runc");
        assert!(decide(&rules, B, 8, 0, Access::MKNOD));
        assert!(!decide(&rules, C, 1, 1, Access::READ), "/dev/mem");
        assert!(!decide(&rules, C, 5, 1, Access::READ), "/dev/console is a pty in a container");
        assert!(!decide(&rules, C, 10, 201, Access::READ));
        assert!(!decide(&rules, B, 8, 0, Access::READ));
    }

    #[test]
    fn a_spec_device_at_a_default_path_replaces_the_default_rule() {
        let null = Device { path: "/dev/null".into(), kind: DeviceKind::Char, major: 1, minor: 13, mode: 0o666, uid: 0, gid: 0 };
        let fifo = Device { path: "/dev/p".into(), kind: DeviceKind::Fifo, major: 0, minor: 0, mode: 0o666, uid: 0, gid: 0 };
        let rules = container_rules(vec![rule(false, None, None, None, "rwm")], &[null, fifo]);
        assert!(decide(&rules, C, 1, 13, Access::READ));
        assert!(!decide(&rules, C, 1, 3, Access::READ));
        assert!(!decide(&rules, C, 0, 0, Access::READ), "a fifo adds no rule");
    }
}
