//! The distribution protocol client: endpoints from a containerd-style host config
//! (`hosts`), auth (`auth`), manifests and platform selection (`manifest`), and the client
//! that resolves references and fetches blobs (`client`).

pub mod auth;
pub mod client;
pub mod hosts;
pub mod manifest;

pub use auth::{Anonymous, Credential, Credentials, DockerConfig, StaticCredentials};
pub use client::{AsyncBlobSink, BlobSink, Client, ClientConfig, RegistryError, Resolved};
pub use hosts::Endpoint;
pub use manifest::Platform;
pub use oci_spec::image::Descriptor;
