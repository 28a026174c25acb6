//! `events <id>`: runc's event stream. `--stats` prints one statistics event and exits;
//! otherwise a statistics event every `--interval`, and an `oom` event whenever
//! memory.events' oom_kill count grows, until the container stops. One JSON object a line.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::json;

use super::Error;
use crate::cgroups::{oom_kills, CgroupManager, CgroupV2};
use crate::cli::Events;
use crate::container::{Status, Store};

/// How often the OOM counter is looked at between statistics.
const OOM_POLL: Duration = Duration::from_millis(100);

pub fn events(store: &Store, args: &Events) -> Result<(), Error> {
    let c = store.load(&args.id)?;
    if c.status(&store.dir(&args.id)) == Status::Stopped {
        return Err(Error::Refused(format!("container {} is not running", args.id)));
    }
    let cgroup = c.cgroup().ok_or_else(|| Error::Refused("container has no cgroup to report on".into()))?;
    if args.stats {
        return emit(&stats_event(&args.id, &cgroup)?);
    }
    let mut ooms = oom_kills(cgroup.path()).unwrap_or(0);
    let mut next_stats = Instant::now();
    loop {
        if let Some(n) = oom_kills(cgroup.path()) {
            if n > ooms {
                emit(&json!({"type": "oom", "id": args.id}))?;
            }
            ooms = n;
        }
        if !c.init_running() {
            return Ok(());
        }
        if Instant::now() >= next_stats {
            match stats_event(&args.id, &cgroup) {
                Ok(e) => emit(&e)?,
                // The container may go between the check above and the read.
                Err(_) if !c.init_running() => return Ok(()),
                Err(e) => return Err(e),
            }
            next_stats += args.interval;
        }
        std::thread::sleep(OOM_POLL.min(next_stats.saturating_duration_since(Instant::now())).max(Duration::from_millis(1)));
    }
}

fn stats_event(id: &str, cgroup: &CgroupV2) -> Result<serde_json::Value, Error> {
    let stats = cgroup.stats()?;
    Ok(json!({"type": "stats", "id": id, "data": stats}))
}

/// One event a line, flushed at once: whoever reads the stream acts on each as it comes.
fn emit(event: &serde_json::Value) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{event}").and_then(|_| out.flush()).map_err(Error::io("write event"))
}
