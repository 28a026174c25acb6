//! The scheduler: binds pending pods to nodes through the binding subresource.
