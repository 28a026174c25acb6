//! The iptables fallback: `iptables`/`ip6tables` on chains of our own in the `nat` table
//! (`KRS-CNI-HOSTPORTS`, `KRS-CNI-HP-SNAT`, `KRS-CNI-MASQ`), each reached by one jump rule we
//! add to a built-in chain (checked with `-C` first). Other chains' rules are never flushed
//! or edited; owner rules are found by their comment in `-S` output and deleted by spec.
//! Unlike nftables, a replace is a delete followed by adds, not one transaction.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;

use super::exec::{Runner, lock};
use super::tag::{self, Kind};
use super::{Error, Firewall, Owner, PortForward, PortmapOptions, Protocol, Result};

const NAME: &str = "iptables";
const HOSTPORTS: &str = "KRS-CNI-HOSTPORTS";
const HOSTPORTS_SNAT: &str = "KRS-CNI-HP-SNAT";
const MASQUERADE: &str = "KRS-CNI-MASQ";
const CHAINS: [&str; 3] = [HOSTPORTS, HOSTPORTS_SNAT, MASQUERADE];

/// The jump rules into our chains: (built-in chain, rule spec).
const JUMPS: [(&str, &str); 4] = [
    ("PREROUTING", "-m addrtype --dst-type LOCAL -j KRS-CNI-HOSTPORTS"),
    ("OUTPUT", "-m addrtype --dst-type LOCAL -j KRS-CNI-HOSTPORTS"),
    ("POSTROUTING", "-j KRS-CNI-HP-SNAT"),
    ("POSTROUTING", "-j KRS-CNI-MASQ"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn of(addr: IpAddr) -> Family {
        if addr.is_ipv4() { Family::V4 } else { Family::V6 }
    }

    fn program(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }
}

pub struct Iptables {
    runner: Runner,
}

impl Iptables {
    pub fn new() -> Iptables {
        Iptables { runner: Runner { backend: NAME, netns: None } }
    }

    /// Acts inside the named namespace (`ip netns exec <name> iptables ...`).
    pub fn in_netns(name: &str) -> Iptables {
        Iptables { runner: Runner { backend: NAME, netns: Some(name.to_string()) } }
    }

    pub fn works(&self) -> Result<()> {
        self.nat(Family::V4, &["-S", "POSTROUTING"]).map(|_| ())
    }

    fn nat(&self, family: Family, args: &[&str]) -> Result<String> {
        let mut all = vec!["-w", "5", "-t", "nat"];
        all.extend_from_slice(args);
        self.runner.run(family.program(), &all, None)
    }

    /// Our chains and the jumps into them, created when missing.
    fn ensure_chains(&self, family: Family) -> Result<()> {
        for chain in CHAINS {
            if self.nat(family, &["-S", chain]).is_err() {
                self.nat(family, &["-N", chain])?;
            }
        }
        for (builtin, spec) in JUMPS {
            let spec: Vec<&str> = spec.split(' ').collect();
            let check = [&["-C", builtin][..], &spec].concat();
            if self.nat(family, &check).is_err() {
                self.nat(family, &[&["-A", builtin][..], &spec].concat())?;
            }
        }
        Ok(())
    }

    /// The rules (as `-S` prints them, split into arguments) of our chains in `family`; a
    /// missing chain, or ip6tables not working where no IPv6 rule was ever added, is empty.
    fn list(&self, family: Family) -> Result<Vec<Vec<String>>> {
        let mut rules = Vec::new();
        for chain in CHAINS {
            match self.nat(family, &["-S", chain]) {
                Ok(out) => rules.extend(out.lines().map(split_args).filter(|a| a.first().is_some_and(|f| f == "-A"))),
                Err(Error::Command { .. }) => {}
                Err(e) if family == Family::V6 => tracing::debug!("ip6tables unusable, no IPv6 rules: {e}"),
                Err(e) => return Err(e),
            }
        }
        Ok(rules)
    }

    /// Deletes our rules whose comment `keep_rule` rejects; the caller holds the lock.
    fn delete_where(&self, keep_rule: impl Fn(&str) -> bool) -> Result<()> {
        for family in [Family::V4, Family::V6] {
            for mut rule in self.list(family)? {
                if comment_of(&rule).is_some_and(|c| !keep_rule(c)) {
                    rule[0] = "-D".to_string();
                    let args: Vec<&str> = rule.iter().map(String::as_str).collect();
                    self.nat(family, &args)?;
                }
            }
        }
        Ok(())
    }

    fn delete_owned(&self, kind: Kind, owner: &Owner) -> Result<()> {
        let comment = tag::comment(kind, owner);
        let _lock = lock()?;
        self.delete_where(|c| c != comment)
    }

    fn owned(&self, kind: Kind, owner: &Owner) -> Result<Vec<Vec<String>>> {
        let comment = tag::comment(kind, owner);
        let mut rules = self.list(Family::V4)?;
        rules.extend(self.list(Family::V6)?);
        rules.retain(|r| comment_of(r) == Some(&comment));
        Ok(rules)
    }

    fn append(&self, kind: Kind, owner: &Owner, rules: &[(Family, String)]) -> Result<()> {
        let comment = tag::comment(kind, owner);
        for family in [Family::V4, Family::V6] {
            if rules.iter().any(|(f, _)| *f == family) {
                self.ensure_chains(family)?;
            }
        }
        for (family, rule) in rules {
            let (chain, rest) = rule.split_once(' ').expect("rule has a chain and a spec");
            let mut args = vec!["-A", chain];
            args.extend(rest.split(' '));
            args.extend(["-m", "comment", "--comment", &comment]);
            // The target goes last for readability of -S output; iptables accepts any order.
            self.nat(*family, &args)?;
        }
        Ok(())
    }
}

impl Default for Iptables {
    fn default() -> Iptables {
        Iptables::new()
    }
}

impl Firewall for Iptables {
    fn name(&self) -> &'static str {
        NAME
    }

    fn add_masquerade(&self, owner: &Owner, addr: IpNet) -> Result<()> {
        let _lock = lock()?;
        let comment = tag::comment(Kind::Masquerade, owner);
        self.delete_where(|c| c != comment)?;
        let family = Family::of(addr.addr());
        let rules: Vec<_> = masquerade_rules(addr).into_iter().map(|r| (family, r)).collect();
        self.append(Kind::Masquerade, owner, &rules)
    }

    fn del_masquerade(&self, owner: &Owner) -> Result<()> {
        self.delete_owned(Kind::Masquerade, owner)
    }

    fn check_masquerade(&self, owner: &Owner, addr: IpNet) -> Result<()> {
        let rules = self.owned(Kind::Masquerade, owner)?;
        let source = format!("{}/{}", addr.addr(), addr.max_prefix_len());
        let masq = rules.iter().filter(|r| arg(r, "-s") == Some(&source) && arg(r, "-j") == Some("MASQUERADE")).count();
        if masq == 1 && rules.len() == 2 {
            Ok(())
        } else {
            Err(Error::Check { owner: tag::comment(Kind::Masquerade, owner), detail: format!("want the masquerade rules for {addr}, found {} rules", rules.len()) })
        }
    }

    fn add_port_forwards(&self, owner: &Owner, forwards: &[PortForward], options: &PortmapOptions) -> Result<()> {
        let _lock = lock()?;
        let comment = tag::comment(Kind::PortForward, owner);
        self.delete_where(|c| c != comment)?;
        self.append(Kind::PortForward, owner, &port_forward_rules(forwards, options))
    }

    fn del_port_forwards(&self, owner: &Owner) -> Result<()> {
        self.delete_owned(Kind::PortForward, owner)
    }

    fn check_port_forwards(&self, owner: &Owner, forwards: &[PortForward]) -> Result<()> {
        let rules = self.owned(Kind::PortForward, owner)?;
        let found: HashSet<DnatSeen> = rules.iter().filter_map(|r| DnatSeen::from_args(r)).collect();
        let want: HashSet<DnatSeen> =
            forwards.iter().filter(|f| f.host_ip.is_none_or(|h| h.is_ipv4() == f.container_ip.is_ipv4())).map(DnatSeen::from_forward).collect();
        if found == want {
            Ok(())
        } else {
            let missing: Vec<_> = want.difference(&found).collect();
            let extra: Vec<_> = found.difference(&want).collect();
            Err(Error::Check { owner: tag::comment(Kind::PortForward, owner), detail: format!("missing {missing:?}, unexpected {extra:?}") })
        }
    }

    fn gc(&self, network: &str, keep: &[Owner]) -> Result<()> {
        let _lock = lock()?;
        self.delete_where(|c| !super::nftables::is_stale(c, network, keep))
    }
}

