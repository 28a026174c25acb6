//! The `pod-template-hash` label and the ReplicaSet name suffix: FNV-32a over the pod
//! template and, after a name collision, the collision count, printed in decimal and
//! "safe-encoded" into the alphabet kube-apiserver uses for generated names, as upstream's
//! ComputeHash does. Upstream hashes a Go debug dump of its own structs, which no other
//! implementation reproduces byte for byte; we hash the template's canonical JSON instead,
//! so the values differ from a real cluster's but are as stable and as collision-resistant.

use k8s_openapi::api::core::v1::PodTemplateSpec;

/// The hash label's key, on the ReplicaSet's selector, template and labels.
pub const LABEL: &str = "pod-template-hash";

const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

pub fn fnv32a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Map each character to the no-vowel alphabet, so a hash never spells a word.
pub fn safe_encode(s: &str) -> String {
    s.bytes().map(|b| ALPHANUMS[b as usize % ALPHANUMS.len()] as char).collect()
}

/// The hash of a template; `collision_count` changes it when a name is already taken by a
/// ReplicaSet with another template.
pub fn compute(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    // Struct field order and sorted label maps make this serialization canonical.
    let mut bytes = serde_json::to_vec(template).expect("a pod template serializes");
    if let Some(c) = collision_count {
        // Upstream writes an 8-byte buffer holding the count as a little-endian u32.
        let mut count = [0u8; 8];
        count[..4].copy_from_slice(&(c as u32).to_le_bytes());
        bytes.extend_from_slice(&count);
    }
    safe_encode(&fnv32a(&bytes).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv32a_matches_the_reference_vectors() {
        assert_eq!(fnv32a(b""), 0x811c9dc5);
        assert_eq!(fnv32a(b"a"), 0xe40c292c);
        assert_eq!(fnv32a(b"foobar"), 0xbf9cf968);
    }

    #[test]
    fn safe_encoding_uses_the_name_alphabet() {
        // '0' is byte 48, 48 % 27 = 21 -> '4'; '9' is 57, 57 % 27 = 3 -> 'f'.
        assert_eq!(safe_encode("09"), "4f");
        let h = compute(&PodTemplateSpec::default(), None);
        assert!(h.bytes().all(|b| ALPHANUMS.contains(&b)), "{h}");
    }

    #[test]
    fn the_collision_count_and_the_template_change_the_hash() {
        let t = PodTemplateSpec::default();
        assert_eq!(compute(&t, None), compute(&t, None));
        assert_ne!(compute(&t, None), compute(&t, Some(1)));
        let mut other = t.clone();
        other.metadata = Some(Default::default());
        other.metadata.as_mut().unwrap().labels = Some([("app".to_string(), "web".to_string())].into());
        assert_ne!(compute(&t, None), compute(&other, None));
    }
}
