//! The Recreate strategy: scale every old ReplicaSet to zero, wait until none of their pods
//! runs, then bring the new ReplicaSet up to full size at once.

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::Api;

use super::replicasets as util;
use super::{status, Error, Rollout};
use crate::controllers::replicaset::pods::controller_of;

impl Rollout {
    pub(super) async fn rollout_recreate(&mut self, all: Vec<ReplicaSet>) -> Result<(), Error> {
        let (new, mut old) = self.new_and_old(&all, false).await?;
        let mut scaled_down = false;
        for rs in old.iter_mut() {
            if util::rs_replicas(rs) > 0 {
                *rs = self.scale_rs(&rs.clone(), 0).await?;
                scaled_down = true;
            }
        }
        if scaled_down {
            return self.sync_rollout_status(new.as_ref(), &old).await;
        }
        if self.old_pods_running(new.as_ref(), &old).await? {
            // A terminating pod's final removal changes no ReplicaSet, so nothing would wake
            // us: look again shortly.
            self.requeue_after(Duration::from_secs(1));
            return self.sync_rollout_status(new.as_ref(), &old).await;
        }
        let new = match new {
            Some(n) => n,
            None => match self.new_and_old(&all, true).await?.0 {
                Some(n) => n,
                None => return Ok(()),
            },
        };
        let want = util::replicas(&self.d);
        let new = if util::rs_replicas(&new) != want { self.scale_rs(&new, want).await? } else { new };
        if status::complete(&self.d, &self.d.status.clone().unwrap_or_default()) {
            self.cleanup(&old).await?;
        }
        self.sync_rollout_status(Some(&new), &old).await
    }

    /// Whether any pod of an old ReplicaSet may still run (not Succeeded or Failed).
    async fn old_pods_running(&self, new: Option<&ReplicaSet>, old: &[ReplicaSet]) -> Result<bool, Error> {
        if old.iter().any(|rs| rs.status.as_ref().is_some_and(|s| s.replicas > 0)) {
            return Ok(true);
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.ns());
        let pods = pods.list(&ListParams::default()).await.map_err(self.api_err("list pods"))?.items;
        let new_uid = new.and_then(|n| n.metadata.uid.clone());
        let old_uids: Vec<&String> = old.iter().filter_map(|rs| rs.metadata.uid.as_ref()).collect();
        Ok(pods.iter().any(|p| {
            let owner = controller_of(&p.metadata).map(|r| &r.uid);
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
            owner.is_some_and(|u| old_uids.contains(&u) && Some(u) != new_uid.as_ref()) && phase != "Succeeded" && phase != "Failed"
        }))
    }
}
