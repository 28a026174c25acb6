//! The frame every plugin binary runs in: read the request from the environment and the
//! configuration from stdin, dispatch to the plugin, print the result (in the version asked
//! for) or the error as the spec defines, and exit 0 or 1.

use std::io::{Read, Write};

use crate::spec::{CniResult, Command, Error, ErrorCode, NetConf, Request, Version, version_reply};

/// A plugin's operations. `status` and `gc` (spec 1.1) default to "ready" and "nothing to do".
pub trait Plugin {
    fn add(&self, req: &Request, conf: &NetConf) -> Result<CniResult, Error>;
    fn del(&self, req: &Request, conf: &NetConf) -> Result<(), Error>;
    fn check(&self, req: &Request, conf: &NetConf) -> Result<(), Error>;
    fn status(&self, _req: &Request, _conf: &NetConf) -> Result<(), Error> {
        Ok(())
    }
    fn gc(&self, _req: &Request, _conf: &NetConf) -> Result<(), Error> {
        Ok(())
    }
}

/// Runs one invocation; returns the exit code. Everything the runtime reads goes to `out`.
pub fn run(plugin: &dyn Plugin, env: impl Fn(&str) -> Option<String>, stdin: &[u8], out: &mut dyn Write) -> i32 {
    let mut version = Version::LATEST.as_str().to_string();
    match dispatch(plugin, env, stdin, &mut version) {
        Ok(Some(json)) => {
            let _ = writeln!(out, "{json}");
            0
        }
        Ok(None) => 0,
        Err(err) => {
            let _ = writeln!(out, "{}", err.to_json(&version));
            1
        }
    }
}

fn dispatch(
    plugin: &dyn Plugin,
    env: impl Fn(&str) -> Option<String>,
    stdin: &[u8],
    version: &mut String,
) -> Result<Option<serde_json::Value>, Error> {
    let req = Request::from_env(env)?;
    if req.command == Command::Version {
        // stdin may hold {"cniVersion": ...}; an unknown version still gets the list.
        let asked = serde_json::from_slice::<serde_json::Value>(stdin)
            .ok()
            .and_then(|v| v.get("cniVersion").and_then(|s| s.as_str()).and_then(|s| Version::parse(s).ok()));
        return Ok(Some(version_reply(asked)));
    }
    let conf = NetConf::parse(stdin)?;
    *version = conf.cni_version.as_str().to_string();
    match req.command {
        Command::Add => Ok(Some(plugin.add(&req, &conf)?.to_json(conf.cni_version))),
        Command::Del => plugin.del(&req, &conf).map(|_| None),
        Command::Check => plugin.check(&req, &conf).map(|_| None),
        Command::Status | Command::Gc if conf.cni_version < Version::V1_1_0 => Err(Error::new(
            ErrorCode::IncompatibleVersion,
            format!("config version {} does not allow {}: it needs cniVersion 1.1.0", conf.cni_version, req.command.as_str()),
        )),
        Command::Status => plugin.status(&req, &conf).map(|_| None),
        Command::Gc => plugin.gc(&req, &conf).map(|_| None),
        Command::Version => unreachable!("answered above"),
    }
}

/// The `main` of a plugin binary: the process environment and stdin, exit with the code.
pub fn main(plugin: &dyn Plugin) -> ! {
    let mut stdin = Vec::new();
    let code = match std::io::stdin().read_to_end(&mut stdin) {
        Ok(_) => run(plugin, |k| std::env::var(k).ok(), &stdin, &mut std::io::stdout().lock()),
        Err(e) => {
            let err = Error::new(ErrorCode::Io, format!("cannot read stdin: {e}"));
            println!("{}", err.to_json(Version::LATEST.as_str()));
            1
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::*;
    use crate::spec::IpConfig;

    #[derive(Default)]
    struct Fake {
        calls: RefCell<Vec<&'static str>>,
    }

    impl Plugin for Fake {
        fn add(&self, _req: &Request, _conf: &NetConf) -> Result<CniResult, Error> {
            self.calls.borrow_mut().push("add");
            Ok(CniResult {
                ips: vec![IpConfig { address: "10.0.0.2/24".parse().unwrap(), gateway: None, interface: None }],
                ..Default::default()
            })
        }
        fn del(&self, _req: &Request, _conf: &NetConf) -> Result<(), Error> {
            self.calls.borrow_mut().push("del");
            Err(Error::kernel("link busy"))
        }
        fn check(&self, _req: &Request, _conf: &NetConf) -> Result<(), Error> {
            Ok(())
        }
    }

    fn invoke(command: &str, stdin: &str) -> (i32, serde_json::Value, Vec<&'static str>) {
        let fake = Fake::default();
        let env: HashMap<&str, &str> = [
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/x"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/bin"),
        ]
        .into();
        let mut out = Vec::new();
        let code = run(&fake, |k| env.get(k).map(|v| v.to_string()), stdin.as_bytes(), &mut out);
        let json = if out.is_empty() { serde_json::Value::Null } else { serde_json::from_slice(&out).unwrap() };
        (code, json, fake.calls.into_inner())
    }

    #[test]
    fn add_answers_in_the_requested_version() {
        let (code, json, calls) = invoke("ADD", r#"{"cniVersion":"0.4.0","name":"n","type":"t"}"#);
        assert_eq!((code, calls), (0, vec!["add"]));
        assert_eq!(json["cniVersion"], "0.4.0");
        assert_eq!(json["ips"][0]["version"], "4");
    }

    #[test]
    fn errors_print_the_code_and_exit_1() {
        let (code, json, _) = invoke("DEL", r#"{"cniVersion":"1.0.0","name":"n","type":"t"}"#);
        assert_eq!(code, 1);
        assert_eq!(json["code"], 100);
        assert_eq!(json["cniVersion"], "1.0.0");
        let (code, json, calls) = invoke("ADD", r#"{"cniVersion":"7.0.0","name":"n","type":"t"}"#);
        assert_eq!((code, json["code"].as_u64(), calls), (1, Some(1), vec![]));
    }

    #[test]
    fn version_status_and_gc() {
        let (code, json, _) = invoke("VERSION", r#"{"cniVersion":"1.0.0"}"#);
        assert_eq!(code, 0);
        assert_eq!(json["supportedVersions"].as_array().unwrap().len(), 3);
        let (code, json, _) = invoke("VERSION", "");
        assert_eq!((code, json["cniVersion"].as_str()), (0, Some("1.1.0")));
        let (code, _, _) = invoke("STATUS", r#"{"cniVersion":"1.1.0","name":"n","type":"t"}"#);
        assert_eq!(code, 0);
        let (code, json, _) = invoke("GC", r#"{"cniVersion":"1.0.0","name":"n","type":"t"}"#);
        assert_eq!((code, json["code"].as_u64()), (1, Some(1)));
    }
}
