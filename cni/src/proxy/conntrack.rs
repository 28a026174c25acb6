//! Removing connection-tracking entries that would keep sending traffic the wrong way: a UDP
//! "connection" lives on as long as packets keep coming, so a client would keep talking to
//! an endpoint that is gone, or keep getting rejected after the service got endpoints
//! (kube-proxy clears these after each sync too). Behind [`Conntrack`] so the backend's
//! choices are unit-tested; [`ConntrackCli`] runs `conntrack -D`.

use std::fmt;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use super::ProxyError;
use super::model::Protocol;

/// Which entries to delete: every given field must match.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Flow {
    pub protocol: Protocol,
    /// The address the client sent to (a service address).
    pub orig_dst: Option<Ipv4Addr>,
    /// The port the client sent to (a service or node port).
    pub orig_dst_port: Option<u16>,
    /// Who answers (the endpoint the flow was sent to).
    pub reply_src: Option<Ipv4Addr>,
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.args().join(" "))
    }
}

impl Flow {
    /// The `conntrack -D` filter arguments.
    pub fn args(&self) -> Vec<String> {
        let proto = match self.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        };
        let mut args = vec!["-p".to_string(), proto.to_string()];
        if let Some(ip) = self.orig_dst {
            args.extend(["--orig-dst".to_string(), ip.to_string()]);
        }
        if let Some(port) = self.orig_dst_port {
            args.extend(["--orig-port-dst".to_string(), port.to_string()]);
        }
        if let Some(ip) = self.reply_src {
            args.extend(["--reply-src".to_string(), ip.to_string()]);
        }
        args
    }
}

pub trait Conntrack: Send {
    /// Deletes the entries matching `flow`; none matching is success.
    fn delete(&mut self, flow: &Flow) -> Result<(), ProxyError>;
}

/// The `conntrack` tool, in a named network namespace when given.
#[derive(Debug, Clone, Default)]
pub struct ConntrackCli {
    pub netns: Option<String>,
}

impl Conntrack for ConntrackCli {
    fn delete(&mut self, flow: &Flow) -> Result<(), ProxyError> {
        let mut args = vec!["-D".to_string()];
        args.extend(flow.args());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = crate::proxy::exec::run("conntrack", self.netns.as_deref(), "conntrack", &args, None)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Exit status 1 with "0 flow entries have been deleted" is "nothing matched".
        if out.status.success() || (out.status.code() == Some(1) && stderr.contains("0 flow entries")) {
            return Ok(());
        }
        Err(ProxyError::Command { backend: "conntrack", command: format!("conntrack {}", args.join(" ")), stderr: stderr.trim().to_string() })
    }
}

/// A [`Conntrack`] that records what it was asked to delete (for tests); clones share the record.
#[derive(Debug, Clone, Default)]
pub struct RecordingConntrack {
    pub deleted: Arc<Mutex<Vec<Flow>>>,
}

impl RecordingConntrack {
    /// Everything deleted so far, emptying the record.
    pub fn take(&self) -> Vec<Flow> {
        std::mem::take(&mut *self.deleted.lock().unwrap())
    }
}

impl Conntrack for RecordingConntrack {
    fn delete(&mut self, flow: &Flow) -> Result<(), ProxyError> {
        self.deleted.lock().unwrap().push(flow.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_conntrack_arguments() {
        let flow = Flow { protocol: Protocol::Udp, orig_dst: Some(Ipv4Addr::new(10, 96, 0, 10)), orig_dst_port: Some(53), reply_src: Some(Ipv4Addr::new(10, 244, 0, 2)) };
        assert_eq!(flow.to_string(), "-p udp --orig-dst 10.96.0.10 --orig-port-dst 53 --reply-src 10.244.0.2");
        let by_port = Flow { protocol: Protocol::Udp, orig_dst: None, orig_dst_port: Some(30053), reply_src: None };
        assert_eq!(by_port.args(), ["-p", "udp", "--orig-port-dst", "30053"]);
    }

    #[test]
    fn the_recorder_shares_its_record_between_clones() {
        let rec = RecordingConntrack::default();
        let mut handle: Box<dyn Conntrack> = Box::new(rec.clone());
        let flow = Flow { protocol: Protocol::Udp, orig_dst: None, orig_dst_port: None, reply_src: None };
        handle.delete(&flow).unwrap();
        assert_eq!(rec.take(), [flow]);
        assert!(rec.take().is_empty());
    }
}
