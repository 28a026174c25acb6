//! `linux.resources` from the CRI's `LinuxContainerResources`, as containerd maps them: a
//! zero leaves the value out (so nothing is written to a controller that may be missing,
//! like the cpu controller on a hybrid-cgroup host), a memory limit also forbids swap where
//! swap is accounted and the CRI sets no swap limit.

use cri_api::runtime::v1::{ContainerConfig, LinuxContainerResources};
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxHugepageLimitBuilder, LinuxMemoryBuilder, LinuxResources, LinuxResourcesBuilder,
};

use super::{SpecError, invalid};
use crate::cri::container::host::Host;

const F: &str = "linux.resources";

fn given(c: &ContainerConfig) -> LinuxContainerResources {
    c.linux.as_ref().and_then(|l| l.resources.clone()).unwrap_or_default()
}

fn non_negative(v: i64, field: &str) -> Result<u64, SpecError> {
    u64::try_from(v).map_err(|_| invalid(format!("{F}.{field}"), format!("{v} must not be negative")))
}

pub(super) fn resources(c: &ContainerConfig, host: &dyn Host) -> Result<LinuxResources, SpecError> {
    linux_resources(&given(c), host)
}

/// The OCI `linux.resources` (without device rules) for CRI resources: what a container's
/// spec gets, and what `UpdateContainerResources` hands to the runtime's `update`.
pub fn linux_resources(r: &LinuxContainerResources, host: &dyn Host) -> Result<LinuxResources, SpecError> {
    let mut out = LinuxResourcesBuilder::default();

    let mut cpu = LinuxCpuBuilder::default();
    let mut any_cpu = false;
    if r.cpu_shares != 0 {
        cpu = cpu.shares(non_negative(r.cpu_shares, "cpu_shares")?);
        any_cpu = true;
    }
    if r.cpu_quota != 0 {
        if r.cpu_quota < -1 {
            return Err(invalid(format!("{F}.cpu_quota"), format!("{} must be positive, or -1 for none", r.cpu_quota)));
        }
        cpu = cpu.quota(r.cpu_quota);
        any_cpu = true;
    }
    if r.cpu_period != 0 {
        cpu = cpu.period(non_negative(r.cpu_period, "cpu_period")?);
        any_cpu = true;
    }
    if !r.cpuset_cpus.is_empty() {
        check_cpuset(&r.cpuset_cpus, "cpuset_cpus")?;
        cpu = cpu.cpus(r.cpuset_cpus.clone());
        any_cpu = true;
    }
    if !r.cpuset_mems.is_empty() {
        check_cpuset(&r.cpuset_mems, "cpuset_mems")?;
        cpu = cpu.mems(r.cpuset_mems.clone());
        any_cpu = true;
    }
    if any_cpu {
        out = out.cpu(cpu.build()?);
    }

    if r.memory_limit_in_bytes != 0 || r.memory_swap_limit_in_bytes != 0 {
        let mut mem = LinuxMemoryBuilder::default();
        if r.memory_limit_in_bytes != 0 {
            non_negative(r.memory_limit_in_bytes, "memory_limit_in_bytes")?;
            mem = mem.limit(r.memory_limit_in_bytes);
        }
        if r.memory_swap_limit_in_bytes != 0 {
            if r.memory_swap_limit_in_bytes < -1 {
                return Err(invalid(format!("{F}.memory_swap_limit_in_bytes"), format!("{} must be positive, or -1 for none", r.memory_swap_limit_in_bytes)));
            }
            if r.memory_limit_in_bytes > 0 && r.memory_swap_limit_in_bytes > 0 && r.memory_swap_limit_in_bytes < r.memory_limit_in_bytes {
                return Err(invalid(
                    format!("{F}.memory_swap_limit_in_bytes"),
                    "is memory plus swap and must not be below memory_limit_in_bytes",
                ));
            }
            mem = mem.swap(r.memory_swap_limit_in_bytes);
        } else if host.swap_accounting() {
            mem = mem.swap(r.memory_limit_in_bytes);
        }
        out = out.memory(mem.build()?);
    }

    if !r.hugepage_limits.is_empty() {
        let mut limits = Vec::new();
        for (i, h) in r.hugepage_limits.iter().enumerate() {
            let field = format!("{F}.hugepage_limits[{i}]");
            let size = h.page_size.as_str();
            let digits = size.trim_end_matches(['K', 'M', 'G', 'T', 'P', 'B']);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || !size.ends_with('B') {
                return Err(invalid(format!("{field}.page_size"), format!("{size:?} is not a page size like 2MB or 1GB")));
            }
            let limit = i64::try_from(h.limit).map_err(|_| invalid(format!("{field}.limit"), format!("{} is too large", h.limit)))?;
            limits.push(LinuxHugepageLimitBuilder::default().page_size(size).limit(limit).build()?);
        }
        out = out.hugepage_limits(limits);
    }

    if !r.unified.is_empty() {
        for key in r.unified.keys() {
            if key.is_empty() || key.contains('/') || !key.contains('.') {
                return Err(invalid(format!("{F}.unified.{key}"), "is not a cgroup v2 file name"));
            }
        }
        out = out.unified(r.unified.clone());
    }
    Ok(out.build()?)
}

fn check_cpuset(s: &str, field: &str) -> Result<(), SpecError> {
    let ok = s.split(',').all(|part| {
        let mut ends = part.splitn(2, '-');
        ends.all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    });
    if ok { Ok(()) } else { Err(invalid(format!("{F}.{field}"), format!("{s:?} is not a list like 0-3,6"))) }
}

pub(super) fn oom_score_adj(c: &ContainerConfig) -> Result<Option<i32>, SpecError> {
    let v = given(c).oom_score_adj;
    if !(-1000..=1000).contains(&v) {
        return Err(invalid(format!("{F}.oom_score_adj"), format!("{v} is outside -1000..=1000")));
    }
    Ok(Some(v as i32))
}
