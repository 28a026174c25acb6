//! Sandbox ids and names: a random 64-hex id per sandbox, a unique name built from the pod's
//! metadata (as containerd reserves `<name>_<namespace>_<uid>_<attempt>`), and lookup of an id
//! by a unique prefix, as CRI clients (crictl) allow.

use std::collections::HashMap;
use std::io::Read;

use cri_api::runtime::v1::PodSandboxMetadata;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading random bytes for a sandbox id: {0}")]
    Random(#[source] std::io::Error),
    /// The kubelet retries a failed RunPodSandbox with the next attempt number, so a second
    /// sandbox with the same metadata is a caller bug or a race, never a retry.
    #[error("name {name:?} is reserved for sandbox {id:?}")]
    NameReserved { name: String, id: String },
    #[error("sandbox id prefix {prefix:?} is ambiguous: {count} sandboxes match")]
    Ambiguous { prefix: String, count: usize },
}

/// A new sandbox or container id: 32 random bytes in hex, like containerd's and Docker's ids.
pub fn new_id() -> Result<String, Error> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).map_err(Error::Random)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The sandbox's unique name: two sandboxes with equal metadata must not exist at once.
pub fn sandbox_name(m: &PodSandboxMetadata) -> String {
    format!("{}_{}_{}_{}", m.name, m.namespace, m.uid, m.attempt)
}

/// Names in use, each with the id holding it.
#[derive(Debug, Default)]
pub struct Names {
    by_name: HashMap<String, String>,
}

impl Names {
    pub fn reserve(&mut self, name: &str, id: &str) -> Result<(), Error> {
        match self.by_name.get(name) {
            Some(holder) if holder != id => Err(Error::NameReserved { name: name.to_string(), id: holder.clone() }),
            _ => {
                self.by_name.insert(name.to_string(), id.to_string());
                Ok(())
            }
        }
    }

    /// Frees `name` if `id` holds it (a stale release must not free another sandbox's name).
    pub fn release(&mut self, name: &str, id: &str) {
        if self.by_name.get(name).is_some_and(|holder| holder == id) {
            self.by_name.remove(name);
        }
    }
}

/// The one id among `ids` that is `prefix` or starts with it; `None` if none does.
pub fn resolve<'a>(ids: impl IntoIterator<Item = &'a String>, prefix: &str) -> Result<Option<String>, Error> {
    if prefix.is_empty() {
        return Ok(None);
    }
    let mut found: Vec<&String> = Vec::new();
    for id in ids {
        if id == prefix {
            return Ok(Some(id.clone()));
        }
        if id.starts_with(prefix) {
            found.push(id);
        }
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(Some(found[0].clone())),
        count => Err(Error::Ambiguous { prefix: prefix.to_string(), count }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_and_differ() {
        let (a, b) = (new_id().unwrap(), new_id().unwrap());
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }

    #[test]
    fn a_name_is_reserved_until_its_holder_releases_it() {
        let meta = PodSandboxMetadata { name: "web".into(), uid: "u1".into(), namespace: "default".into(), attempt: 1 };
        let name = sandbox_name(&meta);
        assert_eq!(name, "web_default_u1_1");
        let mut names = Names::default();
        names.reserve(&name, "id1").unwrap();
        names.reserve(&name, "id1").unwrap();
        let err = names.reserve(&name, "id2").unwrap_err();
        assert!(err.to_string().contains("is reserved for sandbox \"id1\""), "{err}");
        names.release(&name, "id2");
        assert!(names.reserve(&name, "id2").is_err(), "a non-holder freed the name");
        names.release(&name, "id1");
        names.reserve(&name, "id2").unwrap();
    }

    #[test]
    fn prefixes_resolve_to_one_id_or_fail() {
        let ids: Vec<String> = vec!["abc1".into(), "abc2".into(), "def".into()];
        assert_eq!(resolve(&ids, "d").unwrap().as_deref(), Some("def"));
        assert_eq!(resolve(&ids, "abc1").unwrap().as_deref(), Some("abc1"));
        assert_eq!(resolve(&ids, "x").unwrap(), None);
        assert_eq!(resolve(&ids, "").unwrap(), None);
        assert!(matches!(resolve(&ids, "abc"), Err(Error::Ambiguous { count: 2, .. })));
    }
}
