//! The node's masquerade for its pods: traffic from this node's pod CIDR to anywhere outside
//! the cluster's pod networks leaves with the node's address; traffic to pods on other nodes
//! keeps the pod's own address (the Kubernetes network model: pods reach pods without NAT).
//! The bridge plugin's own `ipMasq` masquerades everything leaving the node's subnet, so
//! kubelet-rs writes its pod network with `ipMasq: false` and this rule in its place.
//!
//! nftables: the table `ip krs-node`, replaced whole in one transaction; iptables: the chain
//! `KRS-NODE-MASQ` in `nat`, jumped to from POSTROUTING. Both stay when kubelet-rs stops (pods
//! keep their way out) and are rewritten at the next start; while it runs, [`keep`] checks
//! them every so often and writes them again if someone removed them (a firewall reload
//! that flushed the ruleset, say), as the proxy does with its own table.

use ipnet::Ipv4Net;

pub const NFT_TABLE: &str = "krs-node";
pub const IPTABLES_CHAIN: &str = "KRS-NODE-MASQ";
const COMMENT: &str = "kubelet-rs: pods leaving the cluster network";

#[derive(Debug, thiserror::Error)]
pub enum MasqueradeError {
    #[error("cannot run `{program}`: {source}")]
    Spawn { program: &'static str, source: std::io::Error },
    #[error("`{program}` refused the node's masquerade rules: {stderr}")]
    Refused { program: &'static str, stderr: String },
}

/// Which packet filter carries the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Nftables,
    Iptables,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasqueradeConfig {
    /// This node's pod CIDR (the sources masqueraded).
    pub pod_cidr: Ipv4Net,
    /// The cluster's pod networks (destinations left alone).
    pub cluster_cidrs: Vec<Ipv4Net>,
}

/// The nftables transaction: the table created (so the delete never fails), deleted and
/// written anew, in one `nft -f`.
pub fn nft_script(config: &MasqueradeConfig) -> String {
    let keep: Vec<String> = config.cluster_cidrs.iter().map(|c| c.to_string()).chain(["224.0.0.0/4".to_string()]).collect();
    format!(
        "table ip {t}\ndelete table ip {t}\ntable ip {t} {{\n\tchain postrouting {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\tip saddr {src} ip daddr != {{ {keep} }} masquerade comment \"{comment}\"\n\t}}\n}}\n",
        t = NFT_TABLE,
        comment = COMMENT,
        src = config.pod_cidr,
        keep = keep.join(", ")
    )
}

/// The iptables-restore input (with --noflush: declaring the chain flushes only it).
pub fn iptables_script(config: &MasqueradeConfig) -> String {
    let mut s = format!("*nat\n:{IPTABLES_CHAIN} - [0:0]\n-A {IPTABLES_CHAIN} -d 224.0.0.0/4 -j RETURN\n");
    for cidr in &config.cluster_cidrs {
        s.push_str(&format!("-A {IPTABLES_CHAIN} -d {cidr} -j RETURN\n"));
    }
    s.push_str(&format!("-A {IPTABLES_CHAIN} -s {} -m comment --comment \"{COMMENT}\" -j MASQUERADE\nCOMMIT\n", config.pod_cidr));
    s
}

/// Write the rule (in `netns` when given).
pub fn apply(filter: Filter, config: &MasqueradeConfig, netns: Option<&str>) -> Result<(), MasqueradeError> {
    let run = |program: &'static str, args: &[&str], stdin: Option<&str>| {
        let out = crate::tool::run(netns, program, args, stdin).map_err(|source| MasqueradeError::Spawn { program, source })?;
        Ok::<_, MasqueradeError>(out)
    };
    let check = |program: &'static str, out: std::process::Output| {
        if out.status.success() { Ok(()) } else { Err(MasqueradeError::Refused { program, stderr: String::from_utf8_lossy(&out.stderr).trim().to_string() }) }
    };
    match filter {
        Filter::Nftables => check("nft", run("nft", &["-f", "-"], Some(&nft_script(config)))?),
        Filter::Iptables => {
            check("iptables-restore", run("iptables-restore", &["--noflush", "-w"], Some(&iptables_script(config)))?)?;
            let jump = ["-t", "nat", "-C", "POSTROUTING", "-j", IPTABLES_CHAIN, "-w"];
            if !run("iptables", &jump, None)?.status.success() {
                check("iptables", run("iptables", &["-t", "nat", "-A", "POSTROUTING", "-j", IPTABLES_CHAIN, "-w"], None)?)?;
            }
            Ok(())
        }
    }
}

