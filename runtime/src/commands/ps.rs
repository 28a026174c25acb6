//! `ps <id> [ps options]`: the container's processes, as ps(1) shows them, or their pids as JSON.

use std::process::Command;

use super::Error;
use crate::cgroups::CgroupManager;
use crate::cli::{ListFormat, Ps};
use crate::container::{Status, Store};

pub fn ps(store: &Store, args: &Ps) -> Result<(), Error> {
    let c = store.load(&args.id)?;
    let pids = match c.cgroup() {
        Some(cg) => cg.processes()?,
        None if c.status(&store.dir(&args.id)) != Status::Stopped => vec![c.pid],
        None => vec![],
    };
    if args.format == ListFormat::Json {
        println!("{}", serde_json::to_string(&pids).expect("pids serialize"));
        return Ok(());
    }
    let ps_args = if args.ps_args.is_empty() { vec!["-ef".to_string()] } else { args.ps_args.clone() };
    let out = Command::new("ps").args(&ps_args).output().map_err(Error::io("run ps"))?;
    if !out.status.success() {
        return Err(Error::Refused(format!("ps {}: {}", ps_args.join(" "), String::from_utf8_lossy(&out.stderr).trim())));
    }
    print!("{}", filter(&String::from_utf8_lossy(&out.stdout), &pids)?);
    Ok(())
}

/// Keep ps's header and the lines whose PID column is one of `pids`.
fn filter(output: &str, pids: &[i32]) -> Result<String, Error> {
    let mut lines = output.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| Error::Refused("ps output has no PID column; pass options that show it".into()))?;
    let mut out = format!("{header}\n");
    for line in lines {
        if line.split_whitespace().nth(col).and_then(|p| p.parse::<i32>().ok()).is_some_and(|p| pids.contains(&p)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_header_and_container_lines() {
        let out = "UID        PID  PPID  C STIME TTY          TIME CMD\n\
                   root         1     0  0 08:11 ?        00:00:01 /init\n\
                   root      2744     1  0 09:17 ?        00:00:00 sleep 30\n";
        let got = filter(out, &[2744]).unwrap();
        assert_eq!(got.lines().count(), 2);
        assert!(got.lines().nth(1).unwrap().ends_with("sleep 30"));
        assert!(filter("USER COMMAND\nroot x\n", &[1]).is_err());
    }
}
