//! Writing kubeconfig files: one cluster, one user, one context made current, with the CA
//! and credentials embedded (`*-data`) so the file works wherever it is copied.
//!
//! The output is YAML whose scalars are all double-quoted JSON strings (JSON string
//! escapes are valid YAML double-quoted escapes), so no value can change meaning however
//! odd the name or URL.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::atomic_file;

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("write kubeconfig {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("kubeconfig {path}: {field} is empty")]
    Empty { path: PathBuf, field: &'static str },
}

/// How the kubeconfig's user proves who it is.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    ClientCert { cert_pem: String, key_pem: String },
    Token(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys and tokens stay out of logs.
        match self {
            Credentials::ClientCert { .. } => f.write_str("ClientCert"),
            Credentials::Token(_) => f.write_str("Token"),
        }
    }
}

/// Write a kubeconfig to `path` (mode 0600, atomically) for `user` reaching `server`, which
/// presents a certificate from the CA `ca_pem`. The context is named `USER@CLUSTER`, as
/// kubeadm names it.
pub fn write(
    path: &Path,
    cluster: &str,
    server: &str,
    ca_pem: &str,
    user: &str,
    credentials: Credentials,
) -> Result<(), KubeconfigError> {
    let empty = |field| KubeconfigError::Empty {
        path: path.to_path_buf(),
        field,
    };
    for (field, value) in [
        ("cluster", cluster),
        ("server", server),
        ("CA", ca_pem),
        ("user", user),
    ] {
        if value.trim().is_empty() {
            return Err(empty(field));
        }
    }
    let text = render(cluster, server, ca_pem, user, &credentials);
    atomic_file::write(path, text.as_bytes(), 0o600).map_err(|source| KubeconfigError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn render(
    cluster: &str,
    server: &str,
    ca_pem: &str,
    user: &str,
    credentials: &Credentials,
) -> String {
    let q = |s: &str| serde_json::Value::from(s).to_string();
    let b64 = |s: &str| q(&STANDARD.encode(s));
    let context = format!("{user}@{cluster}");
    let user_fields = match credentials {
        Credentials::ClientCert { cert_pem, key_pem } => format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(cert_pem),
            b64(key_pem)
        ),
        Credentials::Token(token) => format!("    token: {}\n", q(token)),
    };
    format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: {cluster}\n  \
           cluster:\n    \
             server: {server}\n    \
             certificate-authority-data: {ca}\n\
         users:\n\
         - name: {user}\n  \
           user:\n\
         {user_fields}\
         contexts:\n\
         - name: {context}\n  \
           context:\n    \
             cluster: {cluster}\n    \
             user: {user}\n\
         current-context: {context}\n\
         preferences: {{}}\n",
        cluster = q(cluster),
        server = q(server),
        ca = b64(ca_pem),
        user = q(user),
        context = q(&context),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn client_cert_kubeconfig_embeds_everything_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.conf");
        let creds = Credentials::ClientCert {
            cert_pem: "CERT".into(),
            key_pem: "KEY".into(),
        };
        write(
            &path,
            "kubelet-rs",
            "https://127.0.0.1:6443",
            "CA",
            "kubernetes-admin",
            creds,
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        for want in [
            "server: \"https://127.0.0.1:6443\"",
            &format!("certificate-authority-data: \"{}\"", STANDARD.encode("CA")),
            &format!("client-certificate-data: \"{}\"", STANDARD.encode("CERT")),
            &format!("client-key-data: \"{}\"", STANDARD.encode("KEY")),
            "current-context: \"kubernetes-admin@kubelet-rs\"",
            "    user: \"kubernetes-admin\"",
        ] {
            assert!(text.contains(want), "{want} not in\n{text}");
        }
        assert!(!text.contains("token:"));
    }

    #[test]
    fn token_kubeconfig_quotes_odd_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        write(
            &path,
            "c: x",
            "https://h:1",
            "CA",
            "u\"1",
            Credentials::Token("t#1".into()),
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("    token: \"t#1\"\n"), "{text}");
        assert!(text.contains("- name: \"c: x\""), "{text}");
        assert!(text.contains("- name: \"u\\\"1\""), "{text}");
    }

    #[test]
    fn empty_fields_and_unwritable_paths_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let err = write(&path, "c", "", "CA", "u", Credentials::Token("t".into())).unwrap_err();
        assert!(err.to_string().contains("server"), "{err}");
        let missing = dir.path().join("no/such/dir/k");
        let err = write(
            &missing,
            "c",
            "https://h",
            "CA",
            "u",
            Credentials::Token("t".into()),
        )
        .unwrap_err();
        assert!(err.to_string().contains("no/such/dir"), "{err}");
    }
}
