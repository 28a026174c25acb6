//! Running a plugin binary: found by its `type` in `CNI_PATH`, given the CNI environment and
//! its configuration on stdin; its stdout read back as a result or a CNI error. Used by the
//! bridge plugin to delegate to its IPAM plugin and by the runtime side to run a chain.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use crate::spec::{CniResult, Command, Error, ErrorCode};

/// What a plugin is asked to do, beyond its configuration.
#[derive(Debug, Clone)]
pub struct Invocation<'a> {
    pub command: Command,
    pub container_id: &'a str,
    pub netns: Option<&'a Path>,
    pub ifname: &'a str,
    pub args: &'a [(String, String)],
    pub path: &'a [PathBuf],
}

/// Finds plugin `plugin_type` in the `CNI_PATH` directories.
pub fn find_plugin(plugin_type: &str, path: &[PathBuf]) -> Result<PathBuf, Error> {
    if plugin_type.is_empty() || plugin_type.contains('/') || plugin_type.starts_with('.') {
        return Err(Error::invalid_config(format!("invalid plugin type {plugin_type:?}")));
    }
    path.iter().map(|dir| dir.join(plugin_type)).find(|p| p.is_file()).ok_or_else(|| {
        Error::new(ErrorCode::Io, format!("failed to find plugin {plugin_type:?} in path {path:?}"))
    })
}

/// Runs a plugin and returns its stdout; a failure is the plugin's own CNI error when it
/// printed one, else an I/O error carrying its exit status and stderr.
pub fn exec(plugin: &Path, inv: &Invocation<'_>, stdin: &[u8]) -> Result<Vec<u8>, Error> {
    let args: Vec<String> = inv.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let path = std::env::join_paths(inv.path).map_err(|e| Error::invalid_config(format!("invalid CNI_PATH: {e}")))?;
    let mut cmd = Process::new(plugin);
    cmd.env("CNI_COMMAND", inv.command.as_str())
        .env("CNI_CONTAINERID", inv.container_id)
        .env("CNI_IFNAME", inv.ifname)
        .env("CNI_ARGS", args.join(";"))
        .env("CNI_PATH", path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match inv.netns {
        Some(ns) => cmd.env("CNI_NETNS", ns),
        None => cmd.env_remove("CNI_NETNS"),
    };
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::new(ErrorCode::Io, format!("cannot run plugin {}: {e}", plugin.display())))?;
    let mut input = child.stdin.take().expect("piped stdin");
    // Write from a thread: a plugin may print before it has read all of stdin.
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || input.write_all(&stdin));
    let output = child
        .wait_with_output()
        .map_err(|e| Error::new(ErrorCode::Io, format!("waiting for plugin {}: {e}", plugin.display())))?;
    let _ = writer.join();
    if output.status.success() {
        return Ok(output.stdout);
    }
    if let Some(err) = Error::from_json(&output.stdout) {
        return Err(err);
    }
    Err(Error::new(
        ErrorCode::Io,
        format!("plugin {} failed ({}) without a CNI error", plugin.display(), output.status),
    )
    .with_details(String::from_utf8_lossy(&output.stderr).trim().to_string()))
}

/// Runs plugin `plugin_type` from `inv.path` with `conf` and, for ADD, reads its result.
pub fn delegate(plugin_type: &str, inv: &Invocation<'_>, conf: &serde_json::Value) -> Result<Option<CniResult>, Error> {
    let plugin = find_plugin(plugin_type, inv.path)?;
    let out = exec(&plugin, inv, conf.to_string().as_bytes())?;
    if inv.command != Command::Add {
        return Ok(None);
    }
    let value: serde_json::Value = serde_json::from_slice(&out).map_err(|e| {
        Error::decode(format!("plugin {plugin_type:?} printed a result that is not JSON: {e}"))
    })?;
    Ok(Some(CniResult::from_json(&value)?.1))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn script(dir: &Path, name: &str, body: &str) {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn inv<'a>(path: &'a [PathBuf], command: Command) -> Invocation<'a> {
        Invocation { command, container_id: "c1", netns: Some(Path::new("/x")), ifname: "eth0", args: &[], path }
    }

    #[test]
    fn delegates_and_reads_result_or_error() {
        let dir = tempfile::tempdir().unwrap();
        script(dir.path(), "ok", r#"cat >/dev/null; echo "{\"cniVersion\":\"1.0.0\",\"ips\":[{\"address\":\"10.0.0.9/24\"}],\"x\":\"$CNI_COMMAND $CNI_IFNAME\"}""#);
        script(dir.path(), "fails", r#"echo '{"cniVersion":"1.0.0","code":11,"msg":"busy"}'; exit 1"#);
        script(dir.path(), "crashes", "echo oops >&2; exit 3");
        let path = vec![PathBuf::from("/nonexistent"), dir.path().to_path_buf()];
        let conf = serde_json::json!({"cniVersion": "1.0.0"});
        let res = delegate("ok", &inv(&path, Command::Add), &conf).unwrap().unwrap();
        assert_eq!(res.ips[0].address.to_string(), "10.0.0.9/24");
        assert_eq!(delegate("ok", &inv(&path, Command::Del), &conf).unwrap(), None);
        let err = delegate("fails", &inv(&path, Command::Add), &conf).unwrap_err();
        assert_eq!((err.code, err.msg.as_str()), (ErrorCode::TryAgainLater, "busy"));
        let err = delegate("crashes", &inv(&path, Command::Add), &conf).unwrap_err();
        assert_eq!(err.code, ErrorCode::Io);
        assert_eq!(err.details, "oops");
        let err = delegate("missing", &inv(&path, Command::Add), &conf).unwrap_err();
        assert!(err.msg.contains("failed to find plugin \"missing\""), "{}", err.msg);
        assert!(find_plugin("../ok", &path).is_err());
    }
}
