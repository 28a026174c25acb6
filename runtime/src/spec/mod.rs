//! The bundle's `config.json`: loading, validating, and the default one `runtime-rs spec` writes.

mod config;
mod default;
mod validate;

pub use config::{
    id_map_lines, Capabilities, Config, Device, DeviceKind, IdMap, MountEntry, ProcessConfig, Rlimit,
};
pub use default::default_spec;
pub use validate::{convert_process, device_rules, Problem};

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Process, Spec};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("bundle {bundle}: cannot read config.json: {source}")]
    Read { bundle: PathBuf, source: std::io::Error },
    #[error("bundle {bundle}: config.json is not valid: {path}: {message}")]
    Parse { bundle: PathBuf, path: String, message: String },
    #[error("bundle {bundle}: config.json is not valid: {}", join(problems))]
    Invalid { bundle: PathBuf, problems: Vec<Problem> },
    #[error("process file {file}: {message}")]
    Process { file: String, message: String },
}

fn join(problems: &[Problem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Parse JSON into `T`, naming the field where parsing failed (`process.capabilities.bounding[2]`).
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, (String, String)> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let path = if path == "." { "(document)".to_string() } else { path };
        (path, inner.to_string())
    })
}

/// Load and fully check a bundle: the spec itself and what it names on the host.
pub fn load_bundle(dir: &Path) -> Result<Config, SpecError> {
    let bundle = std::path::absolute(dir).map_err(|source| SpecError::Read { bundle: dir.into(), source })?;
    let text = std::fs::read_to_string(bundle.join("config.json"))
        .map_err(|source| SpecError::Read { bundle: bundle.clone(), source })?;
    let spec: Spec = parse_json(&text).map_err(|(path, message)| SpecError::Parse {
        bundle: bundle.clone(),
        path,
        message,
    })?;
    let config = Config::from_spec(&bundle, spec).map_err(|problems| SpecError::Invalid {
        bundle: bundle.clone(),
        problems,
    })?;
    let problems = validate::check_host(&config);
    if !problems.is_empty() {
        return Err(SpecError::Invalid { bundle, problems });
    }
    Ok(config)
}

/// Parse the `--process` file of `exec`.
pub fn load_process(file: &Path) -> Result<ProcessConfig, SpecError> {
    let name = file.display().to_string();
    let text = std::fs::read_to_string(file)
        .map_err(|e| SpecError::Process { file: name.clone(), message: e.to_string() })?;
    let process: Process = parse_json(&text)
        .map_err(|(path, message)| SpecError::Process { file: name.clone(), message: format!("{path}: {message}") })?;
    convert_process(&process, "").map_err(|problems| SpecError::Process { file: name, message: join(&problems) })
}

impl Config {
    /// Check the spec's structure and convert it; no file system access. Used on every load of
    /// a stored container as well as at create.
    pub fn from_spec(bundle: &Path, spec: Spec) -> Result<Config, Vec<Problem>> {
        validate::convert(bundle, spec)
    }
}
