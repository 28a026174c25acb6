//! The comment every rule carries: which kind of rule it is and its [`Owner`], so DEL, CHECK
//! and GC find exactly one attachment's rules. nft limits comments to 128 bytes and both
//! backends need them free of quotes and spaces, so long or unusual ids are hashed.

use super::Owner;

/// What a rule is for; the bridge's masquerade and portmap's rules are removed separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Masquerade,
    PortForward,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Masquerade => "krs-masq",
            Kind::PortForward => "krs-pm",
        }
    }
}

/// Longest comment we write (nft allows 128 bytes with the terminating NUL).
const MAX_LEN: usize = 120;
const MAX_NETWORK: usize = 48;

/// The comment of `owner`'s rules of `kind`: `krs-pm:<network>:<containerID>:<ifname>`, with
/// the network or the attachment replaced by `#<hash>` when too long or not plain.
pub fn comment(kind: Kind, owner: &Owner) -> String {
    let plain = format!("{}:{}:{}:{}", kind.prefix(), network_part(&owner.network), owner.container_id, owner.ifname);
    if plain.len() <= MAX_LEN && is_plain(&owner.container_id) && is_plain(&owner.ifname) {
        return plain;
    }
    let attachment = format!("{}\0{}", owner.container_id, owner.ifname);
    format!("{}:{}:#{}", kind.prefix(), network_part(&owner.network), hash128(&attachment))
}

/// The part of a comment that names the network, for GC.
pub fn network_prefix(kind: Kind, network: &str) -> String {
    format!("{}:{}:", kind.prefix(), network_part(network))
}

pub const KINDS: [Kind; 2] = [Kind::Masquerade, Kind::PortForward];

fn network_part(network: &str) -> String {
    if network.len() <= MAX_NETWORK && is_plain(network) {
        network.to_string()
    } else {
        format!("#{}", &hash128(network)[..16])
    }
}

fn is_plain(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Two FNV-1a 64 passes with different offsets: stable across builds and Rust versions
/// (unlike `DefaultHasher`), which matters because comments outlive the binary.
fn hash128(s: &str) -> String {
    let fnv = |mut h: u64| {
        for b in s.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    };
    format!("{:016x}{:016x}", fnv(0xcbf2_9ce4_8422_2325), fnv(0x6c62_272e_07bb_0142))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(network: &str, id: &str) -> Owner {
        Owner { network: network.into(), container_id: id.into(), ifname: "eth0".into() }
    }

    #[test]
    fn short_owners_are_readable() {
        assert_eq!(comment(Kind::PortForward, &owner("krs", "abc")), "krs-pm:krs:abc:eth0");
        assert_eq!(comment(Kind::Masquerade, &owner("krs", "abc")), "krs-masq:krs:abc:eth0");
        assert!(comment(Kind::PortForward, &owner("krs", "abc")).starts_with(&network_prefix(Kind::PortForward, "krs")));
    }

    #[test]
    fn long_or_odd_ids_are_hashed_and_fit() {
        let long = "f".repeat(200);
        for o in [owner("krs", &long), owner(&long, "abc"), owner("krs", "a b\"c")] {
            let c = comment(Kind::PortForward, &o);
            assert!(c.len() <= MAX_LEN, "{c}");
            assert!(c.chars().all(|c| !c.is_whitespace() && c != '"'), "{c}");
            assert!(c.starts_with(&network_prefix(Kind::PortForward, &o.network)), "{c}");
        }
        // The 64-hex ids runtimes use stay readable.
        let id = "0123456789abcdef".repeat(4);
        assert!(comment(Kind::PortForward, &owner("krs", &id)).contains(&id));
        assert_ne!(comment(Kind::PortForward, &owner("krs", &format!("{long}1"))), comment(Kind::PortForward, &owner("krs", &format!("{long}2"))));
        assert_eq!(hash128("x"), hash128("x"));
    }
}
