//! TLS, the cluster's certificates, kubeconfigs, authentication and authorization.
//!
//! `pki` makes and keeps the CA and certificates, `kubeconfig` writes client configs,
//! `tls` builds the rustls server config, `authn` turns client certificates and bearer
//! tokens into a [`UserInfo`] (`jwt` and `sa_token` sign and check service account
//! tokens, `bootstrap_token` checks kubeadm-style join tokens), `csr` reads certificate
//! signing requests and `csr_signer` issues their certificates from the cluster CA,
//! `authz` decides what that user may do, and `serve` is the HTTPS loop that ties TLS and
//! authentication to an axum router.

mod atomic_file;
pub mod authn;
pub mod authz;
pub mod bootstrap_token;
pub mod csr;
pub mod csr_signer;
pub mod jwt;
pub mod kubeconfig;
pub mod pki;
pub mod sa_token;
pub mod serve;
pub mod tls;
pub mod token_file;

pub use authn::{Authenticator, AuthnError, UserInfo};
pub use authz::{Attributes, Decision, authorize};
pub use kubeconfig::{Credentials, KubeconfigError};
pub use pki::{Pki, PkiError};
pub use serve::serve;
pub use tls::{TlsError, server_config};
