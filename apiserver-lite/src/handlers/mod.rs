//! The REST verbs over storage: get, list, watch, create, update, patch, delete.
