//! Duplicate-field detection, the other half of `fieldValidation=Strict|Warn`. A parsed
//! `serde_json::Value` has already kept only the last of two equal keys, so this reads the raw
//! request body once more, remembering the keys of each object as it goes.

use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// The duplicated fields of a JSON body in document order, worded as kube-apiserver's strict
/// decoding does (`duplicate field "metadata.name"`). Errors only if `body` is not JSON.
pub fn duplicate_fields(body: &[u8]) -> Result<Vec<String>, serde_json::Error> {
    let mut found = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    Walk { path: String::new(), found: &mut found }.deserialize(&mut de)?;
    de.end()?;
    Ok(found)
}

struct Walk<'a> {
    path: String,
    found: &'a mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        for i in 0.. {
            let path = format!("{}[{i}]", self.path);
            if seq.next_element_seed(Walk { path, found: &mut *self.found })?.is_none() {
                break;
            }
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() { key.clone() } else { format!("{}.{key}", self.path) };
            if !seen.insert(key) {
                self.found.push(format!("duplicate field \"{path}\""));
            }
            map.next_value_seed(Walk { path, found: &mut *self.found })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_found_at_any_depth() {
        let body = br#"{"kind":"Pod","metadata":{"name":"a","name":"b"},"spec":{"containers":[{"name":"c","image":"x","image":"y"}]},"kind":"Pod"}"#;
        assert_eq!(
            duplicate_fields(body).unwrap(),
            vec!["duplicate field \"metadata.name\"", "duplicate field \"spec.containers[0].image\"", "duplicate field \"kind\""]
        );
    }

    #[test]
    fn clean_bodies_and_bad_json() {
        assert!(duplicate_fields(br#"{"a":[1,2.5,-3,null,true,"s",{"b":{}}],"c":{"a":1}}"#).unwrap().is_empty());
        assert!(duplicate_fields(b"{\"a\":").is_err());
        assert!(duplicate_fields(b"{} trailing").is_err());
    }
}
