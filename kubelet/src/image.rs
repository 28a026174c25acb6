//! `kubelet-rs image ...`: pull, import, list, inspect, remove and prune in the store at
//! `<root>/images`.
use std::collections::HashMap;
use std::sync::Arc;

use images::digest::Digest;
use images::pull::{self, PullError};
use images::reference::{Reference, ReferenceError};
use images::registry::auth::AuthError;
use images::registry::{Client, ClientConfig, Credential, Credentials, DockerConfig, Platform, StaticCredentials};
use images::store::{ImageRecord, Store, StoreError};
use serde_json::json;

use crate::cli::{Format, ImageArgs, ImageCommand};
use crate::progress;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pull(#[from] PullError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Import(#[from] images::import::ImportError),
    #[error("platform {0:?}: expected os/arch[/variant], e.g. linux/arm64")]
    Platform(String),
    #[error("--creds: expected user:password")]
    Creds,
    #[error("image {0:?}: not in the store")]
    NotFound(String),
    #[error("image {image:?}: config {config}: {source}")]
    Config { image: String, config: Digest, source: serde_json::Error },
}

pub async fn run(args: ImageArgs) -> Result<(), ImageError> {
    let store = Store::open(args.root.join("images"))?;
    match args.command {
        ImageCommand::Import { ref path, ref name, ref platform } => {
            let platform = parse_platform(platform.as_deref())?;
            for record in images::import::import(&store, path, &platform, name.as_deref())? {
                println!("{} {}", record.name, record.manifest);
            }
        }
        ImageCommand::Pull { ref reference, ref platform, ref creds } => {
            let reference = Reference::parse(reference)?;
            let platform = parse_platform(platform.as_deref())?;
            let credentials = credentials(&reference, creds.as_deref())?;
            let hosts_dir = args.hosts_dir.is_dir().then(|| args.hosts_dir.clone());
            let client = Client::new(ClientConfig { hosts_dir, insecure: args.insecure.clone(), credentials, ..Default::default() });
            let progress = progress::for_stderr();
            let record = pull::pull(&store, &client, &reference, &platform, progress.as_ref()).await?;
            println!("{} {}", record.name, record.manifest);
        }
        ImageCommand::List { quiet, format } => list(&store, quiet, format)?,
        ImageCommand::Inspect { image } => {
            let record = find(&store, &image)?.into_iter().next().ok_or(ImageError::NotFound(image.clone()))?;
            let config: serde_json::Value = serde_json::from_slice(&store.read_blob(&record.config)?)
                .map_err(|source| ImageError::Config { image: image.clone(), config: record.config.clone(), source })?;
            let out = json!({ "record": record, "size": image_size(&store, &record), "config": config });
            println!("{}", serde_json::to_string_pretty(&out).expect("JSON values serialise"));
        }
        ImageCommand::Remove { images } => {
            for image in images {
                let found = find(&store, &image)?;
                if found.is_empty() {
                    return Err(ImageError::NotFound(image));
                }
                for record in found {
                    store.remove_record(&record.name)?;
                    println!("removed {}", record.name);
                }
            }
        }
        ImageCommand::Prune => {
            let report = store.gc()?;
            for blob in &report.blobs_removed {
                println!("removed blob {blob}");
            }
            for snapshot in &report.snapshots_removed {
                println!("removed snapshot {snapshot}");
            }
            println!("freed {} bytes", report.bytes_freed);
        }
    }
    Ok(())
}

/// `--platform`, else the host's.
fn parse_platform(platform: Option<&str>) -> Result<Platform, ImageError> {
    match platform {
        Some(p) => Platform::parse(p).ok_or_else(|| ImageError::Platform(p.to_string())),
        None => Ok(Platform::host()),
    }
}

/// `--creds user:password` for the reference's registry, else the Docker config.json.
fn credentials(reference: &Reference, creds: Option<&str>) -> Result<Arc<dyn Credentials>, ImageError> {
    match creds {
        Some(c) => {
            let (user, password) = c.split_once(':').ok_or(ImageError::Creds)?;
            let cred = Credential { username: user.into(), password: password.into() };
            let mut map = HashMap::new();
            map.insert(reference.registry().to_string(), cred.clone());
            map.insert(reference.registry_host().to_string(), cred);
            Ok(Arc::new(StaticCredentials(map)))
        }
        None => match DockerConfig::default_path() {
            Some(path) => Ok(Arc::new(DockerConfig::load(&path)?)),
            None => Ok(Arc::new(images::registry::Anonymous)),
        },
    }
}

/// The records an argument names: a manifest digest (`sha256:...`), or a reference.
fn find(store: &Store, image: &str) -> Result<Vec<ImageRecord>, ImageError> {
    if let Ok(digest) = image.parse::<Digest>() {
        return Ok(store.records_by_digest(&digest)?);
    }
    let reference = Reference::parse(image)?;
    match store.get_record(&pull::record_name(&reference)) {
        Ok(r) => Ok(vec![r]),
        Err(StoreError::RecordNotFound(_)) => match reference.digest() {
            // `repo@digest` also finds the image when it was pulled by tag.
            Some(d) => Ok(store
                .records_by_digest(d)?
                .into_iter()
                .filter(|r| r.name.starts_with(&format!("{}:", reference.name())) || r.name.starts_with(&format!("{}@", reference.name())))
                .collect()),
            None => Ok(Vec::new()),
        },
        Err(e) => Err(e.into()),
    }
}

/// Bytes the image's blobs take in the store (shared blobs count for each image).
fn image_size(store: &Store, record: &ImageRecord) -> u64 {
    std::iter::once(&record.manifest)
        .chain(std::iter::once(&record.config))
        .chain(&record.layers)
        .filter_map(|d| std::fs::metadata(store.blob_path(d)).ok())
        .map(|m| m.len())
        .sum()
}

fn list(store: &Store, quiet: bool, format: Format) -> Result<(), ImageError> {
    let records = store.list_records()?;
    if quiet {
        for r in &records {
            println!("{}", r.name);
        }
        return Ok(());
    }
    if format == Format::Json {
        let out: Vec<_> = records.iter().map(|r| json!({ "record": r, "size": image_size(store, r) })).collect();
        println!("{}", serde_json::to_string_pretty(&out).expect("JSON values serialise"));
        return Ok(());
    }
    let rows: Vec<(String, String, String)> = records
        .iter()
        .map(|r| (r.name.clone(), r.manifest.hex()[..12].to_string(), human_size(image_size(store, r))))
        .collect();
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max("REFERENCE".len());
    println!("{:width$}  {:12}  SIZE", "REFERENCE", "DIGEST");
    for (name, digest, size) in rows {
        println!("{name:width$}  {digest:12}  {size}");
    }
    Ok(())
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}
