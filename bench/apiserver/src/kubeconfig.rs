//! What the driver needs from a kubeconfig: the server URL, the CA, and the client
//! certificate and key, all embedded (`*-data`), as apiserver-lite writes admin.kubeconfig.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

#[derive(thiserror::Error, Debug)]
pub enum KubeconfigError {
    #[error("reading kubeconfig {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("kubeconfig {path} is not valid YAML: {source}")]
    Yaml { path: PathBuf, source: serde_yaml::Error },
    #[error("kubeconfig {path}: {what}")]
    Missing { path: PathBuf, what: String },
}

#[derive(Debug, Clone)]
pub struct AdminAccess {
    pub server: String,
    pub ca_pem: Vec<u8>,
    /// The client certificate followed by its key, as reqwest's `Identity::from_pem` takes.
    pub identity_pem: Vec<u8>,
}

#[derive(serde::Deserialize)]
struct File {
    #[serde(rename = "current-context")]
    current_context: String,
    contexts: Vec<Named<Context>>,
    clusters: Vec<Named<Cluster>>,
    users: Vec<Named<User>>,
}

#[derive(serde::Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "context", alias = "cluster", alias = "user")]
    value: T,
}

#[derive(serde::Deserialize)]
struct Context {
    cluster: String,
    user: String,
}

#[derive(serde::Deserialize)]
struct Cluster {
    server: String,
    #[serde(rename = "certificate-authority-data")]
    ca: Option<String>,
}

#[derive(serde::Deserialize)]
struct User {
    #[serde(rename = "client-certificate-data")]
    cert: Option<String>,
    #[serde(rename = "client-key-data")]
    key: Option<String>,
}

pub fn load(path: &Path) -> Result<AdminAccess, KubeconfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| KubeconfigError::Read { path: path.into(), source })?;
    parse(&text).map_err(|e| match e {
        Parse::Yaml(source) => KubeconfigError::Yaml { path: path.into(), source },
        Parse::Missing(what) => KubeconfigError::Missing { path: path.into(), what },
    })
}

enum Parse {
    Yaml(serde_yaml::Error),
    Missing(String),
}

fn find<'a, T>(what: &str, entries: &'a [Named<T>], name: &str) -> Result<&'a T, Parse> {
    entries.iter().find(|e| e.name == name).map(|e| &e.value).ok_or_else(|| Parse::Missing(format!("no {what} named {name:?}")))
}

fn parse(text: &str) -> Result<AdminAccess, Parse> {
    let file: File = serde_yaml::from_str(text).map_err(Parse::Yaml)?;
    let context = find("context", &file.contexts, &file.current_context)?;
    let cluster = find("cluster", &file.clusters, &context.cluster)?;
    let user = find("user", &file.users, &context.user)?;
    let decode = |field: &str, value: &Option<String>| -> Result<Vec<u8>, Parse> {
        let value = value.as_deref().ok_or_else(|| Parse::Missing(format!("no {field} (the driver needs embedded credentials)")))?;
        STANDARD.decode(value.trim()).map_err(|e| Parse::Missing(format!("{field} is not base64: {e}")))
    };
    let mut identity_pem = decode("client-certificate-data", &user.cert)?;
    if !identity_pem.ends_with(b"\n") {
        identity_pem.push(b'\n');
    }
    identity_pem.extend(decode("client-key-data", &user.key)?);
    Ok(AdminAccess { server: cluster.server.clone(), ca_pem: decode("certificate-authority-data", &cluster.ca)?, identity_pem })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    #[test]
    fn reads_the_current_contexts_embedded_credentials() {
        let text = format!(
            "apiVersion: \"v1\"\nkind: \"Config\"\nclusters:\n- name: \"other\"\n  cluster:\n    server: \"https://10.0.0.1:6443\"\n    certificate-authority-data: \"{}\"\n- name: \"lite\"\n  cluster:\n    server: \"https://127.0.0.1:6443\"\n    certificate-authority-data: \"{}\"\nusers:\n- name: \"admin\"\n  user:\n    client-certificate-data: \"{}\"\n    client-key-data: \"{}\"\ncontexts:\n- name: \"admin@lite\"\n  context:\n    cluster: \"lite\"\n    user: \"admin\"\ncurrent-context: \"admin@lite\"\n",
            b64("OTHER CA"),
            b64("CA"),
            b64("CERT"),
            b64("KEY\n")
        );
        let access = parse(&text).ok().unwrap();
        assert_eq!(access.server, "https://127.0.0.1:6443");
        assert_eq!(access.ca_pem, b"CA");
        assert_eq!(access.identity_pem, b"CERT\nKEY\n");
    }

    #[test]
    fn a_token_user_is_refused_with_the_reason() {
        let text = "clusters:\n- name: c\n  cluster:\n    server: https://x\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\nusers:\n- name: u\n  user: {token: abc}\ncurrent-context: x\n";
        match parse(text) {
            Err(Parse::Missing(what)) => assert!(what.contains("client-certificate-data"), "{what}"),
            _ => panic!("a kubeconfig without a client certificate was accepted"),
        }
    }
}
