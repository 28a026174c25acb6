//! What happens to an object between decoding and storage: defaulting (the fields
//! kube-apiserver fills in) and validation (what it rejects, in its words). Pure functions
//! over JSON, so handlers, tests and tools call them alike.

pub mod defaults;
pub mod quantity;
pub mod validation;
