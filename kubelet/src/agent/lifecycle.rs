//! Lifecycle hooks: postStart (run right after the container starts; the container is
//! killed if it fails) and preStop (run before the container is stopped, within its grace
//! period). A handler is an exec in the container (through [`ProbeExec`], the runtime's
//! `ExecSync`), an HTTP GET (to the pod IP by default, as httpGet probes, success on
//! 200-399), or a sleep. Errors carry the upstream kubelet's wording for the
//! FailedPostStartHook/FailedPreStopHook events and the `PostStartHookError` status.

use std::fmt;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod};

use crate::agent::probes::action::{Target, http_target};
use crate::agent::probes::http;
use crate::agent::probes::{ExecError, ProbeExec};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    PostStart,
    PreStop,
}

impl HookKind {
    /// The event reason of a failure: `FailedPostStartHook`, `FailedPreStopHook`.
    pub fn event_reason(self) -> &'static str {
        match self {
            HookKind::PostStart => "FailedPostStartHook",
            HookKind::PreStop => "FailedPreStopHook",
        }
    }

    /// The container status reason of a failure: `PostStartHookError`, `PreStopHookError`.
    pub fn status_reason(self) -> &'static str {
        match self {
            HookKind::PostStart => "PostStartHookError",
            HookKind::PreStop => "PreStopHookError",
        }
    }
}

impl fmt::Display for HookKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HookKind::PostStart => "PostStart",
            HookKind::PreStop => "PreStop",
        })
    }
}

/// A failed hook. Its Display is the event message, as upstream words it; `detail` is the
/// short cause ("command 'x' exited with 1: output") for [`HookError::status_message`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    #[error("Exec lifecycle hook ([{}]) for Container {container:?} in Pod {pod:?} failed - error: {detail}, message: {output:?}", command.join(" "))]
    Exec { kind: HookKind, command: Vec<String>, container: String, pod: String, detail: String, output: String },
    #[error("HTTP lifecycle hook ({path}) for Container {container:?} in Pod {pod:?} failed - error: {detail}")]
    Http { kind: HookKind, path: String, container: String, pod: String, detail: String },
    #[error("Cannot run handler: {detail}")]
    Invalid { kind: HookKind, detail: String },
}

impl HookError {
    pub fn kind(&self) -> HookKind {
        match self {
            HookError::Exec { kind, .. } | HookError::Http { kind, .. } | HookError::Invalid { kind, .. } => *kind,
        }
    }

    pub fn detail(&self) -> &str {
        match self {
            HookError::Exec { detail, .. } | HookError::Http { detail, .. } | HookError::Invalid { detail, .. } => {
                detail
            }
        }
    }

    /// For the container's status: `PostStartHookError: command 'x' exited with 1: out`.
    pub fn status_message(&self) -> String {
        format!("{}: {}", self.kind().status_reason(), self.detail())
    }
}

/// The container a hook runs for.
#[derive(Debug, Clone, Copy)]
pub struct HookTarget<'a> {
    pub pod: &'a Pod,
    pub container: &'a Container,
    pub container_id: &'a str,
    /// The default host of an httpGet handler.
    pub pod_ip: &'a str,
}

/// As upstream's `format.Pod`: `name_namespace(uid)`.
fn pod_label(pod: &Pod) -> String {
    let m = &pod.metadata;
    format!(
        "{}_{}({})",
        m.name.as_deref().unwrap_or_default(),
        m.namespace.as_deref().unwrap_or("default"),
        m.uid.as_deref().unwrap_or_default()
    )
}

/// How long an HTTP hook may take when the caller gives no limit.
const NO_LIMIT: Duration = Duration::from_secs(3600);

