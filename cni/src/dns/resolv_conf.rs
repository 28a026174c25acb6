//! The node's upstream resolvers, from the `nameserver` lines of a resolv.conf. Pure.

use std::net::{IpAddr, SocketAddr};

/// The nameservers in file order, each on port 53. Comments (`#`, `;`), other options and
/// unparsable addresses are skipped; an IPv6 zone (`fe80::1%eth0`) is dropped because a
/// socket address here cannot carry one by name.
pub fn nameservers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut words = line.split_whitespace();
            if words.next() != Some("nameserver") {
                return None;
            }
            let address = words.next()?.split('%').next()?;
            address.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nameserver_lines_in_order() {
        let text = "# generated\nsearch example.com\nnameserver 10.0.0.2\nnameserver  2001:db8::1 # v6\n;nameserver 9.9.9.9\noptions ndots:5\nnameserver fe80::1%eth0\nnameserver bogus\n";
        let got: Vec<String> = nameservers(text).iter().map(ToString::to_string).collect();
        assert_eq!(got, ["10.0.0.2:53", "[2001:db8::1]:53", "[fe80::1]:53"]);
    }

    #[test]
    fn no_nameservers_is_empty() {
        assert!(nameservers("search a.b\n").is_empty());
    }
}
