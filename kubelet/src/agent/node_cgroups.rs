//! Which cgroup v2 controllers the node's cgroup root offers, and CRI configs trimmed to
//! them. A pod's CPU and memory settings need the `cpu` and `memory` controllers; on a host
//! whose cgroup v2 hierarchy lacks them (a hybrid host with cgroup v1 mounted for them, or a
//! container without delegation) the runtime would refuse every container that has them.
//! The agent then runs pods without those limits and says so once at start, as k3s and
//! kind warn, rather than failing every pod.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cri_api::runtime::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod};

use super::pods::cri_config::{ConfigError, ContainerContext, SandboxContext};
use super::pods::deps::{CriConfigs, KubeletConfigs};

/// The controllers of the cgroup at `cgroup_root` (or its nearest existing ancestor) in the
/// v2 hierarchy; `None` without a v2 hierarchy.
pub fn detect(cgroup_root: &str) -> Option<BTreeSet<String>> {
    let hierarchy = runtime_rs::cgroups::find_hierarchy().ok()?;
    Some(controllers_at(&hierarchy, cgroup_root))
}

fn controllers_at(hierarchy: &Path, cgroup_root: &str) -> BTreeSet<String> {
    let mut dir: PathBuf = hierarchy.join(cgroup_root.trim_start_matches('/'));
    loop {
        if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.controllers")) {
            return text.split_whitespace().map(str::to_string).collect();
        }
        if dir == hierarchy || !dir.pop() {
            return BTreeSet::new();
        }
    }
}

/// The controllers the agent sets values for that `available` lacks.
pub fn missing(available: &BTreeSet<String>) -> Vec<&'static str> {
    ["cpu", "memory", "cpuset", "hugetlb"].into_iter().filter(|c| !available.contains(*c)).collect()
}

/// Clear what needs a missing controller.
pub fn trim(resources: &mut cri::LinuxContainerResources, available: &BTreeSet<String>) {
    if !available.contains("cpu") {
        resources.cpu_shares = 0;
        resources.cpu_quota = 0;
        resources.cpu_period = 0;
    }
    if !available.contains("memory") {
        resources.memory_limit_in_bytes = 0;
        resources.memory_swap_limit_in_bytes = 0;
    }
    if !available.contains("cpuset") {
        resources.cpuset_cpus.clear();
        resources.cpuset_mems.clear();
    }
    if !available.contains("hugetlb") {
        resources.hugepage_limits.clear();
    }
    resources.unified.retain(|key, _| key.split('.').next().is_some_and(|c| available.contains(c)));
}

/// The kubelet's CRI configs with resources trimmed to the node's controllers.
pub struct TrimmedConfigs {
    pub available: BTreeSet<String>,
}

impl CriConfigs for TrimmedConfigs {
    fn sandbox(&self, pod: &Pod, ctx: &SandboxContext) -> Result<cri::PodSandboxConfig, ConfigError> {
        let mut config = KubeletConfigs.sandbox(pod, ctx)?;
        if let Some(linux) = config.linux.as_mut() {
            for r in [linux.resources.as_mut(), linux.overhead.as_mut()].into_iter().flatten() {
                trim(r, &self.available);
            }
        }
        Ok(config)
    }

    fn container(&self, pod: &Pod, container: &Container, ctx: &ContainerContext) -> Result<cri::ContainerConfig, ConfigError> {
        let mut config = KubeletConfigs.container(pod, container, ctx)?;
        if let Some(r) = config.linux.as_mut().and_then(|l| l.resources.as_mut()) {
            trim(r, &self.available);
        }
        Ok(config)
    }

    fn hash(&self, container: &Container) -> String {
        KubeletConfigs.hash(container)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_nearest_existing_cgroup_says_what_is_offered() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        std::fs::create_dir_all(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a/cgroup.controllers"), "hugetlb\n").unwrap();
        assert_eq!(controllers_at(dir.path(), "/a/kubepods/burstable"), set(&["hugetlb"]));
        assert_eq!(controllers_at(dir.path(), "/b/kubepods"), set(&["cpu", "memory", "pids"]));
        assert_eq!(missing(&set(&["hugetlb"])), ["cpu", "memory", "cpuset"]);
    }

    #[test]
    fn values_for_missing_controllers_are_cleared_and_the_rest_kept() {
        let mut r = cri::LinuxContainerResources {
            cpu_shares: 512,
            cpu_quota: 50_000,
            cpu_period: 100_000,
            memory_limit_in_bytes: 1 << 20,
            oom_score_adj: 1000,
            unified: [("memory.high".to_string(), "1M".to_string()), ("pids.max".to_string(), "10".to_string())].into(),
            ..Default::default()
        };
        trim(&mut r, &set(&["memory", "pids"]));
        assert_eq!((r.cpu_shares, r.cpu_quota, r.cpu_period), (0, 0, 0));
        assert_eq!(r.memory_limit_in_bytes, 1 << 20);
        assert_eq!(r.oom_score_adj, 1000);
        assert_eq!(r.unified.len(), 2);
        trim(&mut r, &set(&[]));
        assert_eq!(r.memory_limit_in_bytes, 0);
        assert!(r.unified.is_empty());
    }
}
