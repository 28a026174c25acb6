//! Resident memory of a process, from /proc/PID/status: VmRSS (now) and VmHWM (the peak).

use std::path::PathBuf;

#[derive(thiserror::Error, Debug)]
pub enum RssError {
    #[error("reading {path}: {source} (has the process exited?)")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} has no {field} line")]
    Missing { path: PathBuf, field: &'static str },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Memory {
    pub rss_kib: u64,
    pub peak_kib: u64,
}

pub fn read(pid: u32) -> Result<Memory, RssError> {
    let path = PathBuf::from(format!("/proc/{pid}/status"));
    let text = std::fs::read_to_string(&path).map_err(|source| RssError::Read { path: path.clone(), source })?;
    parse(&text).map_err(|field| RssError::Missing { path, field })
}

fn parse(status: &str) -> Result<Memory, &'static str> {
    let field = |name: &'static str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .ok_or(name)
    };
    Ok(Memory { rss_kib: field("VmRSS")?, peak_kib: field("VmHWM")? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_status() {
        let status = "Name:\tapiserver-lite\nVmPeak:\t  900000 kB\nVmHWM:\t   41234 kB\nVmRSS:\t   30001 kB\nThreads:\t4\n";
        assert_eq!(parse(status), Ok(Memory { rss_kib: 30001, peak_kib: 41234 }));
        assert_eq!(parse("Name:\tx\nVmHWM:\t1 kB\n"), Err("VmRSS"));
    }

    #[test]
    fn reads_our_own_process() {
        let m = read(std::process::id()).unwrap();
        assert!(m.rss_kib > 0 && m.peak_kib >= m.rss_kib, "{m:?}");
    }
}
