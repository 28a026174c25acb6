//! A joining node's credential flags, checked before anything starts and then carried out:
//!
//! - without `--bootstrap-kubeconfig` (as before): `--kubeconfig` and all of
//!   `--tls-cert-file`, `--tls-private-key-file`, `--client-ca-file` are needed;
//! - with it: `--kubeconfig` is the file to write (kept while usable) [default
//!   `<data-dir>/kubelet.kubeconfig`]; `--tls-cert-file` and `--tls-private-key-file` come
//!   together or not at all (then a serving certificate is requested, kept in
//!   `<data-dir>/pki/kubelet.crt` and `kubelet.key`); `--client-ca-file` defaults to the
//!   cluster CA, written to `<data-dir>/pki/ca.crt`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::{BootstrapError, CsrConnector, ServingFiles};

/// The flags that decide a joining node's credentials.
#[derive(Debug, Clone, Default)]
pub struct JoinFlags {
    pub kubeconfig: Option<PathBuf>,
    pub bootstrap_kubeconfig: Option<PathBuf>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_private_key_file: Option<PathBuf>,
    pub client_ca_file: Option<PathBuf>,
}

/// What to do, the flags checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinPlan {
    /// The node's kubeconfig (written by bootstrapping when it is not usable).
    pub kubeconfig: PathBuf,
    pub bootstrap: Option<PathBuf>,
    /// The kubelet API's files.
    pub serving: ServingFiles,
    /// Whether the serving certificate and key are requested (else given).
    pub request_serving: bool,
    /// Whether the client CA is the cluster CA written to `serving.client_ca`.
    pub write_client_ca: bool,
}

/// The flags checked; `Err` is a usage message.
pub fn plan(flags: &JoinFlags, data_dir: &Path) -> Result<JoinPlan, String> {
    let Some(bootstrap) = &flags.bootstrap_kubeconfig else {
        let kubeconfig = flags.kubeconfig.clone().ok_or("--kubeconfig (the API server to join), --bootstrap-kubeconfig (join with a bootstrap token) or --apiserver (a cluster of its own) is needed")?;
        return match (&flags.tls_cert_file, &flags.tls_private_key_file, &flags.client_ca_file) {
            (Some(cert), Some(key), Some(ca)) => {
                Ok(JoinPlan { kubeconfig, bootstrap: None, serving: ServingFiles { cert: cert.clone(), key: key.clone(), client_ca: ca.clone() }, request_serving: false, write_client_ca: false })
            }
            _ => Err("joining a cluster needs --tls-cert-file, --tls-private-key-file and --client-ca-file for the kubelet API (`apiserver-lite node-kubeconfig --serving-cert-dir DIR` issues them), or --bootstrap-kubeconfig to request them".into()),
        };
    };
    let kubeconfig = flags.kubeconfig.clone().unwrap_or_else(|| data_dir.join("kubelet.kubeconfig"));
    if &kubeconfig == bootstrap {
        return Err(format!("--kubeconfig {} is where the node's own credentials are written: it must differ from --bootstrap-kubeconfig", kubeconfig.display()));
    }
    let mut serving = ServingFiles::under(&data_dir.join("pki"));
    let request_serving = match (&flags.tls_cert_file, &flags.tls_private_key_file) {
        (Some(cert), Some(key)) => {
            serving.cert = cert.clone();
            serving.key = key.clone();
            false
        }
        (None, None) => true,
        _ => return Err("--tls-cert-file and --tls-private-key-file go together (or leave both out: with --bootstrap-kubeconfig the node requests a serving certificate)".into()),
    };
    let write_client_ca = match &flags.client_ca_file {
        Some(ca) => {
            serving.client_ca = ca.clone();
            false
        }
        None => true,
    };
    Ok(JoinPlan { kubeconfig, bootstrap: Some(bootstrap.clone()), serving, request_serving, write_client_ca })
}

impl JoinPlan {
    /// Bootstrap the client credentials, the serving certificate and the client CA as
    /// planned (nothing without a bootstrap kubeconfig).
    pub async fn carry_out(&self, connector: &dyn CsrConnector, node: &str, node_ip: IpAddr) -> Result<(), BootstrapError> {
        let Some(bootstrap) = &self.bootstrap else { return Ok(()) };
        super::ensure_client_kubeconfig(connector, node, &self.kubeconfig, bootstrap).await?;
        if self.request_serving {
            super::ensure_serving_cert(connector, node, node_ip, &self.kubeconfig, &self.serving).await?;
        }
        if self.write_client_ca {
            super::write_cluster_ca(&self.kubeconfig, &self.serving.client_ca)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<PathBuf> {
        Some(PathBuf::from(s))
    }

    #[test]
    fn without_a_bootstrap_kubeconfig_the_old_flags_are_all_needed() {
        let data = Path::new("/d");
        let all = JoinFlags { kubeconfig: p("/k"), tls_cert_file: p("/c"), tls_private_key_file: p("/key"), client_ca_file: p("/ca"), ..Default::default() };
        let plan = plan(&all, data).unwrap();
        assert_eq!(plan.serving, ServingFiles { cert: "/c".into(), key: "/key".into(), client_ca: "/ca".into() });
        assert!(plan.bootstrap.is_none() && !plan.request_serving && !plan.write_client_ca);
        assert!(super::plan(&JoinFlags { kubeconfig: None, ..all.clone() }, data).unwrap_err().contains("--bootstrap-kubeconfig"));
        assert!(super::plan(&JoinFlags { client_ca_file: None, ..all }, data).unwrap_err().contains("--client-ca-file"));
    }

    #[test]
    fn with_a_bootstrap_kubeconfig_everything_else_has_a_default_under_the_data_dir() {
        let plan = plan(&JoinFlags { bootstrap_kubeconfig: p("/b"), ..Default::default() }, Path::new("/d")).unwrap();
        assert_eq!(plan.kubeconfig, PathBuf::from("/d/kubelet.kubeconfig"));
        assert_eq!(plan.serving, ServingFiles { cert: "/d/pki/kubelet.crt".into(), key: "/d/pki/kubelet.key".into(), client_ca: "/d/pki/ca.crt".into() });
        assert!(plan.request_serving && plan.write_client_ca);
    }

    #[test]
    fn with_a_bootstrap_kubeconfig_given_files_are_used() {
        let flags = JoinFlags { kubeconfig: p("/k"), bootstrap_kubeconfig: p("/b"), tls_cert_file: p("/c"), tls_private_key_file: p("/key"), client_ca_file: p("/ca") };
        let plan = plan(&flags, Path::new("/d")).unwrap();
        assert_eq!(plan.kubeconfig, PathBuf::from("/k"));
        assert_eq!(plan.serving, ServingFiles { cert: "/c".into(), key: "/key".into(), client_ca: "/ca".into() });
        assert!(!plan.request_serving && !plan.write_client_ca);
        let half = JoinFlags { tls_private_key_file: None, ..flags.clone() };
        assert!(super::plan(&half, Path::new("/d")).unwrap_err().contains("go together"));
        let same = JoinFlags { kubeconfig: p("/b"), ..flags };
        assert!(super::plan(&same, Path::new("/d")).unwrap_err().contains("must differ"));
    }
}
