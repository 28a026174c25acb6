//! Compact JWS with ES256 (ECDSA P-256, SHA-256): the signature of service account tokens.
//! The signing key lives in the PKI dir as `sa.key` (PKCS#8 PEM) with its public half in
//! `sa.pub` (SPKI PEM, for whoever verifies tokens outside the server), made once and
//! reused, so tokens stay valid across restarts.
//!
//! Only ES256 is accepted when verifying: the algorithm in a token's header is never
//! trusted to pick the check (no `none`, no HMAC with the public key as secret).

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};

use super::atomic_file;

pub const KEY_FILE: &str = "sa.key";
pub const PUBLIC_KEY_FILE: &str = "sa.pub";

/// The DER prefix of a P-256 public key's SubjectPublicKeyInfo (id-ecPublicKey,
/// prime256v1, then the BIT STRING holding the 65-byte uncompressed point).
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("read signing key {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("write signing key {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "signing key {path} is not a PKCS#8 PEM ECDSA P-256 key (\"-----BEGIN PRIVATE KEY-----\"); remove it to have a new one made"
    )]
    BadKey { path: PathBuf },
    #[error("generating a signing key failed")]
    Generate,
    #[error("signing failed")]
    Sign,
    #[error("not a compact JWS (three base64url parts)")]
    Malformed,
    #[error("unsupported signing algorithm {0:?} (only ES256)")]
    Algorithm(String),
    #[error("invalid signature")]
    Signature,
    #[error("the payload is not a JSON object: {0}")]
    Payload(String),
}

/// An ES256 key pair, able to sign and verify.
pub struct SigningKey {
    pair: EcdsaKeyPair,
    /// The key id in every token's header: base64url(SHA-256(SPKI DER)), as kube-apiserver.
    kid: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key stays out of logs.
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish()
    }
}

impl SigningKey {
    /// A new key held in memory only (tests, servers without a PKI dir).
    pub fn generate() -> Result<SigningKey, JwtError> {
        Ok(SigningKey::generate_pkcs8()?.0)
    }

    /// A new key with its PKCS#8 DER encoding (what `sa.key` holds).
    fn generate_pkcs8() -> Result<(SigningKey, Vec<u8>), JwtError> {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &SystemRandom::new(),
        )
        .map_err(|_| JwtError::Generate)?;
        let key = SigningKey::from_pkcs8(pkcs8.as_ref()).ok_or(JwtError::Generate)?;
        Ok((key, pkcs8.as_ref().to_vec()))
    }

    fn from_pkcs8(der: &[u8]) -> Option<SigningKey> {
        let pair = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            der,
            &SystemRandom::new(),
        )
        .ok()?;
        let digest =
            ring::digest::digest(&ring::digest::SHA256, &spki_der(pair.public_key().as_ref()));
        Some(SigningKey {
            pair,
            kid: URL_SAFE_NO_PAD.encode(digest.as_ref()),
        })
    }

    /// `dir/sa.key` if it exists, else a new key written there (and `sa.pub` beside it).
    pub fn load_or_create(dir: &Path) -> Result<SigningKey, JwtError> {
        let path = dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(pem) => {
                let der = pem_decode(&pem, "PRIVATE KEY")
                    .ok_or_else(|| JwtError::BadKey { path: path.clone() })?;
                let key = SigningKey::from_pkcs8(&der).ok_or(JwtError::BadKey { path })?;
                // sa.pub is derived; rewrite it if it went missing.
                let public = dir.join(PUBLIC_KEY_FILE);
                if !public.exists() {
                    key.write_public(&public)?;
                }
                Ok(key)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (key, pkcs8) = SigningKey::generate_pkcs8()?;
                // The public half first: a crash between the two leaves no key that a
                // restart would use without its sa.pub.
                key.write_public(&dir.join(PUBLIC_KEY_FILE))?;
                atomic_file::write(&path, pem_encode(&pkcs8, "PRIVATE KEY").as_bytes(), 0o600)
                    .map_err(|source| JwtError::Write { path, source })?;
                Ok(key)
            }
            Err(source) => Err(JwtError::Read { path, source }),
        }
    }

    fn write_public(&self, path: &Path) -> Result<(), JwtError> {
        atomic_file::write(path, self.public_key_pem().as_bytes(), 0o644).map_err(|source| {
            JwtError::Write {
                path: path.to_path_buf(),
                source,
            }
        })
    }

    pub fn key_id(&self) -> &str {
        &self.kid
    }

    /// The public key as SPKI PEM (the contents of `sa.pub`).
    pub fn public_key_pem(&self) -> String {
        pem_encode(&spki_der(self.pair.public_key().as_ref()), "PUBLIC KEY")
    }

    /// A compact JWS of `claims`.
    pub fn sign(&self, claims: &serde_json::Value) -> Result<String, JwtError> {
        let header = serde_json::json!({"alg": "ES256", "kid": self.kid});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self
            .pair
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .map_err(|_| JwtError::Sign)?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(sig.as_ref())
        ))
    }

    /// The claims of `token` if this key signed it. Says nothing about expiry or audience:
    /// that is the caller's to check.
    pub fn verify(&self, token: &str) -> Result<serde_json::Value, JwtError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Malformed);
        let header: serde_json::Value =
            serde_json::from_slice(&decode(header)?).map_err(|_| JwtError::Malformed)?;
        match header["alg"].as_str() {
            Some("ES256") => {}
            other => return Err(JwtError::Algorithm(other.unwrap_or("").to_string())),
        }
        let signing_input = &token[..token.len() - sig.len() - 1];
        signature::UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            self.pair.public_key().as_ref(),
        )
        .verify(signing_input.as_bytes(), &decode(sig)?)
        .map_err(|_| JwtError::Signature)?;
        let claims: serde_json::Value = serde_json::from_slice(&decode(payload)?)
            .map_err(|e| JwtError::Payload(e.to_string()))?;
        if !claims.is_object() {
            return Err(JwtError::Payload("not an object".into()));
        }
        Ok(claims)
    }
}

