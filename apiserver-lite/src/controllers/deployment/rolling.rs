//! The RollingUpdate strategy: grow the new ReplicaSet up to replicas + maxSurge pods in all,
//! shrink old ones while at least replicas - maxUnavailable stay available (unhealthy old
//! pods first), and once done prune history.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};

use super::replicasets::{self as util, Error as SpecError};
use super::{status, Error, Rollout};

/// How big the new ReplicaSet may be now: under RollingUpdate, as much as the surge allows
/// without passing replicas; under Recreate, replicas.
pub fn new_rs_replicas(d: &Deployment, all: &[ReplicaSet], new: &ReplicaSet) -> Result<i32, SpecError> {
    let want = util::replicas(d);
    if !util::is_rolling(d) {
        return Ok(want);
    }
    let current_new = util::rs_replicas(new);
    let (surge, _) = util::fenceposts(d)?;
    // Pods an old ReplicaSet still has count until its controller has deleted them (its
    // status says so): upstream counts specs only, which lets pods exceed the surge for a
    // moment while a scale-down is in flight.
    let current: i32 = all.iter().map(|rs| util::rs_replicas(rs).max(rs.status.as_ref().map_or(0, |s| s.replicas))).sum();
    let max_total = want + surge;
    if current >= max_total {
        return Ok(current_new);
    }
    Ok(current_new + (max_total - current).min(want - current_new))
}

impl Rollout {
    pub(super) async fn rollout_rolling(&mut self, all: Vec<ReplicaSet>) -> Result<(), Error> {
        let (new, mut old) = self.new_and_old(&all, true).await?;
        let Some(mut new) = new else { return Ok(()) };
        if self.reconcile_new_rs(&mut new, &old).await? {
            return self.sync_rollout_status(Some(&new), &old).await;
        }
        if self.reconcile_old_rss(&new, &mut old).await? {
            return self.sync_rollout_status(Some(&new), &old).await;
        }
        let current = self.d.status.clone().unwrap_or_default();
        if status::complete(&self.d, &current) {
            self.cleanup(&old).await?;
        }
        self.sync_rollout_status(Some(&new), &old).await
    }

    async fn reconcile_new_rs(&mut self, new: &mut ReplicaSet, old: &[ReplicaSet]) -> Result<bool, Error> {
        let want = util::replicas(&self.d);
        let current = util::rs_replicas(new);
        let target = if current > want {
            want
        } else {
            let all: Vec<ReplicaSet> = old.iter().cloned().chain(std::iter::once(new.clone())).collect();
            new_rs_replicas(&self.d, &all, new).map_err(self.spec_err())?
        };
        if target == current {
            return Ok(false);
        }
        *new = self.scale_rs(new, target).await?;
        Ok(true)
    }

    /// Scale old ReplicaSets down as far as availability allows; whether any shrank.
    async fn reconcile_old_rss(&mut self, new: &ReplicaSet, old: &mut [ReplicaSet]) -> Result<bool, Error> {
        let old_count: i32 = old.iter().map(util::rs_replicas).sum();
        if old_count == 0 {
            return Ok(false);
        }
        // A ReplicaSet whose status lags its spec would make availability look better than it
        // is; its status update wakes us again.
        if old.iter().chain(std::iter::once(new)).any(|rs| rs.metadata.generation > rs.status.as_ref().and_then(|s| s.observed_generation)) {
            return Ok(false);
        }
        let all_count = old_count + util::rs_replicas(new);
        let max_unavailable = util::max_unavailable(&self.d).map_err(self.spec_err())?;
        let min_available = util::replicas(&self.d) - max_unavailable;
        let new_unavailable = util::rs_replicas(new) - util::available(new);
        let max_scaled_down = all_count - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        old.sort_by_key(|rs| (rs.metadata.creation_timestamp.as_ref().map(|t| t.0), rs.metadata.name.clone()));
        // Unhealthy old replicas go first: removing them costs no availability.
        let mut cleaned = 0;
        for rs in old.iter_mut() {
            if cleaned >= max_scaled_down {
                break;
            }
            let (size, available) = (util::rs_replicas(rs), util::available(rs));
            if size == 0 || size == available {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(size - available);
            *rs = self.scale_rs(&rs.clone(), size - down).await?;
            cleaned += down;
        }
        // Then healthy ones, oldest first, while enough stay available.
        let available_now: i32 = old.iter().map(util::available).sum::<i32>() + util::available(new);
        let mut scaled = 0;
        if available_now > min_available {
            let total = available_now - min_available;
            for rs in old.iter_mut() {
                if scaled >= total {
                    break;
                }
                let size = util::rs_replicas(rs);
                if size == 0 {
                    continue;
                }
                let down = size.min(total - scaled);
                *rs = self.scale_rs(&rs.clone(), size - down).await?;
                scaled += down;
            }
        }
        Ok(cleaned + scaled > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn d(replicas: i32, surge: i32, unavailable: i32) -> Deployment {
        serde_json::from_value(json!({"spec": {"replicas": replicas, "selector": {}, "template": {},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}}}))
        .unwrap()
    }

    fn rs(replicas: i32) -> ReplicaSet {
        serde_json::from_value(json!({"spec": {"replicas": replicas, "selector": {}}})).unwrap()
    }

    #[test]
    fn the_new_replicaset_grows_within_the_surge() {
        // 3 old + 0 new, surge 1: the new one may have 1.
        assert_eq!(new_rs_replicas(&d(3, 1, 0), &[rs(3), rs(0)], &rs(0)).unwrap(), 1);
        // Already at replicas + surge: no growth.
        assert_eq!(new_rs_replicas(&d(3, 1, 0), &[rs(3), rs(1)], &rs(1)).unwrap(), 1);
        // Old ones gone: grow to replicas, never past.
        assert_eq!(new_rs_replicas(&d(3, 2, 0), &[rs(0), rs(2)], &rs(2)).unwrap(), 3);
    }
}
