//! Stable short hashes for the names of rule objects: FNV-1a (64 bits) in base32, the same
//! across builds, Rust versions and restarts (unlike std's hasher), so a restarted proxy
//! writes, and recognises, the same names.

const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// The first `chars` base32 characters (5 bits each, at most 12 meaningful) of `text`'s hash.
pub(crate) fn base32(text: &str, chars: usize) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (0..chars).map(|i| ALPHABET[((h >> ((i * 5) % 64)) & 31) as usize] as char).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hashes_are_stable_and_differ_by_input() {
        assert_eq!(super::base32("default/web/tcp", 8), super::base32("default/web/tcp", 8));
        assert_ne!(super::base32("default/web/tcp", 8), super::base32("default/web/udp", 8));
        assert_eq!(super::base32("x", 13).len(), 13);
    }
}
