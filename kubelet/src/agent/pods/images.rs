//! Making sure a container's image is there before it is created, by its imagePullPolicy
//! (Always / IfNotPresent / Never; the default is Always for `:latest` or untagged images,
//! IfNotPresent otherwise), with ErrImagePull, then ImagePullBackOff while the pull backs off.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};

use super::backoff::Backoff;
use super::deps::{EventSink, EventType, PodDeps};
use super::plan::Waiting;
use crate::agent::runtime::PodRuntime;

/// The default pull policy of `image`.
pub fn default_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, tag)) if tag != "latest" => "IfNotPresent",
        _ => "Always",
    }
}

/// Go's duration formatting, roughly: "512ms", "1.234s".
fn go_elapsed(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.3}s", d.as_secs_f64())
    }
}

pub struct ImagePuller<'a> {
    pub runtime: &'a dyn PodRuntime,
    pub deps: &'a dyn PodDeps,
    pub events: &'a dyn EventSink,
    pub backoff: &'a Backoff,
}

impl ImagePuller<'_> {
    /// The image reference to create `container` from, or why it waits.
    pub async fn ensure(&self, pod: &Pod, container: &Container) -> Result<String, Waiting> {
        let name = container.name.as_str();
        let warn = |reason: &str, message: &str| self.events.event(pod, Some(name), EventType::Warning, reason, message);
        let Some(image) = container.image.as_deref().filter(|i| !i.is_empty()) else {
            return Err(Waiting::new("InvalidImageName", format!("container {name} has no image")));
        };
        let policy = container.image_pull_policy.as_deref().unwrap_or_else(|| default_pull_policy(image));
        let present = match self.runtime.image_status(image).await {
            Ok(found) => found.map(|i| i.id),
            Err(e) => {
                warn("Failed", &format!("Failed to inspect image \"{image}\": {e}"));
                return Err(Waiting::new("ImageInspectError", format!("Failed to inspect image \"{image}\": {e}")));
            }
        };
        match (policy, present) {
            ("Never", None) => {
                let message = format!("Container image \"{image}\" is not present with pull policy of Never");
                warn("ErrImageNeverPull", &message);
                return Err(Waiting::new("ErrImageNeverPull", message));
            }
            ("Never" | "IfNotPresent", Some(id)) => {
                self.events.event(pod, Some(name), EventType::Normal, "Pulled", &format!("Container image \"{image}\" already present on machine"));
                return Ok(id);
            }
            _ => {}
        }
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let key = (uid, image.to_string());
        if self.backoff.remaining_since_update(&key).is_some() {
            let message = format!("Back-off pulling image \"{image}\"");
            self.events.event(pod, Some(name), EventType::Normal, "BackOff", &message);
            return Err(Waiting::new("ImagePullBackOff", message));
        }
        self.events.event(pod, Some(name), EventType::Normal, "Pulling", &format!("Pulling image \"{image}\""));
        let started = Instant::now();
        let auth = self.deps.pull_auth(pod, image).await;
        match self.runtime.pull_image(image, auth, None).await {
            Ok(image_ref) => {
                self.backoff.reset(&key);
                let took = go_elapsed(started.elapsed());
                self.events.event(pod, Some(name), EventType::Normal, "Pulled", &format!("Successfully pulled image \"{image}\" in {took} ({took} including waiting)"));
                Ok(if image_ref.is_empty() { image.to_string() } else { image_ref })
            }
            Err(e) => {
                self.backoff.next(&key);
                let message = format!("Failed to pull image \"{image}\": {e}");
                warn("Failed", &message);
                warn("Failed", "Error: ErrImagePull");
                Err(Waiting::new("ErrImagePull", message))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policies() {
        assert_eq!(default_pull_policy("busybox"), "Always");
        assert_eq!(default_pull_policy("busybox:latest"), "Always");
        assert_eq!(default_pull_policy("busybox:1.36"), "IfNotPresent");
        assert_eq!(default_pull_policy("localhost:5000/busybox"), "Always");
        assert_eq!(default_pull_policy("localhost:5000/busybox:1"), "IfNotPresent");
        assert_eq!(default_pull_policy("busybox@sha256:abcd"), "IfNotPresent");
    }
}
