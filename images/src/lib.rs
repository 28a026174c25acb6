//! Container images: references as users write them, the registry client (distribution
//! protocol, auth), a verified content-addressed store, and safe unpacking of layers into
//! overlay snapshots. Used by the CRI image service and by `kubelet-rs image ...`.
pub mod digest;
pub mod import;
pub mod store;
pub mod unpack;
pub mod process_config;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod rootfs;
