//! Exec over SPDY: the client opens a stream per purpose (`streamType` error, stdin,
//! stdout, stderr, resize); once those the request asked for are there the process runs,
//! its stdio shuttled by the WebSocket path's code through channel-numbered messages. The
//! exit status goes on the error stream (v4: a JSON `Status`; v2/v3: a failure's message),
//! then every stream is closed.

use std::time::Duration;

use axum::extract::ws::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::super::channel::{self, CLOSE, RESIZE, STDERR, STDIN, STDOUT, Size, Version};
use super::super::exec::{ExecTarget, run_process};
use super::{Error, Session, Stream, StreamWriter};

/// How long the client has to open its streams.
const STREAM_WAIT: Duration = Duration::from_secs(30);

/// The streams of one exec.
#[derive(Default)]
struct Streams {
    error: Option<Stream>,
    stdin: Option<Stream>,
    stdout: Option<Stream>,
    stderr: Option<Stream>,
    resize: Option<Stream>,
}

impl Streams {
    fn slot(&mut self, kind: &str) -> Option<&mut Option<Stream>> {
        Some(match kind {
            "error" => &mut self.error,
            "stdin" => &mut self.stdin,
            "stdout" => &mut self.stdout,
            "stderr" => &mut self.stderr,
            "resize" => &mut self.resize,
            _ => return None,
        })
    }

    fn complete(&self, target: &ExecTarget, resize: bool) -> bool {
        self.error.is_some()
            && (!target.stdin || self.stdin.is_some())
            && (!target.stdout || self.stdout.is_some())
            && (!target.stderr || target.tty || self.stderr.is_some())
            && (!(target.tty && resize) || self.resize.is_some())
    }
}

pub async fn run(mut session: Session, target: ExecTarget, protocol: &'static str) -> Result<(), Error> {
    let v4 = protocol.starts_with("v4.");
    let resize = !protocol.starts_with("v2.");
    let mut streams = Streams::default();
    let waited = tokio::time::timeout(STREAM_WAIT, async {
        while !streams.complete(&target, resize) {
            let Some(stream) = session.accept().await else { return false };
            let kind = stream.headers.get("streamtype").unwrap_or_default().to_string();
            if let Some(slot) = streams.slot(&kind) {
                *slot = Some(stream);
            }
        }
        true
    })
    .await;
    if waited != Ok(true) {
        session.close().await;
        return Err(Error::Protocol("the client did not open the exec's streams".into()));
    }

    // The client's streams become channel messages; stdin's FIN is the v5 close signal.
    let (tx, rx) = mpsc::channel::<Result<Message, axum::Error>>(16);
    for (stream, ch) in [(streams.stdin.take(), STDIN), (streams.resize.take(), RESIZE)] {
        if let Some(stream) = stream {
            tokio::spawn(forward_in(stream, ch, tx.clone()));
        }
    }
    drop(tx);
    let (out, queued) = mpsc::channel::<Message>(64);
    let writers = [streams.stdout.as_ref().map(|s| s.writer.clone()), streams.stderr.as_ref().map(|s| s.writer.clone())];
    let router = tokio::spawn(forward_out(queued, writers.clone()));
    let result = run_process(&target, &mut ReceiverStream::new(rx), &out, Version::V5).await;
    drop(out);
    let _ = router.await;

    for writer in writers.iter().flatten() {
        let _ = writer.close().await;
    }
    let error = streams.error.as_ref().expect("waited for").writer.clone();
    let status = match &result {
        Ok(code) => channel::exit_status(*code),
        Err(e) => channel::error_status(&e.to_string()),
    };
    if v4 {
        let _ = error.write(status.to_string().as_bytes()).await;
    } else if let Some(message) = status["message"].as_str() {
        let _ = error.write(message.as_bytes()).await;
    }
    let _ = error.close().await;
    session.close().await;
    result.map(drop).map_err(Error::from)
}

/// A client stream's data as messages on `ch`; resizes split into one message per size.
async fn forward_in(mut stream: Stream, ch: u8, tx: mpsc::Sender<Result<Message, axum::Error>>) {
    let mut pending = Vec::new();
    while let Some(data) = stream.read().await {
        let messages = if ch == RESIZE {
            pending.extend(data);
            let mut sizes = serde_json::Deserializer::from_slice(&pending).into_iter::<Size>();
            let mut found = Vec::new();
            while let Some(Ok(size)) = sizes.next() {
                let json = format!(r#"{{"Width":{},"Height":{}}}"#, size.width, size.height);
                found.push(channel::frame(RESIZE, json.as_bytes()));
            }
            let used = sizes.byte_offset();
            pending.drain(..used);
            found
        } else {
            vec![channel::frame(ch, &data)]
        };
        for m in messages {
            if tx.send(Ok(Message::Binary(m.into()))).await.is_err() {
                return;
            }
        }
    }
    if ch == STDIN {
        let _ = tx.send(Ok(Message::Binary(vec![CLOSE, STDIN].into()))).await;
    }
}

/// The process's output, by channel, to the stdout and stderr streams.
async fn forward_out(mut queued: mpsc::Receiver<Message>, [stdout, stderr]: [Option<StreamWriter>; 2]) {
    while let Some(message) = queued.recv().await {
        let Message::Binary(b) = message else { continue };
        let Some((&ch, data)) = b.split_first() else { continue };
        let to = match ch {
            STDOUT => &stdout,
            STDERR => &stderr,
            _ => continue,
        };
        if let Some(w) = to {
            let _ = w.write(data).await;
        }
    }
}
