//! The nftables backend: drives `nft` on a table of our own, `inet krs-cni` (both address
//! families), and never touches any other table.
//!
//! Base chains hold only fixed jumps (rewritten in every ADD transaction, so they stay
//! idempotent); owner-tagged rules live in regular chains:
//! - `prerouting` (nat, dstnat) and `output` (nat, for the host's own and localhost traffic)
//!   jump to `hostports` for traffic to a local address: DNAT hostPort -> pod.
//! - `postrouting` (nat, srcnat) jumps to `hostports-snat` (masquerade hairpin, localhost and
//!   `masqAll` traffic that was DNATed) and `pod-masq` (the bridge's ipMasq).
//!
//! Reading back uses `nft -j`; deleting is by handle, with adds and deletes of one call in
//! one `nft -f -` transaction.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;

use super::exec::{Runner, lock};
use super::tag::{self, Kind};
use super::{Error, Firewall, Owner, PortForward, PortmapOptions, Protocol, Result};

const NAME: &str = "nftables";
pub const TABLE: &str = "inet krs-cni";
const HOSTPORTS: &str = "hostports";
const HOSTPORTS_SNAT: &str = "hostports-snat";
const MASQUERADE: &str = "pod-masq"; // "masquerade" is an nft keyword

pub struct Nftables {
    runner: Runner,
}

impl Nftables {
    /// Acts on the caller's network namespace.
    pub fn new() -> Nftables {
        Nftables { runner: Runner { backend: NAME, netns: None } }
    }

    /// Acts inside the named namespace (`ip netns exec <name> nft ...`).
    pub fn in_netns(name: &str) -> Nftables {
        Nftables { runner: Runner { backend: NAME, netns: Some(name.to_string()) } }
    }

    /// Whether `nft` runs and can read the ruleset here.
    pub fn works(&self) -> Result<()> {
        self.runner.run("nft", &["list", "tables"], None).map(|_| ())
    }

