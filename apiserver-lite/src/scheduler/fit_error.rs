//! Why a pod fits nowhere, worded as kube-scheduler words it (the FailedScheduling event
//! and the PodScheduled condition carry this text, and people search for it).

use std::collections::HashMap;

use super::filters::Rejection;

#[derive(Debug, Clone, PartialEq)]
pub enum FitError {
    NoNodes,
    /// The number of nodes and each rejected node's reasons.
    Unfit { nodes: usize, rejections: Vec<Rejection> },
}

/// "3 Insufficient cpu, 1 node(s) were unschedulable" sorted as strings, as upstream does.
fn histogram<'a>(reasons: impl Iterator<Item = &'a str>) -> String {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for r in reasons {
        *counts.entry(r).or_default() += 1;
    }
    let mut parts: Vec<String> = counts.into_iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    parts.join(", ")
}

impl std::fmt::Display for FitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FitError::NoNodes => write!(f, "no nodes available to schedule pods"),
            FitError::Unfit { nodes, rejections } => {
                let filters = histogram(rejections.iter().flat_map(|r| r.reasons.iter().map(String::as_str)));
                // No preemption is implemented: upstream's preemption pass, finding no
                // lower-priority victims, reports each node as one of these two.
                let preemption = histogram(rejections.iter().map(|r| if r.unresolvable { "Preemption is not helpful for scheduling" } else { "No preemption victims found for incoming pod" }));
                // Upstream appends the post-filter message with its own ". " separator,
                // which is why the real text ends with two periods.
                write!(f, "0/{nodes} nodes are available: {filters}. preemption: 0/{nodes} nodes are available: {preemption}..")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_wording() {
        let taint = Rejection { reasons: vec!["node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }".into()], unresolvable: true };
        let cpu = Rejection { reasons: vec!["Insufficient cpu".into()], unresolvable: false };
        let e = FitError::Unfit { nodes: 3, rejections: vec![cpu.clone(), taint, cpu] };
        assert_eq!(
            e.to_string(),
            "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod.."
        );
        let both = Rejection { reasons: vec!["Insufficient cpu".into(), "Insufficient memory".into()], unresolvable: false };
        assert_eq!(
            FitError::Unfit { nodes: 1, rejections: vec![both] }.to_string(),
            "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.."
        );
        assert_eq!(FitError::NoNodes.to_string(), "no nodes available to schedule pods");
    }
}
