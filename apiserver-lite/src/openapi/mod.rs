//! OpenAPI v2 and v3 documents generated from the upstream types (k8s-openapi's schemas).