fn spki_der(point: &[u8]) -> Vec<u8> {
    let mut der = P256_SPKI_PREFIX.to_vec();
    der.extend_from_slice(point);
    der
}

fn pem_encode(der: &[u8], label: &str) -> String {
    let b64 = STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

fn pem_decode(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let body: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn signs_and_verifies_its_own_tokens() {
        let key = SigningKey::generate().unwrap();
        let claims = json!({"sub": "system:serviceaccount:default:default", "exp": 1});
        let token = key.sign(&claims).unwrap();
        assert_eq!(token.split('.').count(), 3);
        assert_eq!(key.verify(&token).unwrap(), claims);
        let header: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header, json!({"alg": "ES256", "kid": key.key_id()}));
    }

    #[test]
    fn refuses_tampered_foreign_and_unsigned_tokens() {
        let key = SigningKey::generate().unwrap();
        let token = key.sign(&json!({"sub": "a"})).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        // Same signature over a different payload.
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(r#"{"sub":"admin"}"#),
            parts[2]
        );
        assert!(matches!(key.verify(&forged), Err(JwtError::Signature)));
        // Signed by another key.
        let other = SigningKey::generate()
            .unwrap()
            .sign(&json!({"sub": "a"}))
            .unwrap();
        assert!(matches!(key.verify(&other), Err(JwtError::Signature)));
        // alg none, with or without a signature.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            parts[1]
        );
        assert!(matches!(key.verify(&none), Err(JwtError::Algorithm(a)) if a == "none"));
        for bad in ["", "a.b", "a.b.c.d", "!!.??.**"] {
            assert!(matches!(key.verify(bad), Err(JwtError::Malformed)), "{bad}");
        }
    }

    #[test]
    fn the_key_is_made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = SigningKey::load_or_create(dir.path()).unwrap();
        let token = first.sign(&json!({"sub": "a"})).unwrap();
        let again = SigningKey::load_or_create(dir.path()).unwrap();
        assert_eq!(again.key_id(), first.key_id());
        assert!(again.verify(&token).is_ok());
        let public = std::fs::read_to_string(dir.path().join(PUBLIC_KEY_FILE)).unwrap();
        assert_eq!(public, first.public_key_pem());
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_broken_key_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(KEY_FILE), "not a key").unwrap();
        let err = SigningKey::load_or_create(dir.path()).unwrap_err();
        assert!(err.to_string().contains("sa.key"), "{err}");
    }
}
