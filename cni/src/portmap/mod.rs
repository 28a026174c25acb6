//! The `krs-portmap` chained plugin: hostPort DNAT for the mappings the runtime passes in
//! `runtimeConfig.portMappings`, to the container addresses in `prevResult`, through a
//! [`crate::firewall`] backend. ADD passes the previous result through; DEL removes the
//! attachment's rules (without needing a prevResult); CHECK compares; GC removes the rules of
//! attachments not in `cni.dev/valid-attachments`.

mod config;
mod localnet;

pub use config::{PortmapConf, container_ips, forwards};

use crate::firewall::{self, Firewall, Owner, PortForward};
use crate::skel::Plugin;
use crate::spec::{CniResult, Error, NetConf, Request};

#[derive(Debug, Default)]
pub struct Portmap {
    /// Act inside this named network namespace (tests); `None`: the caller's.
    pub netns: Option<String>,
}

fn kernel(e: impl std::fmt::Display) -> Error {
    Error::kernel(e.to_string())
}

fn owner(req: &Request, conf: &NetConf) -> Owner {
    Owner { network: conf.name.clone(), container_id: req.container_id.clone(), ifname: req.ifname.clone() }
}

impl Portmap {
    fn firewall(&self, pc: &PortmapConf) -> Result<Box<dyn Firewall>, Error> {
        firewall::backend_in(pc.backend.as_deref(), self.netns.as_deref()).map_err(kernel)
    }

    /// The configuration and the forwards, from the mappings and the previous result.
    fn resolve(&self, conf: &NetConf, command: &str) -> Result<(PortmapConf, Vec<PortForward>), Error> {
        let pc = PortmapConf::from_netconf(conf)?;
        let prev = conf.prev_result.as_ref().ok_or_else(|| {
            Error::invalid_config(format!("krs-portmap {command} needs \"prevResult\": it must be chained after a plugin that gives the container its addresses"))
        })?;
        let ips = container_ips(prev);
        let mappings = &conf.runtime_config.port_mappings;
        if !mappings.is_empty() && ips.is_empty() {
            return Err(Error::invalid_config("\"prevResult\" holds no address of the container to forward ports to"));
        }
        Ok((pc, forwards(mappings, &ips)?))
    }
}

impl Plugin for Portmap {
    fn add(&self, req: &Request, conf: &NetConf) -> Result<CniResult, Error> {
        let (pc, forwards) = self.resolve(conf, "ADD")?;
        let prev = conf.prev_result.clone().expect("resolve checked prevResult");
        if forwards.is_empty() {
            return Ok(prev);
        }
        let fw = self.firewall(&pc)?;
        fw.add_port_forwards(&owner(req, conf), &forwards, &pc.options()).map_err(kernel)?;
        if pc.snat && self.netns.is_none() {
            let host = crate::netlink::Rtnl::host().map_err(kernel)?;
            for ip in forwards.iter().map(|f| f.container_ip).filter(|ip| ip.is_ipv4()) {
                localnet::enable_for(&host, ip).map_err(kernel)?;
            }
        }
        Ok(prev)
    }

    fn del(&self, req: &Request, conf: &NetConf) -> Result<(), Error> {
        let pc = PortmapConf::from_netconf(conf)?;
        self.firewall(&pc)?.del_port_forwards(&owner(req, conf)).map_err(kernel)
    }

    fn check(&self, req: &Request, conf: &NetConf) -> Result<(), Error> {
        let (pc, forwards) = self.resolve(conf, "CHECK")?;
        self.firewall(&pc)?.check_port_forwards(&owner(req, conf), &forwards).map_err(kernel)
    }

    fn gc(&self, _req: &Request, conf: &NetConf) -> Result<(), Error> {
        let pc = PortmapConf::from_netconf(conf)?;
        let keep: Vec<Owner> = conf
            .valid_attachments
            .iter()
            .map(|a| Owner { network: conf.name.clone(), container_id: a.container_id.clone(), ifname: a.ifname.clone() })
            .collect();
        self.firewall(&pc)?.gc(&conf.name, &keep).map_err(kernel)
    }

    fn status(&self, _req: &Request, conf: &NetConf) -> Result<(), Error> {
        let pc = PortmapConf::from_netconf(conf)?;
        self.firewall(&pc).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(command: &str, stdin: &str) -> (i32, serde_json::Value) {
        let env = |k: &str| match k {
            "CNI_COMMAND" => Some(command.to_string()),
            "CNI_CONTAINERID" => Some("c1".into()),
            "CNI_NETNS" => Some("/run/netns/x".into()),
            "CNI_IFNAME" => Some("eth0".into()),
            "CNI_PATH" => Some("/bin".into()),
            _ => None,
        };
        let mut out = Vec::new();
        let code = crate::skel::run(&Portmap::default(), env, stdin.as_bytes(), &mut out);
        (code, serde_json::from_slice(&out).unwrap_or(serde_json::Value::Null))
    }

    #[test]
    fn add_without_prev_result_is_a_config_error() {
        let (code, json) = run("ADD", r#"{"cniVersion":"1.0.0","name":"n","type":"krs-portmap","runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80}]}}"#);
        assert_eq!((code, json["code"].as_u64()), (1, Some(7)));
        assert!(json["msg"].as_str().unwrap().contains("prevResult"), "{json}");
    }

    #[test]
    fn add_without_mappings_passes_the_result_through() {
        // No firewall is touched when there is nothing to forward.
        let (code, json) = run("ADD", r#"{"cniVersion":"1.0.0","name":"n","type":"krs-portmap","prevResult":{"ips":[{"address":"10.22.0.5/16"}]}}"#);
        assert_eq!(code, 0, "{json}");
        assert_eq!(json["ips"][0]["address"], "10.22.0.5/16");
    }

    #[test]
    fn bad_mappings_fail_before_any_rule() {
        let (code, json) = run(
            "ADD",
            r#"{"cniVersion":"1.0.0","name":"n","type":"krs-portmap","prevResult":{"ips":[{"address":"10.22.0.5/16"}]},
               "runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":0,"protocol":"tcp"}]}}"#,
        );
        assert_eq!((code, json["code"].as_u64()), (1, Some(7)), "{json}");
    }
}