    fn list(&self) -> Result<Vec<Listed>> {
        match self.runner.run("nft", &["-j", "list", "table", "inet", "krs-cni"], None) {
            Ok(json) => parse_listing(&json),
            Err(Error::Command { stderr, .. }) if stderr.contains("No such file or directory") => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    fn apply(&self, script: &str) -> Result<()> {
        if script.is_empty() {
            return Ok(());
        }
        self.runner.run("nft", &["-f", "-"], Some(script)).map(|_| ())
    }

    /// Replaces `owner`'s rules of `kind` with `rules` (chain, rule text) in one transaction.
    fn replace(&self, kind: Kind, owner: &Owner, rules: &[(&str, String)]) -> Result<()> {
        let comment = tag::comment(kind, owner);
        let _lock = lock()?;
        let existing = self.list()?;
        let mut script = preamble();
        script.push_str(&deletes(existing.iter().filter(|r| r.comment.as_deref() == Some(&comment))));
        for (chain, rule) in rules {
            writeln!(script, "add rule {TABLE} {chain} {rule} comment \"{comment}\"").unwrap();
        }
        self.apply(&script)
    }

    fn delete_owned(&self, kind: Kind, owner: &Owner) -> Result<()> {
        let comment = tag::comment(kind, owner);
        let _lock = lock()?;
        let existing = self.list()?;
        self.apply(&deletes(existing.iter().filter(|r| r.comment.as_deref() == Some(&comment))))
    }

    fn owned(&self, kind: Kind, owner: &Owner) -> Result<Vec<Listed>> {
        let comment = tag::comment(kind, owner);
        Ok(self.list()?.into_iter().filter(|r| r.comment.as_deref() == Some(&comment)).collect())
    }
}

impl Default for Nftables {
    fn default() -> Nftables {
        Nftables::new()
    }
}

impl Firewall for Nftables {
    fn name(&self) -> &'static str {
        NAME
    }

    fn add_masquerade(&self, owner: &Owner, addr: IpNet) -> Result<()> {
        self.replace(Kind::Masquerade, owner, &[(MASQUERADE, masquerade_rule(addr))])
    }

    fn del_masquerade(&self, owner: &Owner) -> Result<()> {
        self.delete_owned(Kind::Masquerade, owner)
    }

    fn check_masquerade(&self, owner: &Owner, addr: IpNet) -> Result<()> {
        let rules = self.owned(Kind::Masquerade, owner)?;
        let want = addr.addr().to_string();
        let found = rules.iter().any(|r| r.chain == MASQUERADE && r.expr.to_string().contains(&format!("\"{want}\"")));
        if rules.len() == 1 && found {
            Ok(())
        } else {
            Err(Error::Check { owner: tag::comment(Kind::Masquerade, owner), detail: format!("want one masquerade rule for {addr}, found {}", rules.len()) })
        }
    }

    fn add_port_forwards(&self, owner: &Owner, forwards: &[PortForward], options: &PortmapOptions) -> Result<()> {
        self.replace(Kind::PortForward, owner, &port_forward_rules(forwards, options))
    }

    fn del_port_forwards(&self, owner: &Owner) -> Result<()> {
        self.delete_owned(Kind::PortForward, owner)
    }

    fn check_port_forwards(&self, owner: &Owner, forwards: &[PortForward]) -> Result<()> {
        let rules = self.owned(Kind::PortForward, owner)?;
        let found: HashSet<DnatSeen> = rules.iter().filter(|r| r.chain == HOSTPORTS).filter_map(|r| DnatSeen::from_expr(&r.expr)).collect();
        let want: HashSet<DnatSeen> = forwards.iter().filter(|f| families_match(f)).map(DnatSeen::from_forward).collect();
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
        let existing = self.list()?;
        let stale = existing.iter().filter(|r| r.comment.as_deref().is_some_and(|c| is_stale(c, network, keep)));
        self.apply(&deletes(stale))
    }
}

/// Whether a rule comment belongs to `network` but to none of the `keep` owners.
pub(crate) fn is_stale(comment: &str, network: &str, keep: &[Owner]) -> bool {
    tag::KINDS.iter().any(|&kind| {
        comment.starts_with(&tag::network_prefix(kind, network)) && !keep.iter().any(|o| tag::comment(kind, o) == comment)
    })
}

/// The table and chains, created if missing; the base chains' jumps rewritten.
fn preamble() -> String {
    let mut s = format!("add table {TABLE}\n");
    for chain in [HOSTPORTS, HOSTPORTS_SNAT, MASQUERADE] {
        writeln!(s, "add chain {TABLE} {chain}").unwrap();
    }
    let base = [
        ("prerouting", "prerouting priority dstnat", vec![format!("fib daddr type local jump {HOSTPORTS}")]),
        ("output", "output priority -100", vec![format!("fib daddr type local jump {HOSTPORTS}")]),
        ("postrouting", "postrouting priority srcnat", vec![format!("jump {HOSTPORTS_SNAT}"), format!("jump {MASQUERADE}")]),
    ];
    for (chain, hook, jumps) in base {
        writeln!(s, "add chain {TABLE} {chain} {{ type nat hook {hook}; policy accept; }}").unwrap();
        writeln!(s, "flush chain {TABLE} {chain}").unwrap();
        for jump in jumps {
            writeln!(s, "add rule {TABLE} {chain} {jump}").unwrap();
        }
    }
    s
}

fn deletes<'a>(rules: impl Iterator<Item = &'a Listed>) -> String {
    rules.map(|r| format!("delete rule {TABLE} {} handle {}\n", r.chain, r.handle)).collect()
}

fn family(addr: IpAddr) -> (&'static str, &'static str) {
    match addr {
        IpAddr::V4(_) => ("ip", "ipv4"),
        IpAddr::V6(_) => ("ip6", "ipv6"),
    }
}

/// Masquerade `addr`'s traffic to anything outside its subnet except multicast.
pub(crate) fn masquerade_rule(addr: IpNet) -> String {
    let (ip, _) = family(addr.addr());
    let multicast = if addr.addr().is_ipv4() { "224.0.0.0/4" } else { "ff00::/8" };
    format!("{ip} saddr {} {ip} daddr != {} {ip} daddr != {multicast} masquerade", addr.addr(), addr.trunc())
}

fn proto(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
    }
}

fn families_match(f: &PortForward) -> bool {
    f.host_ip.is_none_or(|h| h.is_ipv4() == f.container_ip.is_ipv4())
}

