//! Content digests (`sha256:<64 hex>`), as the OCI image spec defines them, and a writer that
//! computes one while data streams through it.

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    /// The 64 lowercase hex characters of a sha256 digest.
    hex: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("digest {0:?}: only sha256 digests are supported")]
    Algorithm(String),
    #[error("digest {0:?}: expected sha256: followed by 64 lowercase hex characters")]
    Malformed(String),
}

impl Digest {
    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Digest {
        Digest { hex: hex(&Sha256::digest(data)) }
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Digest, DigestError> {
        let Some((alg, hex)) = s.split_once(':') else { return Err(DigestError::Malformed(s.into())) };
        if alg != "sha256" {
            return Err(DigestError::Algorithm(s.into()));
        }
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(DigestError::Malformed(s.into()));
        }
        Ok(Digest { hex: hex.into() })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Passes writes through to `inner` while hashing them and counting bytes.
pub struct DigestWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> DigestWriter<W> {
    pub fn new(inner: W) -> Self {
        DigestWriter { inner, hasher: Sha256::new(), written: 0 }
    }

    /// How many bytes have passed through so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The digest and size of everything written, and the inner writer.
    pub fn finish(self) -> (Digest, u64, W) {
        (Digest { hex: hex(&self.hasher.finalize()) }, self.written, self.inner)
    }
}

impl<W: Write> Write for DigestWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn the_empty_digest_round_trips() {
        let d = Digest::of(b"");
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(EMPTY.parse::<Digest>().unwrap(), d);
    }

    #[test]
    fn bad_digests_are_named() {
        assert_eq!("sha512:ab".parse::<Digest>(), Err(DigestError::Algorithm("sha512:ab".into())));
        assert!(matches!("sha256:XYZ".parse::<Digest>(), Err(DigestError::Malformed(_))));
        assert!(matches!("nocolon".parse::<Digest>(), Err(DigestError::Malformed(_))));
        let upper = EMPTY.to_uppercase().replace("SHA256", "sha256");
        assert!(upper.parse::<Digest>().is_err(), "hex must be lowercase");
    }

    #[test]
    fn the_writer_hashes_and_counts_what_passes() {
        let mut w = DigestWriter::new(Vec::new());
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        let (d, n, inner) = w.finish();
        assert_eq!((d, n), (Digest::of(b"hello world"), 11));
        assert_eq!(inner, b"hello world");
    }
}
