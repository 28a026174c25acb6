//! A cgroup's usage and limits, shaped as runc's `events --stats` prints them
//! (`types/events.go`: cpu, memory, pids, blkio, hugetlb). Each part comes from files that
//! only exist when its controller is enabled; a part whose files are absent is left out.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<Pids>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blkio: Option<Blkio>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub hugetlb: BTreeMap<String, Hugetlb>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Cpu {
    pub usage: CpuUsage,
    /// Only with the cpu controller (cpu.stat's nr_periods and friends).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttling: Option<Throttling>,
}

/// Nanoseconds, as runc reports them (cpu.stat counts microseconds).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CpuUsage {
    pub total: u64,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Throttling {
    pub periods: u64,
    pub throttled_periods: u64,
    /// Nanoseconds.
    pub throttled_time: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MemoryEntry {
    /// `max` reads as u64::MAX, as runc reports it.
    pub limit: u64,
    pub usage: u64,
    /// memory.peak, where the kernel has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
    /// memory.events' `max`: how often usage hit the limit (v1's failcnt).
    pub failcnt: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Memory {
    /// memory.stat's `file`.
    pub cache: u64,
    pub usage: MemoryEntry,
    /// Memory plus swap, as runc reports it for cgroup v1 compatibility.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swap: Option<MemoryEntry>,
    /// memory.stat as it is.
    pub raw: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Pids {
    pub current: u64,
    /// pids.max; `max` reads as 0, as runc reports no limit.
    pub limit: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Blkio {
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    pub op: String,
    pub value: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Hugetlb {
    pub usage: u64,
    pub max: u64,
    pub failcnt: u64,
}

/// `key value` lines (cpu.stat, memory.stat, memory.events) to a map; other lines are skipped.
pub fn parse_flat_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (k, v) = (it.next()?, it.next()?);
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// A single-value file: a number, or `max` as `max_value`.
fn parse_value(text: &str, max_value: u64) -> Option<u64> {
    match text.trim() {
        "max" => Some(max_value),
        v => v.parse().ok(),
    }
}

/// io.stat (`8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0`) as runc maps it onto the
/// v1 tables: bytes and operations, Read and Write.
pub fn parse_io_stat(text: &str) -> Blkio {
    let mut out = Blkio::default();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let Some((major, minor)) = it.next().and_then(|d| d.split_once(':')) else { continue };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else { continue };
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else { continue };
            let Ok(value) = v.parse() else { continue };
            let (table, op) = match k {
                "rbytes" => (&mut out.io_service_bytes_recursive, "Read"),
                "wbytes" => (&mut out.io_service_bytes_recursive, "Write"),
                "rios" => (&mut out.io_serviced_recursive, "Read"),
                "wios" => (&mut out.io_serviced_recursive, "Write"),
                _ => continue,
            };
            table.push(BlkioEntry { major, minor, op: op.into(), value });
        }
    }
    out
}

impl Stats {
    /// Read a cgroup directory's statistics.
    pub fn read_dir(dir: &Path) -> Stats {
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
        let mut sizes: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                Some(name.strip_prefix("hugetlb.")?.strip_suffix(".current")?.to_string())
            })
            .filter(|s| !s.contains('.'))
            .collect();
        sizes.sort();
        Stats::collect(&read, &sizes)
    }

    /// Build the statistics from file contents (`read` gives a file's text, `None` when it
    /// does not exist) and the hugetlb page sizes the directory has files for.
    pub fn collect(read: &dyn Fn(&str) -> Option<String>, hugetlb_sizes: &[String]) -> Stats {
        let mut s = Stats::default();
        if let Some(text) = read("cpu.stat") {
            let m = parse_flat_keyed(&text);
            let get = |k: &str| m.get(k).copied().unwrap_or(0);
            s.cpu = Some(Cpu {
                usage: CpuUsage { total: get("usage_usec") * 1000, kernel: get("system_usec") * 1000, user: get("user_usec") * 1000 },
                throttling: m.contains_key("nr_periods").then(|| Throttling {
                    periods: get("nr_periods"),
                    throttled_periods: get("nr_throttled"),
                    throttled_time: get("throttled_usec") * 1000,
                }),
            });
        }
        if let (Some(current), Some(max)) = (read("memory.current"), read("memory.max")) {
            let raw = read("memory.stat").map(|t| parse_flat_keyed(&t)).unwrap_or_default();
            let events = read("memory.events").map(|t| parse_flat_keyed(&t)).unwrap_or_default();
            let usage = MemoryEntry {
                limit: parse_value(&max, u64::MAX).unwrap_or(0),
                usage: parse_value(&current, 0).unwrap_or(0),
                max: read("memory.peak").and_then(|t| parse_value(&t, 0)),
                failcnt: events.get("max").copied().unwrap_or(0),
            };
            let swap = match (read("memory.swap.current"), read("memory.swap.max")) {
                (Some(c), Some(m)) => {
                    let limit = parse_value(&m, u64::MAX).unwrap_or(0);
                    Some(MemoryEntry {
                        usage: parse_value(&c, 0).unwrap_or(0) + usage.usage,
                        limit: if limit == u64::MAX || usage.limit == u64::MAX { u64::MAX } else { limit + usage.limit },
                        max: None,
                        failcnt: 0,
                    })
                }
                _ => None,
            };
            s.memory = Some(Memory { cache: raw.get("file").copied().unwrap_or(0), usage, swap, raw });
        }
        if let Some(current) = read("pids.current") {
            s.pids = Some(Pids {
                current: parse_value(&current, 0).unwrap_or(0),
                limit: read("pids.max").and_then(|t| parse_value(&t, 0)).unwrap_or(0),
            });
        }
        if let Some(text) = read("io.stat") {
            s.blkio = Some(parse_io_stat(&text));
        }
        for size in hugetlb_sizes {
            let Some(usage) = read(&format!("hugetlb.{size}.current")) else { continue };
            let events = read(&format!("hugetlb.{size}.events")).map(|t| parse_flat_keyed(&t)).unwrap_or_default();
            s.hugetlb.insert(
                size.clone(),
                Hugetlb {
                    usage: parse_value(&usage, 0).unwrap_or(0),
                    max: read(&format!("hugetlb.{size}.max")).and_then(|t| parse_value(&t, u64::MAX)).unwrap_or(0),
                    failcnt: events.get("max").copied().unwrap_or(0),
                },
            );
        }
        s
    }
}

/// memory.events' `oom_kill` count; `None` without the memory controller.
pub fn oom_kills(dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join("memory.events")).ok()?;
    parse_flat_keyed(&text).get("oom_kill").copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn collect(files: &[(&str, &str)], sizes: &[&str]) -> Stats {
        let map: HashMap<String, String> = files.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let sizes: Vec<String> = sizes.iter().map(|s| s.to_string()).collect();
        Stats::collect(&|f| map.get(f).cloned(), &sizes)
    }

    #[test]
    fn only_cpu_stat_on_a_cgroup_without_controllers() {
        // What a cgroup on the hybrid host has: cpu.stat is a core file there.
        let s = collect(&[("cpu.stat", "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n")], &[]);
        assert_eq!(s.cpu, Some(Cpu { usage: CpuUsage { total: 1_500_000, kernel: 500_000, user: 1_000_000 }, throttling: None }));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json, serde_json::json!({"cpu": {"usage": {"total": 1500000, "kernel": 500000, "user": 1000000}}}));
    }

    #[test]
    fn every_controller() {
        let s = collect(
            &[
                ("cpu.stat", "usage_usec 10\nuser_usec 6\nsystem_usec 4\nnr_periods 7\nnr_throttled 3\nthrottled_usec 250\n"),
                ("memory.current", "4096\n"),
                ("memory.max", "max\n"),
                ("memory.peak", "8192\n"),
                ("memory.stat", "anon 1024\nfile 2048\n"),
                ("memory.events", "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n"),
                ("memory.swap.current", "100\n"),
                ("memory.swap.max", "1000\n"),
                ("pids.current", "3\n"),
                ("pids.max", "max\n"),
                ("io.stat", "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n"),
                ("hugetlb.2MB.current", "0\n"),
                ("hugetlb.2MB.max", "4194304\n"),
                ("hugetlb.2MB.events", "max 2\n"),
            ],
            &["2MB", "1GB"],
        );
        assert_eq!(s.cpu.as_ref().unwrap().throttling, Some(Throttling { periods: 7, throttled_periods: 3, throttled_time: 250_000 }));
        let m = s.memory.as_ref().unwrap();
        assert_eq!(m.usage, MemoryEntry { limit: u64::MAX, usage: 4096, max: Some(8192), failcnt: 5 });
        assert_eq!(m.swap, Some(MemoryEntry { limit: u64::MAX, usage: 4196, max: None, failcnt: 0 }));
        assert_eq!(m.cache, 2048);
        assert_eq!(m.raw.get("anon"), Some(&1024));
        assert_eq!(s.pids, Some(Pids { current: 3, limit: 0 }));
        let b = s.blkio.as_ref().unwrap();
        assert_eq!(b.io_service_bytes_recursive, vec![
            BlkioEntry { major: 8, minor: 0, op: "Read".into(), value: 4096 },
            BlkioEntry { major: 8, minor: 0, op: "Write".into(), value: 8192 },
        ]);
        assert_eq!(b.io_serviced_recursive.len(), 2);
        assert_eq!(s.hugetlb.len(), 1);
        assert_eq!(s.hugetlb["2MB"], Hugetlb { usage: 0, max: 4194304, failcnt: 2 });
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["cpu"]["throttling"]["throttledPeriods"], 3);
        assert_eq!(json["blkio"]["ioServiceBytesRecursive"][0]["op"], "Read");
    }

    #[test]
    fn limited_swap_adds_the_memory_limit() {
        let s = collect(&[("memory.current", "10"), ("memory.max", "100"), ("memory.swap.current", "5"), ("memory.swap.max", "50")], &[]);
        assert_eq!(s.memory.unwrap().swap, Some(MemoryEntry { limit: 150, usage: 15, max: None, failcnt: 0 }));
    }

    #[test]
    fn flat_keyed_skips_junk() {
        let m = parse_flat_keyed("a 1\nbad\nb x\nc 3 extra\n");
        assert_eq!(m.into_iter().collect::<Vec<_>>(), vec![("a".to_string(), 1), ("c".to_string(), 3)]);
    }
}