/// Runs `handler` for the container. `timeout` bounds an exec or HTTP handler (zero: no
/// bound); a sleep handler sleeps its full time, so the caller bounds a preStop hook by
/// the grace period by dropping this future.
pub async fn run_handler(
    kind: HookKind,
    handler: &LifecycleHandler,
    target: &HookTarget<'_>,
    exec: &dyn ProbeExec,
    timeout: Duration,
) -> Result<(), HookError> {
    let container = target.container.name.clone();
    let pod = pod_label(target.pod);
    if let Some(action) = &handler.exec {
        let command = action.command.clone().unwrap_or_default();
        if command.is_empty() {
            return Err(HookError::Invalid { kind, detail: "exec handler without a command".into() });
        }
        let err = |detail: String, output: String| HookError::Exec {
            kind,
            command: command.clone(),
            container: container.clone(),
            pod: pod.clone(),
            detail,
            output,
        };
        return match exec.exec_sync(target.container_id, &command, timeout).await {
            Ok(out) if out.exit_code == 0 => Ok(()),
            Ok(out) => {
                let output = String::from_utf8_lossy(&out.output).into_owned();
                Err(err(format!("command '{}' exited with {}: {output}", command.join(" "), out.exit_code), output))
            }
            Err(ExecError::Timeout) => Err(err(format!("command '{}' timed out", command.join(" ")), String::new())),
            Err(ExecError::Failed(e)) => Err(err(e, String::new())),
        };
    }
    if let Some(action) = &handler.http_get {
        let path = action.path.clone().unwrap_or_default();
        let err = |detail: String| HookError::Http {
            kind,
            path: path.clone(),
            container: container.clone(),
            pod: pod.clone(),
            detail,
        };
        let probe_target = Target {
            container_id: target.container_id.to_string(),
            pod_ip: target.pod_ip.to_string(),
            container: target.container.clone(),
        };
        let request = http_target(action, &probe_target).map_err(err)?;
        let limit = if timeout.is_zero() { NO_LIMIT } else { timeout };
        return match http::get(&request, limit).await {
            Ok(status) if (200..400).contains(&status) => Ok(()),
            Ok(status) => Err(err(format!("HTTP lifecycle hook failed with statuscode: {status}"))),
            Err(e) => Err(err(e)),
        };
    }
    if let Some(action) = &handler.sleep {
        tokio::time::sleep(Duration::from_secs(action.seconds.max(0) as u64)).await;
        return Ok(());
    }
    Err(HookError::Invalid {
        kind,
        detail: format!("invalid handler: no exec, httpGet or sleep action for Container {container:?} in Pod {pod:?}"),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use k8s_openapi::api::core::v1::{ExecAction, HTTPGetAction, SleepAction};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::agent::probes::ExecOutput;

    struct Exec(Mutex<Vec<Vec<String>>>, Result<ExecOutput, ExecError>);

    #[async_trait::async_trait]
    impl ProbeExec for Exec {
        async fn exec_sync(&self, id: &str, cmd: &[String], _: Duration) -> Result<ExecOutput, ExecError> {
            assert_eq!(id, "c1");
            self.0.lock().unwrap().push(cmd.to_vec());
            self.1.clone()
        }
    }

    fn exec(code: i32, output: &str) -> Exec {
        Exec(Mutex::new(vec![]), Ok(ExecOutput { exit_code: code, output: output.as_bytes().to_vec() }))
    }

    fn pod() -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some("web-0".into());
        p.metadata.namespace = Some("shop".into());
        p.metadata.uid = Some("u1".into());
        p
    }

    fn exec_handler(cmd: &[&str]) -> LifecycleHandler {
        LifecycleHandler {
            exec: Some(ExecAction { command: Some(cmd.iter().map(|s| s.to_string()).collect()) }),
            ..Default::default()
        }
    }

    async fn run(kind: HookKind, h: &LifecycleHandler, e: &Exec, pod_ip: &str) -> Result<(), HookError> {
        let p = pod();
        let c = Container { name: "web".into(), ..Default::default() };
        let t = HookTarget { pod: &p, container: &c, container_id: "c1", pod_ip };
        run_handler(kind, h, &t, e, Duration::from_secs(5)).await
    }

    #[tokio::test]
    async fn exec_hooks_run_in_the_container() {
        let ok = exec(0, "");
        run(HookKind::PostStart, &exec_handler(&["sh", "-c", "touch /ready"]), &ok, "").await.unwrap();
        assert_eq!(ok.0.lock().unwrap()[0], vec!["sh", "-c", "touch /ready"]);
        let failing = exec(1, "no such file");
        let err = run(HookKind::PostStart, &exec_handler(&["cat", "/x"]), &failing, "").await.unwrap_err();
        assert_eq!(err.status_message(), "PostStartHookError: command 'cat /x' exited with 1: no such file");
        assert_eq!(
            err.to_string(),
            "Exec lifecycle hook ([cat /x]) for Container \"web\" in Pod \"web-0_shop(u1)\" failed - error: command 'cat /x' exited with 1: no such file, message: \"no such file\""
        );
        assert_eq!(err.kind().event_reason(), "FailedPostStartHook");
        let broken = Exec(Mutex::new(vec![]), Err(ExecError::Failed("container not running".into())));
        let err = run(HookKind::PreStop, &exec_handler(&["drain"]), &broken, "").await.unwrap_err();
        assert_eq!(err.status_message(), "PreStopHookError: container not running");
        assert_eq!(err.kind().event_reason(), "FailedPreStopHook");
    }

    async fn server(status: u16) -> (u16, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap();
            s.write_all(format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n").as_bytes()).await.unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        (port, task)
    }

    fn http_handler(port: u16) -> LifecycleHandler {
        LifecycleHandler {
            http_get: Some(HTTPGetAction {
                port: IntOrString::Int(port as i32),
                path: Some("/drain".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn http_hooks_go_to_the_pod_ip() {
        let (port, request) = server(200).await;
        run(HookKind::PreStop, &http_handler(port), &exec(0, ""), "127.0.0.1").await.unwrap();
        assert!(request.await.unwrap().starts_with("GET /drain HTTP/1.1\r\n"));
        let (port, _) = server(500).await;
        let err = run(HookKind::PreStop, &http_handler(port), &exec(0, ""), "127.0.0.1").await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "HTTP lifecycle hook (/drain) for Container \"web\" in Pod \"web-0_shop(u1)\" failed - error: HTTP lifecycle hook failed with statuscode: 500"
        );
        let err = run(HookKind::PreStop, &http_handler(port), &exec(0, ""), "").await.unwrap_err();
        assert!(err.detail().contains("no IP"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_hooks_sleep() {
        let h = LifecycleHandler { sleep: Some(SleepAction { seconds: 7 }), ..Default::default() };
        let start = tokio::time::Instant::now();
        run(HookKind::PreStop, &h, &exec(0, ""), "").await.unwrap();
        assert_eq!(start.elapsed().as_secs(), 7);
        let err = run(HookKind::PostStart, &LifecycleHandler::default(), &exec(0, ""), "").await.unwrap_err();
        assert!(err.to_string().starts_with("Cannot run handler: invalid handler"), "{err}");
    }
}
