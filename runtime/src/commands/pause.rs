//! `pause` and `resume`: freeze and thaw the container's cgroup.

use super::Error;
use crate::cgroups::CgroupManager;
use crate::container::{Status, Store};

pub fn pause(store: &Store, id: &str) -> Result<(), Error> {
    let c = store.load(id)?;
    match c.status(&store.dir(id)) {
        Status::Running | Status::Created => {}
        Status::Paused => return Ok(()),
        _ => return Err(Error::Refused("container not running".into())),
    }
    let cg = c.cgroup().ok_or_else(|| Error::Refused("container has no cgroup to freeze".into()))?;
    cg.freeze().map_err(Error::from)
}

pub fn resume(store: &Store, id: &str) -> Result<(), Error> {
    let c = store.load(id)?;
    if c.status(&store.dir(id)) != Status::Paused {
        return Err(Error::Refused("container not paused".into()));
    }
    let cg = c.cgroup().ok_or_else(|| Error::Refused("container has no cgroup to thaw".into()))?;
    cg.thaw().map_err(Error::from)
}
