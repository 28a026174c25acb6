//! One scheduling decision: filter the nodes (starting where the last pod stopped, and
//! stopping once enough feasible nodes are found, as upstream does on big clusters), score
//! the feasible ones, pick the best (ties at random) and assume the pod there.

use std::sync::Arc;

use super::cache::{Cache, NodeInfo, PodInfo};
use super::filters::{self, Rejection};
use super::fit_error::FitError;
use super::score;
use super::topology::Topology;

/// A small xorshift generator: tie-breaking needs spread, not cryptographic quality.
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Rng {
        let mut seed = [0u8; 8];
        let _ = getrandom::fill(&mut seed);
        Rng(u64::from_le_bytes(seed) | 1)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

impl Default for Rng {
    fn default() -> Self {
        Rng::new()
    }
}

/// How many feasible nodes are enough: all below 100 nodes, otherwise a share that shrinks
/// as the cluster grows (50% minus 1% per 125 nodes, at least 5%) and at least 100.
pub fn feasible_nodes_to_find(nodes: usize) -> usize {
    if nodes < 100 {
        return nodes;
    }
    let percent = (50 - nodes as i64 / 125).max(5) as usize;
    (nodes * percent / 100).max(100)
}

#[derive(Default)]
pub struct Algorithm {
    /// The node name the next search starts at, so pods spread over the whole cluster.
    next_start: String,
    rng: Rng,
}

impl Algorithm {
    /// Choose a node for `pod` and assume it there.
    pub fn schedule(&mut self, cache: &mut Cache, pod: Arc<PodInfo>) -> Result<String, FitError> {
        let total = cache.node_count();
        if total == 0 {
            return Err(FitError::NoNodes);
        }
        let topology = Topology::needed(cache, &pod).then(|| Topology::compute(cache, &pod));
        let want = feasible_nodes_to_find(total);
        let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(want.min(total));
        let mut rejections: Vec<Rejection> = vec![];
        let mut last_examined: Option<&str> = None;
        let start = self.next_start.clone();
        let ordered = cache.nodes.range(start.clone()..).chain(cache.nodes.range(..start));
        for (name, info) in ordered {
            if info.node.is_none() {
                continue;
            }
            last_examined = Some(name);
            match filters::run(&pod, info, topology.as_ref()) {
                Ok(()) => {
                    feasible.push(info);
                    if feasible.len() >= want {
                        break;
                    }
                }
                Err(r) => rejections.push(r),
            }
        }
        // Continue after the last node examined next time.
        if let Some(last) = last_examined {
            self.next_start = format!("{last}\0");
        }
        if feasible.is_empty() {
            return Err(FitError::Unfit { nodes: total, rejections });
        }
        let scores = score::score(&pod, &feasible, topology.as_ref());
        let best = *scores.iter().max().expect("feasible is not empty");
        let mut chosen = 0;
        let mut ties = 0u64;
        for (i, s) in scores.iter().enumerate() {
            if *s == best {
                ties += 1;
                if self.rng.below(ties) == 0 {
                    chosen = i;
                }
            }
        }
        let node = feasible[chosen].name().to_string();
        cache.place(pod, &node, true);
        Ok(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cache(nodes: usize, cpu: &str) -> Cache {
        let mut c = Cache::default();
        for i in 0..nodes {
            c.set_node(
                serde_json::from_value(json!({"metadata": {"name": format!("n{i:04}")}, "status": {"allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "110"}, "conditions": [{"type": "Ready", "status": "True"}]}})).unwrap(),
            );
        }
        c
    }

    fn pod(name: &str, cpu: &str) -> Arc<PodInfo> {
        Arc::new(PodInfo::new(Arc::new(serde_json::from_value(json!({"metadata": {"name": name, "namespace": "d"}, "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}})).unwrap())))
    }

    #[test]
    fn sampling_share() {
        assert_eq!(feasible_nodes_to_find(50), 50);
        assert_eq!(feasible_nodes_to_find(150), 100, "at least 100");
        assert_eq!(feasible_nodes_to_find(1000), 420);
        assert_eq!(feasible_nodes_to_find(5000), 500);
        assert_eq!(feasible_nodes_to_find(100_000), 5000);
    }

    #[test]
    fn assumed_pods_take_room_and_spread() {
        let mut c = cache(3, "1");
        let mut a = Algorithm::default();
        let mut used = std::collections::HashSet::new();
        for i in 0..3 {
            used.insert(a.schedule(&mut c, pod(&format!("p{i}"), "600m")).unwrap());
        }
        assert_eq!(used.len(), 3, "each 600m pod needs a node of its own");
        match a.schedule(&mut c, pod("p3", "600m")) {
            Err(FitError::Unfit { nodes: 3, rejections }) => assert_eq!(rejections.len(), 3),
            other => panic!("{other:?}"),
        }
        c.forget("d/p0");
        assert!(a.schedule(&mut c, pod("p3", "600m")).is_ok(), "a forgotten assumption frees its room");
    }

    #[test]
    fn no_nodes() {
        assert_eq!(Algorithm::default().schedule(&mut Cache::default(), pod("p", "1")), Err(FitError::NoNodes));
    }
}