/// Whether `nft list table ip krs-node` shows this node's rule.
pub fn nft_listing_has_rule(listing: &str, config: &MasqueradeConfig) -> bool {
    listing.lines().any(|l| l.contains(&format!("ip saddr {}", config.pod_cidr)) && l.contains("masquerade") && l.contains(COMMENT))
}

/// Whether the rule is in place as [`apply`] wrote it (the table, or the chain, its rule and
/// the jump to it, are there).
pub fn in_place(filter: Filter, config: &MasqueradeConfig, netns: Option<&str>) -> Result<bool, MasqueradeError> {
    let run = |program: &'static str, args: &[&str]| crate::tool::run(netns, program, args, None).map_err(|source| MasqueradeError::Spawn { program, source });
    match filter {
        Filter::Nftables => {
            let out = run("nft", &["list", "table", "ip", NFT_TABLE])?;
            Ok(out.status.success() && nft_listing_has_rule(&String::from_utf8_lossy(&out.stdout), config))
        }
        Filter::Iptables => {
            let source = config.pod_cidr.to_string();
            let rule = ["-t", "nat", "-C", IPTABLES_CHAIN, "-s", &source, "-m", "comment", "--comment", COMMENT, "-j", "MASQUERADE", "-w"];
            let jump = ["-t", "nat", "-C", "POSTROUTING", "-j", IPTABLES_CHAIN, "-w"];
            Ok(run("iptables", &rule)?.status.success() && run("iptables", &jump)?.status.success())
        }
    }
}

/// Check the rule every `every` and write it again when it is gone; runs until dropped.
/// Failures are logged (the next round tries again).
pub async fn keep(filter: Filter, config: MasqueradeConfig, netns: Option<String>, every: std::time::Duration) {
    loop {
        tokio::time::sleep(every).await;
        let (config, netns) = (config.clone(), netns.clone());
        let round = tokio::task::spawn_blocking(move || {
            if in_place(filter, &config, netns.as_deref())? {
                return Ok(false);
            }
            apply(filter, &config, netns.as_deref()).map(|()| true)
        })
        .await
        .expect("masquerade check");
        match round {
            Ok(true) => tracing::warn!(?filter, "the node's masquerade rule was gone (removed by someone else); written again"),
            Ok(false) => {}
            Err(e) => tracing::error!("the node's masquerade rule: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> MasqueradeConfig {
        MasqueradeConfig { pod_cidr: "10.244.1.0/24".parse().unwrap(), cluster_cidrs: vec!["10.244.0.0/16".parse().unwrap()] }
    }

    #[test]
    fn nft_masquerades_the_node_pods_leaving_the_cluster_network_only() {
        let s = nft_script(&config());
        assert!(s.starts_with("table ip krs-node\ndelete table ip krs-node\n"), "{s}");
        assert!(s.contains("type nat hook postrouting priority srcnat;"), "{s}");
        assert!(s.contains("ip saddr 10.244.1.0/24 ip daddr != { 10.244.0.0/16, 224.0.0.0/4 } masquerade"), "{s}");
    }

    #[test]
    fn the_listing_check_finds_the_rule_apply_writes_and_no_other() {
        let written = nft_script(&config());
        assert!(nft_listing_has_rule(&written, &config()));
        let other = MasqueradeConfig { pod_cidr: "10.244.2.0/24".parse().unwrap(), ..config() };
        assert!(!nft_listing_has_rule(&written, &other));
        assert!(!nft_listing_has_rule("table ip krs-node {\n\tchain postrouting {\n\t}\n}\n", &config()));
    }

    #[test]
    fn iptables_returns_for_cluster_and_multicast_before_masquerading() {
        let s = iptables_script(&config());
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "*nat");
        assert_eq!(lines[1], ":KRS-NODE-MASQ - [0:0]");
        assert_eq!(lines[2], "-A KRS-NODE-MASQ -d 224.0.0.0/4 -j RETURN");
        assert_eq!(lines[3], "-A KRS-NODE-MASQ -d 10.244.0.0/16 -j RETURN");
        assert!(lines[4].starts_with("-A KRS-NODE-MASQ -s 10.244.1.0/24 ") && lines[4].ends_with("-j MASQUERADE"), "{}", lines[4]);
        assert_eq!(lines[5], "COMMIT");
    }
}
