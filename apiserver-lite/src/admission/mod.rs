//! What happens to an object between decoding and storage: defaulting (the fields
//! kube-apiserver fills in), the admission steps that need other objects (a pod's service
//! account) and validation (what it rejects, in its words). Pure functions over JSON (the
//! handlers look up what they need), so handlers, tests and tools call them alike.

pub mod defaults;
pub mod quantity;
pub mod service_account;
pub mod validation;
