//! The container hash the kubelet records on each container (`io.kubernetes.container.hash`)
//! and compares with the spec's to decide whether a running container is still the one the
//! spec asks for.
//!
//! It covers the whole container spec except `resources` (resized in place, never a reason
//! to restart): the container serialized as JSON without that key, hashed with 32-bit
//! FNV-1a and written in lowercase hex (the upstream annotation's format). The pod spec is
//! immutable apart from images and resources, so in practice an image change is what
//! changes it; a kubelet-rs built against a k8s-openapi that serializes containers
//! differently would see different hashes, and restart containers once.

use k8s_openapi::api::core::v1::Container;

const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(FNV_OFFSET, |h, b| (h ^ u32::from(*b)).wrapping_mul(FNV_PRIME))
}

pub fn container_hash(container: &Container) -> String {
    let mut value = serde_json::to_value(container).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.remove("resources");
    }
    let json = serde_json::to_vec(&value).unwrap_or_default();
    format!("{:x}", fnv1a32(&json))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn c(image: &str) -> Container {
        Container { name: "web".into(), image: Some(image.into()), ..Default::default() }
    }

    #[test]
    fn fnv_matches_known_vectors() {
        assert_eq!(fnv1a32(b""), 0x811c9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9cf968);
    }

    #[test]
    fn stable_and_changed_by_the_image_not_by_resources() {
        let a = container_hash(&c("nginx:1.27"));
        assert_eq!(a, container_hash(&c("nginx:1.27")));
        assert!(a.chars().all(|ch| ch.is_ascii_hexdigit() && !ch.is_ascii_uppercase()), "{a}");
        assert_ne!(a, container_hash(&c("nginx:1.28")));
        let mut resized = c("nginx:1.27");
        resized.resources = Some(ResourceRequirements {
            limits: Some([("cpu".to_string(), Quantity("1".into()))].into()),
            ..Default::default()
        });
        assert_eq!(a, container_hash(&resized));
        let mut with_args = c("nginx:1.27");
        with_args.args = Some(vec!["-g".into()]);
        assert_ne!(a, container_hash(&with_args));
    }
}
