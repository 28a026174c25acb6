//! `spec`: write a starting config.json.

use std::path::PathBuf;

use serde::Serialize;

use super::Error;
use crate::cli::SpecArgs;

pub fn spec(args: &SpecArgs) -> Result<(), Error> {
    let dir = args.bundle.clone().unwrap_or_else(|| PathBuf::from("."));
    let path = dir.join("config.json");
    if path.exists() {
        return Err(Error::Refused(format!("file {} exists; remove it first", path.display())));
    }
    let rootless = args.rootless.then(|| (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw()));
    let value = crate::spec::default_spec(rootless);
    // Tab-indented, like runc's.
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, serde_json::ser::PrettyFormatter::with_indent(b"\t"));
    value.serialize(&mut ser).expect("JSON serializes");
    buf.push(b'\n');
    std::fs::write(&path, buf).map_err(Error::io(format!("write {}", path.display())))
}
