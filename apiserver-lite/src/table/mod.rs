//! Server-side `Table` output (`meta.k8s.io/v1`): the columns `kubectl get` shows.
