//! The set's ControllerRevisions through the API: find or make the update revision (a
//! template seen before is renumbered rather than duplicated, so `rollout undo` shows as a new
//! revision), and delete history beyond revisionHistoryLimit.

use std::collections::HashSet;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::revision;

/// The current and update revisions and the collision count: upstream's
/// getStatefulSetRevisions. `sorted` are the set's revisions, oldest first.
pub async fn current_and_update(api: &Api<ControllerRevision>, set: &StatefulSet, sorted: &[ControllerRevision]) -> Result<(ControllerRevision, ControllerRevision, i32), (String, kube::Error)> {
    let mut collision_count = set.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0);
    let candidate = revision::new_revision(set, revision::next_number(sorted), collision_count);
    let equal = sorted.iter().rev().find(|r| revision::equal(r, &candidate));
    let update = match equal {
        Some(r) if sorted.last().is_some_and(|last| revision::equal(last, r)) => r.clone(),
        Some(r) => {
            let patch = Patch::Merge(json!({"revision": candidate.revision}));
            api.patch(&r.name_any(), &PatchParams::default(), &patch).await.map_err(|e| (format!("renumber revision {}", r.name_any()), e))?
        }
        None => create(api, set, candidate, &mut collision_count).await?,
    };
    let recorded = set.status.as_ref().and_then(|s| s.current_revision.clone());
    let current = sorted.iter().find(|r| recorded.as_deref() == Some(r.name_any().as_str())).cloned().unwrap_or_else(|| update.clone());
    Ok((current, update, collision_count))
}

/// Create the revision; a name taken by other data is a hash collision: count it and retry
/// under the next name.
async fn create(api: &Api<ControllerRevision>, set: &StatefulSet, mut rev: ControllerRevision, collision_count: &mut i32) -> Result<ControllerRevision, (String, kube::Error)> {
    let data = rev.data.clone().map(|d| d.0).unwrap_or_default();
    loop {
        rev.metadata.name = Some(revision::name(&set.name_any(), &revision::hash(&data, *collision_count)));
        match api.create(&PostParams::default(), &rev).await {
            Ok(created) => return Ok(created),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let name = rev.name_any();
                let existing = api.get(&name).await.map_err(|e| (format!("read revision {name}"), e))?;
                if revision::equal(&existing, &rev) {
                    return Ok(existing);
                }
                *collision_count += 1;
            }
            Err(e) => return Err((format!("create revision {}", rev.name_any()), e)),
        }
    }
}

/// Delete the oldest revisions no pod uses beyond revisionHistoryLimit.
pub async fn truncate(api: &Api<ControllerRevision>, set: &StatefulSet, sorted: &[ControllerRevision], live: &HashSet<String>) -> Result<(), (String, kube::Error)> {
    let limit = set.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(10);
    for name in revision::to_truncate(sorted, live, limit) {
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err((format!("delete revision {name}"), e)),
        }
    }
    Ok(())
}
