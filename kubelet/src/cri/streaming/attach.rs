//! An attach session: the WebSocket channels bridged to the container monitor's attach
//! socket (`monitor::attach`). Output the client asked for goes to channels 1 and 2 (a
//! terminal's is all stdout), channel 0 goes to the container's stdin, resizes to the
//! monitor (which sets the terminal's size). The session ends when the container's output
//! ends (it exited: the status is `Success`) or when the client goes away, which detaches
//! it (with `stdin_once`, the container's stdin is then closed).

use std::path::PathBuf;

use axum::extract::ws::{Message, WebSocket};
use futures_util::StreamExt;
use futures_util::stream::SplitStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::OwnedWriteHalf;

use super::channel::{self, CLOSE, ERROR, Outgoing, RESIZE, STDERR, STDIN, STDOUT, Size, Version};
use super::{Error, io};
use crate::cri::monitor::attach::{self as socket, Decoder, Frame};

/// What an `Attach` request prepared.
pub struct AttachTarget {
    pub container_id: String,
    /// The container's directory, where its monitor serves the attach socket.
    pub dir: PathBuf,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// Runs the session to its end; the client gets a status on the error channel.
pub async fn run(ws: WebSocket, target: AttachTarget, version: Version) -> Result<(), Error> {
    let (sink, mut incoming) = ws.split();
    let (out, writer) = channel::spawn_writer(sink);
    let result = bridge(&target, &mut incoming, &out, version).await;
    let status = match &result {
        Ok(()) => channel::exit_status(0),
        Err(e) => channel::error_status(&e.to_string()),
    };
    let _ = out.send(channel::binary(ERROR, status.to_string().as_bytes())).await;
    drop(out);
    let _ = writer.await;
    channel::finish(&mut incoming).await;
    result
}

async fn bridge(target: &AttachTarget, incoming: &mut SplitStream<WebSocket>, out: &Outgoing, version: Version) -> Result<(), Error> {
    let dir = target.dir.clone();
    let stream = tokio::task::spawn_blocking(move || socket::connect(&dir))
        .await
        .map_err(|e| Error::Io { what: "connecting to the attach socket".into(), source: std::io::Error::other(e) })?
        .map_err(|e| Error::Attach { id: target.container_id.clone(), message: e.to_string() })?;
    stream.set_nonblocking(true).map_err(io("the attach socket"))?;
    let stream = tokio::net::UnixStream::from_std(stream).map_err(io("the attach socket"))?;
    let (mut from_monitor, mut to_monitor) = stream.into_split();
    if target.stdin {
        // Claims stdin (see the framing): this client's detach counts for `stdin_once`.
        to_monitor.write_all(&Frame::Stdin(Vec::new()).encode()).await.map_err(io("writing the attach socket"))?;
    }
    let output = async {
        let mut decoder = Decoder::default();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = from_monitor.read(&mut buf).await.map_err(io("reading the attach socket"))?;
            if n == 0 {
                return Ok(());
            }
            decoder.push(&buf[..n]);
            while let Some(frame) = decoder.next_frame().map_err(|e| Error::Attach { id: target.container_id.clone(), message: e.to_string() })? {
                let message = match frame {
                    Frame::Stdout(d) if target.stdout => channel::binary(STDOUT, &d),
                    Frame::Stderr(d) if target.stderr => channel::binary(STDERR, &d),
                    _ => continue,
                };
                if out.send(message).await.is_err() {
                    return Ok(());
                }
            }
        }
    };
    tokio::select! {
        r = output => r,
        () = feed(incoming, to_monitor, target, version) => Ok(()),
    }
}

/// The client's messages, until it goes away (which detaches it).
async fn feed(incoming: &mut SplitStream<WebSocket>, mut to_monitor: OwnedWriteHalf, target: &AttachTarget, version: Version) {
    while let Some(Ok(message)) = incoming.next().await {
        let data = match message {
            Message::Binary(b) => b,
            Message::Close(_) => break,
            _ => continue,
        };
        let Some((&ch, payload)) = data.split_first() else { continue };
        let frame = match ch {
            // Input the request did not ask for is dropped.
            STDIN if target.stdin => Frame::Stdin(payload.to_vec()),
            RESIZE if target.tty => match serde_json::from_slice::<Size>(payload) {
                Ok(size) => Frame::Resize { width: size.width, height: size.height },
                Err(_) => continue,
            },
            CLOSE if version == Version::V5 && payload.first() == Some(&STDIN) && target.stdin => Frame::CloseStdin,
            _ => continue,
        };
        if to_monitor.write_all(&frame.encode()).await.is_err() {
            break;
        }
    }
}
