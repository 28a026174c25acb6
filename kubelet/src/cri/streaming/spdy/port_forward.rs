//! Port forwarding over SPDY: the client opens a `data` and an `error` stream per
//! connection, both with the same `requestID` and the `port`; each pair gets its own TCP
//! connection to the pod's localhost, made as the WebSocket path makes them. A failure is
//! reported as text on the error stream.

use std::collections::HashMap;
use std::path::PathBuf;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use super::super::port_forward::connect_in;
use super::{Error, Session, Stream};

pub async fn run(mut session: Session, netns: PathBuf) -> Result<(), Error> {
    let mut waiting: HashMap<String, (Option<Stream>, Option<Stream>)> = HashMap::new();
    let mut connections = JoinSet::new();
    while let Some(stream) = session.accept().await {
        let request = stream.headers.get("requestid").unwrap_or_default().to_string();
        let pair = waiting.entry(request.clone()).or_default();
        match stream.headers.get("streamtype") {
            Some("data") => pair.0 = Some(stream),
            Some("error") => pair.1 = Some(stream),
            _ => {
                let _ = stream.writer.close().await;
                continue;
            }
        }
        if pair.0.is_some() && pair.1.is_some()
            && let Some((Some(data), Some(error))) = waiting.remove(&request)
        {
            connections.spawn(forward(netns.clone(), data, error));
        }
    }
    // The client has gone: so have its connections.
    connections.abort_all();
    session.close().await;
    Ok(())
}

async fn forward(netns: PathBuf, mut data: Stream, error: Stream) {
    // Success closes the data stream when the pod's side ends.
    if let Err(e) = copy(netns, &mut data).await {
        let _ = error.writer.write(e.to_string().as_bytes()).await;
        let _ = data.writer.close().await;
    }
    let _ = error.writer.close().await;
}

/// Shuttles the data stream to and from the pod's port until both sides are done.
async fn copy(netns: PathBuf, data: &mut Stream) -> Result<(), Error> {
    let port = data.headers.get("port").and_then(|p| p.parse::<u16>().ok()).filter(|p| *p > 0);
    let port = port.ok_or_else(|| Error::Protocol(format!("bad port header {:?}", data.headers.get("port"))))?;
    let conn = tokio::task::spawn_blocking(move || connect_in(netns, vec![port]))
        .await
        .map_err(|e| Error::Protocol(e.to_string()))??
        .pop()
        .expect("one port, one connection")?;
    conn.set_nonblocking(true).map_err(Error::Io)?;
    let (mut from_pod, mut to_pod) = tokio::net::TcpStream::from_std(conn).map_err(Error::Io)?.into_split();
    let writer = data.writer.clone();
    let outward = async move {
        let mut buf = vec![0u8; 32 * 1024];
        while let Ok(n) = from_pod.read(&mut buf).await {
            if n == 0 || writer.write(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = writer.close().await;
    };
    let inward = async {
        while let Some(chunk) = data.read().await {
            if to_pod.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to_pod.shutdown().await;
        // The client is done sending; the pod may still answer.
        std::future::pending::<()>().await
    };
    // The connection is over when the pod's side ends, as the client waits for the error
    // stream to close before it ends its own side.
    tokio::select! {
        () = outward => {}
        () = inward => {}
    }
    Ok(())
}
