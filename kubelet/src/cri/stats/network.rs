//! A pod's network counters: `/proc/net/dev` as seen from a thread that joined the pod's
//! network namespace (the sandbox holds it in a bind-mounted file; no process need run).

use std::fs::File;
use std::path::Path;

/// One interface's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceCounters {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_errors: u64,
    pub tx_bytes: u64,
    pub tx_errors: u64,
}

/// `/proc/net/dev`: two header lines, then `name: rx_bytes packets errs drop fifo frame
/// compressed multicast tx_bytes packets errs ...`. Loopback is left out, as it never leaves
/// the pod.
pub fn parse_net_dev(text: &str) -> Vec<InterfaceCounters> {
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let name = name.trim();
            let v: Vec<u64> = rest.split_whitespace().map(|n| n.parse().ok()).collect::<Option<_>>()?;
            (name != "lo" && v.len() >= 11).then(|| InterfaceCounters {
                name: name.to_string(),
                rx_bytes: v[0],
                rx_errors: v[2],
                tx_bytes: v[8],
                tx_errors: v[10],
            })
        })
        .collect()
}

/// The interfaces of the network namespace held by `netns_file`.
pub fn read_in(netns_file: &Path) -> std::io::Result<Vec<InterfaceCounters>> {
    let ns = File::open(netns_file)?;
    // A thread of its own joins the namespace, so ours stays where it is; its own view of
    // /proc (thread-self) shows its namespace's devices.
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
            std::fs::read_to_string("/proc/thread-self/net/dev").map(|t| parse_net_dev(&t))
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("network counter thread panicked")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_of_every_interface_but_loopback() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0\n  \
eth0:    1500      10    1    0    0     0          0         0     2500      20    3    0    0     0       0          0\n";
        assert_eq!(
            parse_net_dev(text),
            vec![InterfaceCounters { name: "eth0".into(), rx_bytes: 1500, rx_errors: 1, tx_bytes: 2500, tx_errors: 3 }]
        );
    }

    #[test]
    fn our_own_namespace_can_be_read() {
        // Joining our own namespace needs CAP_SYS_ADMIN; without it, only parse.
        match read_in(Path::new("/proc/self/ns/net")) {
            Ok(_) => {}
            Err(e) => assert!(e.kind() == std::io::ErrorKind::PermissionDenied, "{e}"),
        }
    }
}
