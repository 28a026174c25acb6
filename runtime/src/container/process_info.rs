//! What `/proc/<pid>/stat` tells about a process: whether it still runs, and when it started
//! (so a recycled pid is never mistaken for the container's process).

use std::fs;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessInfo {
    /// The state letter: R, S, D, Z, T, ...
    pub state: char,
    /// Start time in clock ticks after boot (field 22).
    pub start_time: u64,
}

impl ProcessInfo {
    pub fn read(pid: i32) -> Option<ProcessInfo> {
        parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    pub fn is_running(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

pub fn process_start_time(pid: i32) -> Option<u64> {
    ProcessInfo::read(pid).map(|i| i.start_time)
}

/// Parse `/proc/<pid>/stat`. The command name (field 2) may hold spaces and parentheses, so
/// the fields after it are found from the last `)`.
fn parse_stat(text: &str) -> Option<ProcessInfo> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); field 22 is index 19 here.
    let state = fields.first()?.chars().next()?;
    let start_time = fields.get(19)?.parse().ok()?;
    Some(ProcessInfo { state, start_time })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_spaces_and_parens() {
        let stat = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 100 18446744073709551615";
        let info = parse_stat(stat).unwrap();
        assert_eq!(info.state, 'S');
        assert_eq!(info.start_time, 98765);
        assert!(info.is_running());
        let zombie = parse_stat(&stat.replace(") S ", ") Z ")).unwrap();
        assert!(!zombie.is_running());
    }

    #[test]
    fn reads_our_own_process() {
        let me = ProcessInfo::read(std::process::id() as i32).unwrap();
        assert!(me.is_running());
        assert!(me.start_time > 0);
    }
}