fn proto(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
    }
}

/// `addr` goes out masqueraded unless to its own subnet or multicast: a RETURN for the
/// subnet, then the MASQUERADE (iptables has one `-d` per rule).
fn masquerade_rules(addr: IpNet) -> Vec<String> {
    let multicast = if addr.addr().is_ipv4() { "224.0.0.0/4" } else { "ff00::/8" };
    vec![
        format!("{MASQUERADE} -s {} -d {} -j RETURN", addr.addr(), addr.trunc()),
        format!("{MASQUERADE} -s {} ! -d {multicast} -j MASQUERADE", addr.addr()),
    ]
}

fn destination(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// Each rule as `<chain> <spec>`, without the comment; the same rules as the nftables backend.
fn port_forward_rules(forwards: &[PortForward], options: &PortmapOptions) -> Vec<(Family, String)> {
    let mut rules = Vec::new();
    for f in forwards.iter().filter(|f| f.host_ip.is_none_or(|h| h.is_ipv4() == f.container_ip.is_ipv4())) {
        let family = Family::of(f.container_ip);
        let p = proto(f.protocol);
        let daddr = f.host_ip.map(|h| format!("-d {h} ")).unwrap_or_default();
        rules.push((
            family,
            format!("{HOSTPORTS} {daddr}-p {p} --dport {} -j DNAT --to-destination {}", f.host_port, destination(f.container_ip, f.container_port)),
        ));
        let to_pod = format!("-d {} -p {p} --dport {} -m conntrack --ctstate DNAT -j MASQUERADE", f.container_ip, f.container_port);
        if options.masq_all {
            rules.push((family, format!("{HOSTPORTS_SNAT} {to_pod}")));
        } else if options.snat {
            rules.push((family, format!("{HOSTPORTS_SNAT} -s {} {to_pod}", f.container_ip)));
            if family == Family::V4 {
                rules.push((family, format!("{HOSTPORTS_SNAT} -s 127.0.0.0/8 {to_pod}")));
            }
        }
    }
    rules
}

/// Splits a line of `iptables -S` into arguments, honouring double quotes.
fn split_args(line: &str) -> Vec<String> {
    let mut args = Vec::new();
    let (mut cur, mut quoted, mut any) = (String::new(), false, false);
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any {
                    args.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        args.push(cur);
    }
    args
}

fn arg<'a>(rule: &'a [String], flag: &str) -> Option<&'a str> {
    rule.iter().position(|a| a == flag).and_then(|i| rule.get(i + 1)).map(String::as_str)
}

