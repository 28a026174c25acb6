//! `route_localnet`: the kernel drops packets with a 127/8 source leaving a non-loopback
//! interface, so localhost access to a hostPort (DNAT in nat output, then masquerade) needs
//! `net.ipv4.conf.<if>.route_localnet=1` on the host interface that routes to the pod (the
//! bridge). The portmap plugin sets it at ADD, as the reference plugin does; it is left set
//! at DEL because other pods on the same bridge may rely on it.

use std::net::IpAddr;
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot find the host interface routing to {addr}: {detail}")]
    Route { addr: IpAddr, detail: String },
    #[error("cannot set {path}: {source}")]
    Sysctl { path: String, source: std::io::Error },
}

/// Sets `route_localnet=1` on the interface the current namespace routes `addr` through.
pub fn enable_for(addr: IpAddr) -> Result<(), Error> {
    let route_err = |detail: String| Error::Route { addr, detail };
    let out = Command::new("ip")
        .args(["route", "get", &addr.to_string()])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| route_err(e.to_string()))?;
    if !out.status.success() {
        return Err(route_err(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let dev = route_dev(&text).ok_or_else(|| route_err(format!("no device in {:?}", text.trim())))?;
    let path = format!("/proc/sys/net/ipv4/conf/{dev}/route_localnet");
    std::fs::write(&path, "1").map_err(|source| Error::Sysctl { path, source })
}

/// The `dev` of `ip route get` output; interface names cannot hold '/' or '.' tricks.
fn route_dev(text: &str) -> Option<&str> {
    let mut words = text.split_whitespace();
    words.find(|w| *w == "dev")?;
    words.next().filter(|d| !d.is_empty() && !d.contains('/') && *d != "." && *d != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_device() {
        assert_eq!(route_dev("10.22.0.5 dev cni0 src 10.22.0.1 uid 0 \n    cache \n"), Some("cni0"));
        assert_eq!(route_dev("local 10.0.0.1 dev lo table local src 10.0.0.1"), Some("lo"));
        assert_eq!(route_dev("unreachable"), None);
        assert_eq!(route_dev("x dev ../y"), None);
    }
}