fn bracketed(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

/// The DNAT rules (chain `hostports`) and source NAT rules (`hostports-snat`) of `forwards`.
/// A forward whose hostIP and pod address differ in family is skipped.
pub(crate) fn port_forward_rules(forwards: &[PortForward], options: &PortmapOptions) -> Vec<(&'static str, String)> {
    let mut rules = Vec::new();
    for f in forwards.iter().filter(|f| families_match(f)) {
        let (ip, nfproto) = family(f.container_ip);
        let p = proto(f.protocol);
        let daddr = f.host_ip.map(|h| format!("{ip} daddr {h} ")).unwrap_or_default();
        rules.push((
            HOSTPORTS,
            format!("meta nfproto {nfproto} {daddr}{p} dport {} dnat {ip} to {}:{}", f.host_port, bracketed(f.container_ip), f.container_port),
        ));
        let to_pod = format!("{ip} daddr {} {p} dport {} ct status dnat", f.container_ip, f.container_port);
        if options.masq_all {
            rules.push((HOSTPORTS_SNAT, format!("{to_pod} masquerade")));
        } else if options.snat {
            rules.push((HOSTPORTS_SNAT, format!("{ip} saddr {} {to_pod} masquerade", f.container_ip)));
            if f.container_ip.is_ipv4() {
                rules.push((HOSTPORTS_SNAT, format!("ip saddr 127.0.0.0/8 {to_pod} masquerade")));
            }
        }
    }
    rules
}

/// One rule of our table as `nft -j` shows it.
#[derive(Debug)]
struct Listed {
    chain: String,
    handle: u64,
    comment: Option<String>,
    expr: Value,
}

fn parse_listing(json: &str) -> Result<Vec<Listed>> {
    let bad = |detail: String| Error::Output { backend: NAME, detail };
    let v: Value = serde_json::from_str(json).map_err(|e| bad(format!("nft -j is not JSON: {e}")))?;
    let items = v.get("nftables").and_then(Value::as_array).ok_or_else(|| bad("nft -j has no \"nftables\" array".into()))?;
    let mut rules = Vec::new();
    for rule in items.iter().filter_map(|i| i.get("rule")) {
        let chain = rule.get("chain").and_then(Value::as_str);
        let handle = rule.get("handle").and_then(Value::as_u64);
        let (Some(chain), Some(handle)) = (chain, handle) else {
            return Err(bad(format!("rule without chain or handle: {rule}")));
        };
        rules.push(Listed {
            chain: chain.to_string(),
            handle,
            comment: rule.get("comment").and_then(Value::as_str).map(str::to_string),
            expr: rule.get("expr").cloned().unwrap_or(Value::Null),
        });
    }
    Ok(rules)
}

/// What CHECK compares: a DNAT rule's match and target, read from `nft -j`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DnatSeen {
    host_ip: Option<String>,
    protocol: String,
    host_port: u64,
    container_ip: String,
    container_port: u64,
}

impl DnatSeen {
    fn from_forward(f: &PortForward) -> DnatSeen {
        DnatSeen {
            host_ip: f.host_ip.map(|h| h.to_string()),
            protocol: proto(f.protocol).to_string(),
            host_port: f.host_port.into(),
            container_ip: f.container_ip.to_string(),
            container_port: f.container_port.into(),
        }
    }