fn comment_of(rule: &[String]) -> Option<&str> {
    arg(rule, "--comment")
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DnatSeen {
    host_ip: Option<String>,
    protocol: String,
    host_port: String,
    destination: String,
}

impl DnatSeen {
    fn from_forward(f: &PortForward) -> DnatSeen {
        DnatSeen {
            host_ip: f.host_ip.map(|h| format!("{h}/{}", if h.is_ipv4() { 32 } else { 128 })),
            protocol: proto(f.protocol).to_string(),
            host_port: f.host_port.to_string(),
            destination: destination(f.container_ip, f.container_port),
        }
    }

    fn from_args(rule: &[String]) -> Option<DnatSeen> {
        if arg(rule, "-j") != Some("DNAT") {
            return None;
        }
        Some(DnatSeen {
            host_ip: arg(rule, "-d").map(str::to_string),
            protocol: arg(rule, "-p")?.to_string(),
            host_port: arg(rule, "--dport")?.to_string(),
            destination: arg(rule, "--to-destination")?.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rules() {
        let f = PortForward { host_ip: Some("10.0.0.1".parse().unwrap()), host_port: 8080, container_ip: "10.22.0.5".parse().unwrap(), container_port: 80, protocol: Protocol::Tcp };
        let rules = port_forward_rules(std::slice::from_ref(&f), &PortmapOptions::default());
        assert_eq!(rules[0].1, "KRS-CNI-HOSTPORTS -d 10.0.0.1 -p tcp --dport 8080 -j DNAT --to-destination 10.22.0.5:80");
        assert_eq!(rules[1].1, "KRS-CNI-HP-SNAT -s 10.22.0.5 -d 10.22.0.5 -p tcp --dport 80 -m conntrack --ctstate DNAT -j MASQUERADE");
        assert_eq!(rules.len(), 3);
        assert_eq!(masquerade_rules("10.22.0.5/16".parse().unwrap())[0], "KRS-CNI-MASQ -s 10.22.0.5 -d 10.22.0.0/16 -j RETURN");
        let listed = split_args("-A KRS-CNI-HOSTPORTS -d 10.0.0.1/32 -p tcp -m tcp --dport 8080 -m comment --comment \"krs-pm:n:c:eth0\" -j DNAT --to-destination 10.22.0.5:80");
        assert_eq!(comment_of(&listed), Some("krs-pm:n:c:eth0"));
        assert_eq!(DnatSeen::from_args(&listed), Some(DnatSeen::from_forward(&f)));
    }
}
