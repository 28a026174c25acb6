//! Time to program: a fresh backend's first sync of `count` services (in a fresh
//! namespace, so nothing to reconcile), then one service's endpoints changed and synced
//! again. Median over runs.

use std::time::{Duration, Instant};

use cni::proxy::BackendOptions;

use crate::netns::Netns;
use crate::{backend, median, state};

pub struct Programming {
    pub full: Duration,
    pub one_change: Duration,
}

pub fn measure(backend_name: &str, count: usize, endpoints: usize, runs: usize) -> Result<Programming, String> {
    let mut full = Vec::new();
    let mut one_change = Vec::new();
    let mut desired = state::services(count, endpoints);
    for run in 0..runs {
        let ns = Netns::new("prog")?;
        let mut b = backend(backend_name, BackendOptions { netns: Some(ns.name.clone()) })?;
        let start = Instant::now();
        let report = b.sync(&desired).map_err(|e| e.to_string())?;
        full.push(start.elapsed());
        if !report.full {
            return Err(format!("{backend_name}: a fresh backend's first sync was not a full one"));
        }
        // A service in the middle, a different address each run.
        state::change_one(&mut desired, count / 2, run);
        let start = Instant::now();
        let report = b.sync(&desired).map_err(|e| e.to_string())?;
        one_change.push(start.elapsed());
        if report.full || report.changed != 1 {
            return Err(format!("{backend_name}: the one-service change synced as {report:?}"));
        }
        // Deleting the namespace takes the rules with it; the clean-up is not measured.
    }
    Ok(Programming { full: median(&mut full), one_change: median(&mut one_change) })
}
