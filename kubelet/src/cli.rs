//! The command line, parsed apart from the work (`image.rs` does that).
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(name = "kubelet-rs", version, about = "A Kubernetes node in Rust")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Manage the local image store.
    Image(ImageArgs),
}

#[derive(Args, Debug)]
pub struct ImageArgs {
    /// The state root; images are stored under `<root>/images`.
    #[arg(long, default_value = "/var/lib/kubelet-rs", global = true)]
    pub root: PathBuf,
    /// A directory of `<registry>/hosts.toml` files (mirrors, CAs, plain HTTP).
    #[arg(long, default_value = "/etc/kubelet-rs/certs.d", global = true)]
    pub hosts_dir: PathBuf,
    /// A registry (`host:port`) to reach over plain HTTP; may be repeated.
    #[arg(long = "insecure-registry", value_name = "HOST", global = true)]
    pub insecure: Vec<String>,
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Pull an image from its registry into the store.
    Pull {
        reference: String,
        /// The platform to pick from a multi-platform image: os/arch[/variant].
        #[arg(long)]
        platform: Option<String>,
        /// Registry credentials `user:password`; default: the Docker config.json.
        #[arg(long)]
        creds: Option<String>,
    },
    /// Import images from an OCI image layout (directory or tar) or a `docker save` tar,
    /// for machines without a registry.
    Import {
        path: std::path::PathBuf,
        /// The name to give the image when the source names none (or to replace its name).
        #[arg(long)]
        name: Option<String>,
        /// The platform to pick from a multi-platform image: os/arch[/variant].
        #[arg(long)]
        platform: Option<String>,
    },
    /// List the stored images.
    List {
        /// Print the names only.
        #[arg(short, long)]
        quiet: bool,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Show an image's record and config as JSON.
    Inspect {
        /// A reference or a manifest digest (`sha256:...`).
        image: String,
    },
    /// Remove image records (content goes with `prune`).
    Remove {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove content no image references.
    Prune,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}
