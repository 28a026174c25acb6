//! The CSR approving and signing controller (upstream's csrapproving and csrsigning in one
//! loop): a pending kubelet request of the right form from a bootstrapper or the node
//! itself is approved (see `decide`); an approved request for one of our signers is signed
//! by the cluster CA (`auth::csr_signer`), or marked Failed when its form is wrong. Denied
//! and Failed requests are never signed; requests for other signers are left alone.
//! Every step is a conditional write (resourceVersion), so a retry never doubles up.

pub mod decide;

use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use super::backoff::Backoff;
use crate::auth::csr_signer::ClusterSigner;
use decide::{Request, Signing};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("certificatesigningrequest {name}: {action}: {source}")]
    Api { name: String, action: &'static str, source: Box<kube::Error> },
    #[error("certificatesigningrequest {name}: {source}")]
    Sign { name: String, source: crate::auth::csr_signer::SignerError },
}

struct Context {
    api: Api<CertificateSigningRequest>,
    signer: ClusterSigner,
    backoff: Backoff,
}

pub async fn run(client: Client, signer: ClusterSigner) {
    let api = Api::<CertificateSigningRequest>::all(client);
    Controller::new(api.clone(), watcher::Config::default())
        .run(reconcile, error_policy, Arc::new(Context { api, signer, backoff: Backoff::default() }))
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!("csr signing controller: {e}");
            }
        })
        .await;
}

fn error_policy(csr: Arc<CertificateSigningRequest>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(csr = %csr.name_any(), "{err}");
    Action::requeue(ctx.backoff.failed(&csr.name_any()))
}

fn has_condition(csr: &CertificateSigningRequest, type_: &str) -> bool {
    csr.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

fn signed(csr: &CertificateSigningRequest) -> bool {
    csr.status.as_ref().and_then(|s| s.certificate.as_ref()).is_some_and(|c| !c.0.is_empty())
}

/// The request's conditions with one more, as JSON (a merge patch replaces the list).
fn with_condition(csr: &CertificateSigningRequest, type_: &str, reason: &str, message: &str) -> Value {
    let mut conditions: Vec<Value> = csr.status.as_ref().and_then(|s| s.conditions.as_ref()).map(|c| c.iter().filter_map(|c| serde_json::to_value(c).ok()).collect()).unwrap_or_default();
    let now = crate::handlers::objects::timestamp(crate::handlers::objects::now());
    conditions.push(json!({"type": type_, "status": "True", "reason": reason, "message": message, "lastUpdateTime": now, "lastTransitionTime": now}));
    Value::Array(conditions)
}

async fn reconcile(csr: Arc<CertificateSigningRequest>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = csr.name_any();
    if signed(&csr) || has_condition(&csr, "Denied") || has_condition(&csr, "Failed") {
        return Ok(Action::await_change());
    }
    let api_err = |action: &'static str| {
        let name = name.clone();
        move |source| Error::Api { name, action, source: Box::new(source) }
    };
    // The API server validated the request on create; one that no longer parses is skipped.
    let Ok(parsed) = crate::auth::csr::parse_pem(&csr.spec.request.0) else {
        return Ok(Action::await_change());
    };
    let request = Request {
        signer: &csr.spec.signer_name,
        username: csr.spec.username.as_deref().unwrap_or(""),
        groups: csr.spec.groups.as_deref().unwrap_or_default(),
        usages: csr.spec.usages.as_deref().unwrap_or_default(),
        csr: &parsed,
    };
    let rv = csr.resource_version();
    if !has_condition(&csr, "Approved") {
        let Some(message) = decide::auto_approval(&request) else {
            return Ok(Action::await_change());
        };
        let patch = json!({"metadata": {"resourceVersion": rv}, "status": {"conditions": with_condition(&csr, "Approved", "AutoApproved", message)}});
        ctx.api.patch_approval(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.map_err(api_err("approve"))?;
        tracing::info!(csr = %name, "{message}");
        // The approval's watch event brings the request back for signing.
        return Ok(Action::await_change());
    }
    let signing = decide::signing(&request);
    let status = match &signing {
        Signing::NotOurs => return Ok(Action::await_change()),
        Signing::Refuse(why) => {
            tracing::info!(csr = %name, "not signing: {why}");
            json!({"conditions": with_condition(&csr, "Failed", "SignerValidationFailure", &why)})
        }
        Signing::Sign => {
            let now = time::OffsetDateTime::now_utc();
            let expiration = csr.spec.expiration_seconds.map(i64::from);
            let pem = ctx.signer.sign(&parsed.der, request.usages, expiration, now).map_err(|source| Error::Sign { name: name.clone(), source })?;
            use base64::Engine as _;
            json!({"certificate": base64::engine::general_purpose::STANDARD.encode(pem)})
        }
    };
    let patch = json!({"metadata": {"resourceVersion": rv}, "status": status});
    match ctx.api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) if signing == Signing::Sign => tracing::info!(csr = %name, "signed by {}", request.signer),
        Ok(_) => {}
        // Changed meanwhile (or gone): its next event brings it back.
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {}
        Err(e) => return Err(api_err("write status")(e)),
    }
    ctx.backoff.succeeded(&name);
    Ok(Action::await_change())
}
