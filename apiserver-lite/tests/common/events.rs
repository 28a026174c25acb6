//! Events in the tests' namespace. A controller records its event after the change it reports,
//! so a test that has just seen the change waits for the event too (`event_messages_until`).

use k8s_openapi::api::core::v1::Event;
use kube::api::ListParams;
use kube::{Api, Client};

use super::eventually;

/// The messages of the events with `reason` in namespace `default`, oldest first as listed.
pub async fn event_messages(client: &Client, reason: &str) -> Vec<String> {
    let api: Api<Event> = Api::namespaced(client.clone(), "default");
    api.list(&ListParams::default()).await.unwrap().items.into_iter().filter(|e| e.reason.as_deref() == Some(reason)).filter_map(|e| e.message).collect()
}

/// Wait (at most 10 s) until the messages of the events with `reason` satisfy `check`, and
/// return them; fails with the messages it last saw.
pub async fn event_messages_until(client: &Client, reason: &str, check: impl Fn(&[String]) -> bool) -> Vec<String> {
    eventually(&format!("{reason} events"), 10, || async {
        let messages = event_messages(client, reason).await;
        if check(&messages) { Ok(messages) } else { Err(format!("{messages:?}")) }
    })
    .await
}
