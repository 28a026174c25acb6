//! The Kubernetes WebSocket channel protocol: every binary message starts with one byte
//! naming its channel. Exec: 0 stdin, 1 stdout, 2 stderr, 3 error (the final status, a
//! JSON `metav1.Status`), 4 resize (JSON `{"Width","Height"}`); `v5` adds 255, a close
//! signal whose payload names the channel the client is done with.

use axum::extract::ws::{Message, WebSocket};
use axum::http::HeaderValue;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
/// v5 only: the client closed the channel named by the payload's first byte.
pub const CLOSE: u8 = 255;

const V5: &str = "v5.channel.k8s.io";
const V4: &str = "v4.channel.k8s.io";

/// Offered for exec, newest first.
pub const EXEC_PROTOCOLS: [&str; 2] = [V5, V4];
/// Offered for port forwarding: channels in pairs per port (data 2i, error 2i+1).
pub const PORT_FORWARD_PROTOCOLS: [&str; 2] = [V4, "portforward.k8s.io"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V4,
    V5,
}

impl Version {
    /// The version the handshake settled on; a client that named none gets v4 semantics.
    pub fn of(protocol: Option<&HeaderValue>) -> Version {
        match protocol.and_then(|p| p.to_str().ok()) {
            Some(V5) => Version::V5,
            _ => Version::V4,
        }
    }
}

/// Where a session's tasks queue messages for the client.
pub type Outgoing = mpsc::Sender<Message>;

/// One task writes to the socket, in order, for every sender; the socket is closed once
/// all senders are dropped.
pub fn spawn_writer(mut sink: SplitSink<WebSocket, Message>) -> (Outgoing, JoinHandle<()>) {
    let (out, mut queued) = mpsc::channel::<Message>(64);
    let writer = tokio::spawn(async move {
        while let Some(m) = queued.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
        // A close frame with a status: a bare one reaches the client as 1005 "no status",
        // which kubectl 1.33 reports as an error on the error stream.
        let normal = axum::extract::ws::CloseFrame { code: axum::extract::ws::close_code::NORMAL, reason: "".into() };
        let _ = sink.send(Message::Close(Some(normal))).await;
        let _ = sink.close().await;
    });
    (out, writer)
}

/// How long the client has to answer our close frame.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// After the writer's close frame: read until the client's (or the end of its stream),
/// the WebSocket closing handshake, so that the connection is closed with nothing unread.
/// A socket closed with unread input is reset, and a proxy between (the kubelet's, the API
/// server's) may then lose the session's last frames: kubectl saw its exec cut (1006).
pub async fn finish(incoming: &mut SplitStream<WebSocket>) {
    let answered = async {
        while let Some(Ok(message)) = incoming.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_WAIT, answered).await;
}

/// A binary message for `channel`.
pub fn binary(channel: u8, data: &[u8]) -> Message {
    Message::Binary(frame(channel, data).into())
}

/// A message for `channel`.
pub fn frame(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(data.len() + 1);
    m.push(channel);
    m.extend_from_slice(data);
    m
}

/// The status on the error channel when the process ended with `code`, as the kubelet
/// writes it: `Success`, or `NonZeroExitCode` with the code as an `ExitCode` cause.
pub fn exit_status(code: i32) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: {code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// The status when the exec could not run at all.
pub fn error_status(message: &str) -> Value {
    json!({"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError", "code": 500})
}

/// A terminal size from the resize channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub struct Size {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_reported_as_the_kubelet_does() {
        assert_eq!(exit_status(0), json!({"metadata": {}, "status": "Success"}));
        let s = exit_status(3);
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0], json!({"reason": "ExitCode", "message": "3"}));
    }

    #[test]
    fn versions_and_frames() {
        assert_eq!(Version::of(Some(&HeaderValue::from_static(V5))), Version::V5);
        assert_eq!(Version::of(Some(&HeaderValue::from_static(V4))), Version::V4);
        assert_eq!(Version::of(None), Version::V4);
        assert_eq!(frame(STDOUT, b"hi"), b"\x01hi");
        let size: Size = serde_json::from_str(r#"{"Width":80,"Height":24}"#).unwrap();
        assert_eq!(size, Size { width: 80, height: 24 });
    }
}