    fn from_expr(expr: &Value) -> Option<DnatSeen> {
        let (mut host_ip, mut dport, mut dnat) = (None, None, None);
        for e in expr.as_array()? {
            if let Some(m) = e.get("match") {
                let payload = m.get("left").and_then(|l| l.get("payload"));
                let field = payload.and_then(|p| p.get("field")).and_then(Value::as_str);
                let protocol = payload.and_then(|p| p.get("protocol")).and_then(Value::as_str);
                match (protocol, field) {
                    (Some(p), Some("dport")) => dport = Some((p.to_string(), m.get("right")?.as_u64()?)),
                    (Some(_), Some("daddr")) => host_ip = m.get("right")?.as_str().map(str::to_string),
                    _ => {}
                }
            }
            if let Some(d) = e.get("dnat") {
                dnat = Some((d.get("addr")?.as_str()?.to_string(), d.get("port")?.as_u64()?));
            }
        }
        let ((protocol, host_port), (container_ip, container_port)) = (dport?, dnat?);
        Some(DnatSeen { host_ip, protocol, host_port, container_ip, container_port })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd(host_ip: Option<&str>, container_ip: &str, protocol: Protocol) -> PortForward {
        PortForward {
            host_ip: host_ip.map(|h| h.parse().unwrap()),
            host_port: 8080,
            container_ip: container_ip.parse().unwrap(),
            container_port: 80,
            protocol,
        }
    }

    #[test]
    fn renders_masquerade_for_both_families() {
        assert_eq!(
            masquerade_rule("10.22.0.5/16".parse().unwrap()),
            "ip saddr 10.22.0.5 ip daddr != 10.22.0.0/16 ip daddr != 224.0.0.0/4 masquerade"
        );
        assert_eq!(masquerade_rule("fd00::5/64".parse().unwrap()), "ip6 saddr fd00::5 ip6 daddr != fd00::/64 ip6 daddr != ff00::/8 masquerade");
    }

    #[test]
    fn renders_dnat_and_snat() {
        let rules = port_forward_rules(&[fwd(None, "10.22.0.5", Protocol::Tcp)], &PortmapOptions::default());
        let text: Vec<String> = rules.iter().map(|(c, r)| format!("{c}: {r}")).collect();
        assert_eq!(
            text,
            [
                "hostports: meta nfproto ipv4 tcp dport 8080 dnat ip to 10.22.0.5:80",
                "hostports-snat: ip saddr 10.22.0.5 ip daddr 10.22.0.5 tcp dport 80 ct status dnat masquerade",
                "hostports-snat: ip saddr 127.0.0.0/8 ip daddr 10.22.0.5 tcp dport 80 ct status dnat masquerade",
            ]
        );
        let v6 = port_forward_rules(&[fwd(Some("fd00::1"), "fd00::5", Protocol::Sctp)], &PortmapOptions { snat: false, masq_all: false });
        assert_eq!(v6, [(HOSTPORTS, "meta nfproto ipv6 ip6 daddr fd00::1 sctp dport 8080 dnat ip6 to [fd00::5]:80".to_string())]);
        let all = port_forward_rules(&[fwd(None, "10.22.0.5", Protocol::Udp)], &PortmapOptions { snat: true, masq_all: true });
        assert_eq!(all[1].1, "ip daddr 10.22.0.5 udp dport 80 ct status dnat masquerade");
        assert!(port_forward_rules(&[fwd(Some("10.0.0.1"), "fd00::5", Protocol::Tcp)], &PortmapOptions::default()).is_empty());
    }

    #[test]
    fn preamble_creates_only_our_table() {
        let p = preamble();
        for line in p.lines() {
            assert!(line.contains(TABLE), "{line}");
        }
        assert!(p.contains("flush chain inet krs-cni postrouting"));
        assert!(!p.contains("flush chain inet krs-cni hostports"), "owner chains are never flushed");
    }

    #[test]
    fn reads_listing_and_dnat_back() {
        let json = r#"{"nftables":[{"metainfo":{"json_schema_version":1}},
            {"table":{"family":"inet","name":"krs-cni","handle":1}},
            {"rule":{"family":"inet","table":"krs-cni","chain":"hostports","handle":7,"comment":"krs-pm:n:c:eth0","expr":[
              {"match":{"op":"==","left":{"meta":{"key":"nfproto"}},"right":"ipv4"}},
              {"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"daddr"}},"right":"10.0.0.1"}},
              {"match":{"op":"==","left":{"payload":{"protocol":"tcp","field":"dport"}},"right":8080}},
              {"dnat":{"family":"ip","addr":"10.22.0.5","port":80}}]}}]}"#;
        let rules = parse_listing(json).unwrap();
        assert_eq!((rules[0].chain.as_str(), rules[0].handle, rules[0].comment.as_deref()), ("hostports", 7, Some("krs-pm:n:c:eth0")));
        let seen = DnatSeen::from_expr(&rules[0].expr).unwrap();
        assert_eq!(seen, DnatSeen::from_forward(&fwd(Some("10.0.0.1"), "10.22.0.5", Protocol::Tcp)));
        assert_eq!(deletes(rules.iter()), "delete rule inet krs-cni hostports handle 7\n");
    }

    #[test]
    fn gc_staleness() {
        let keep = Owner { network: "n".into(), container_id: "a".into(), ifname: "eth0".into() };
        assert!(!is_stale("krs-pm:n:a:eth0", "n", std::slice::from_ref(&keep)));
        assert!(!is_stale("krs-masq:n:a:eth0", "n", std::slice::from_ref(&keep)));
        assert!(is_stale("krs-pm:n:b:eth0", "n", std::slice::from_ref(&keep)));
        assert!(!is_stale("krs-pm:other:b:eth0", "n", &[keep]));
    }
}
