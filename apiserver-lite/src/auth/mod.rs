//! TLS, the cluster's certificates, kubeconfigs, authentication and authorization.
