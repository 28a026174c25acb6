//! One sample of a cgroup v2 directory: cpu time, memory, process count. A value whose
//! file is absent (its controller is not enabled for the cgroup, as on a hybrid host where
//! v2 has neither cpu nor memory) stays `None`, so CRI reports it unset rather than zero.

use std::collections::BTreeMap;
use std::path::Path;


/// Memory figures as the kubelet wants them, from memory.current and memory.stat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemorySample {
    pub usage: u64,
    /// Usage less what the kernel can reclaim first (inactive file pages), as cAdvisor and
    /// containerd compute it; what the kubelet evicts on.
    pub working_set: u64,
    /// Anonymous memory (memory.stat `anon`).
    pub rss: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupSample {
    /// Nanoseconds since the epoch when it was read.
    pub at_ns: i64,
    /// Total cpu time in nanoseconds (cpu.stat `usage_usec`, which cgroup v2 keeps even
    /// without the cpu controller).
    pub cpu_ns: Option<u64>,
    pub memory: Option<MemorySample>,
    /// memory.swap.current.
    pub swap: Option<u64>,
    /// pids.current, else the processes in cgroup.procs.
    pub processes: Option<u64>,
}

/// `key value` lines (cpu.stat, memory.stat) to a map; other lines are skipped.
pub fn parse_flat_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.parse().ok()?))
        })
        .collect()
}

/// `usage - inactive_file`, never below zero.
pub fn working_set(usage: u64, stat: &BTreeMap<String, u64>) -> u64 {
    usage.saturating_sub(stat.get("inactive_file").copied().unwrap_or(0))
}

/// Builds a sample from file contents (`read` gives a file's text, `None` when absent).
pub fn sample(read: &dyn Fn(&str) -> Option<String>, at_ns: i64) -> CgroupSample {
    let number = |f: &str| read(f).and_then(|t| t.trim().parse::<u64>().ok());
    let cpu_ns = read("cpu.stat").and_then(|t| parse_flat_keyed(&t).get("usage_usec").copied()).map(|us| us * 1000);
    let memory = number("memory.current").map(|usage| {
        let stat = read("memory.stat").map(|t| parse_flat_keyed(&t)).unwrap_or_default();
        let get = |k: &str| stat.get(k).copied().unwrap_or(0);
        MemorySample {
            usage,
            working_set: working_set(usage, &stat),
            rss: get("anon"),
            page_faults: get("pgfault"),
            major_page_faults: get("pgmajfault"),
        }
    });
    let processes =
        number("pids.current").or_else(|| read("cgroup.procs").map(|t| t.lines().filter(|l| !l.trim().is_empty()).count() as u64));
    CgroupSample { at_ns, cpu_ns, memory, swap: number("memory.swap.current"), processes }
}

/// Reads a cgroup directory; `None` if it does not exist (the container is gone).
pub fn read_dir(dir: &Path, at_ns: i64) -> Option<CgroupSample> {
    if !dir.is_dir() {
        return None;
    }
    Some(sample(&|f| std::fs::read_to_string(dir.join(f)).ok(), at_ns))
}

/// Cpu use in nanoseconds of cpu per second (1e9 = one core busy) between two samples;
/// `None` without an earlier sample, or if time did not advance or the counter went back
/// (a new cgroup under the same name).
pub fn nano_cores(previous: Option<(i64, u64)>, now: (i64, u64)) -> Option<u64> {
    let (then_ns, then_cpu) = previous?;
    let elapsed = u64::try_from(now.0 - then_ns).ok().filter(|e| *e > 0)?;
    let used = now.1.checked_sub(then_cpu)?;
    Some((u128::from(used) * 1_000_000_000 / u128::from(elapsed)) as u64)
}

/// The sum of samples (a pod's containers); a figure is present if any part has it.
pub fn sum(samples: &[CgroupSample], at_ns: i64) -> CgroupSample {
    fn add(a: Option<u64>, b: Option<u64>) -> Option<u64> {
        match (a, b) {
            (Some(x), Some(y)) => Some(x + y),
            (x, y) => x.or(y),
        }
    }
    let mut total = CgroupSample { at_ns, ..Default::default() };
    for s in samples {
        total.cpu_ns = add(total.cpu_ns, s.cpu_ns);
        total.swap = add(total.swap, s.swap);
        total.processes = add(total.processes, s.processes);
        total.memory = match (total.memory, s.memory) {
            (Some(a), Some(b)) => Some(MemorySample {
                usage: a.usage + b.usage,
                working_set: a.working_set + b.working_set,
                rss: a.rss + b.rss,
                page_faults: a.page_faults + b.page_faults,
                major_page_faults: a.major_page_faults + b.major_page_faults,
            }),
            (a, b) => a.or(b),
        };
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |f| map.get(f).cloned()
    }

    #[test]
    fn working_set_is_usage_less_inactive_file() {
        let read = files(&[
            ("cpu.stat", "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n"),
            ("memory.current", "1000000\n"),
            ("memory.stat", "anon 300000\nfile 600000\ninactive_file 400000\npgfault 12\npgmajfault 3\n"),
            ("pids.current", "4\n"),
        ]);
        let s = sample(&read, 7);
        assert_eq!(s.cpu_ns, Some(1_500_000));
        assert_eq!(s.memory, Some(MemorySample { usage: 1_000_000, working_set: 600_000, rss: 300_000, page_faults: 12, major_page_faults: 3 }));
        assert_eq!((s.processes, s.swap), (Some(4), None));
        let stat = BTreeMap::from([("inactive_file".to_string(), 9u64)]);
        assert_eq!(working_set(5, &stat), 0);
    }

    #[test]
    fn missing_controllers_leave_fields_unset() {
        // A hybrid host: cpu.stat and cgroup.procs only.
        let s = sample(&files(&[("cpu.stat", "usage_usec 2\n"), ("cgroup.procs", "10\n11\n")]), 0);
        assert_eq!((s.cpu_ns, s.memory, s.processes), (Some(2000), None, Some(2)));
    }

    #[test]
    fn nano_cores_from_two_samples() {
        // Half a second of cpu in one second: half a core.
        assert_eq!(nano_cores(Some((1_000_000_000, 0)), (2_000_000_000, 500_000_000)), Some(500_000_000));
        // Two cores busy for 100 ms.
        assert_eq!(nano_cores(Some((0, 1_000)), (100_000_000, 200_001_000)), Some(2_000_000_000));
        assert_eq!(nano_cores(None, (1, 1)), None);
        assert_eq!(nano_cores(Some((5, 0)), (5, 10)), None);
        assert_eq!(nano_cores(Some((0, 10)), (5, 1)), None);
    }

    #[test]
    fn sums_keep_what_any_part_has() {
        let a = CgroupSample { cpu_ns: Some(10), processes: Some(1), ..Default::default() };
        let b = CgroupSample {
            cpu_ns: Some(5),
            memory: Some(MemorySample { usage: 3, working_set: 2, ..Default::default() }),
            ..Default::default()
        };
        let s = sum(&[a, b], 9);
        assert_eq!((s.at_ns, s.cpu_ns, s.processes, s.swap), (9, Some(15), Some(1), None));
        assert_eq!(s.memory.map(|m| (m.usage, m.working_set)), Some((3, 2)));
    }
}
