//! A port-forward session: for each requested port, a TCP connection to 127.0.0.1:<port>
//! made inside the pod's network namespace, and a pair of channels (data 2i, error 2i+1)
//! whose first message from us carries the port, two bytes little-endian.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::StreamExt;
use nix::sched::CloneFlags;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;

use super::channel::{self, Outgoing};
use super::{Error, io};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The `ports` query: comma-separated, each 1-65535, at least one.
pub fn parse_ports(query: &str) -> Result<Vec<u16>, Error> {
    let ports: Vec<u16> = query
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| p.trim().parse::<u16>().ok().filter(|&n| n > 0).ok_or_else(|| Error::BadRequest(format!("port {p:?} is not 1-65535"))))
        .collect::<Result<_, _>>()?;
    if ports.is_empty() {
        return Err(Error::BadRequest("the ports query names no port".into()));
    }
    Ok(ports)
}

/// Connects to each port on the pod's localhost. The sockets are made on a thread of its
/// own that joins the pod's network namespace and then ends: a socket stays in the
/// namespace it was made in, and no other thread of ours changes namespace.
pub(super) fn connect_in(netns: PathBuf, ports: Vec<u16>) -> Result<Vec<Result<TcpStream, Error>>, Error> {
    let ns = File::open(&netns).map_err(io(format!("opening {}", netns.display())))?;
    std::thread::spawn(move || {
        nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| Error::Io { what: format!("joining {}", netns.display()), source: e.into() })?;
        Ok(ports
            .into_iter()
            .map(|port| {
                let to = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
                TcpStream::connect_timeout(&to, CONNECT_TIMEOUT).map_err(|source| Error::Connect { port, source })
            })
            .collect())
    })
    .join()
    .map_err(|_| Error::BadRequest("the namespace thread panicked".into()))?
}

pub async fn run(socket: WebSocket, netns: PathBuf, ports: Vec<u16>) -> Result<(), Error> {
    let (sink, mut incoming) = socket.split();
    let (out, writer) = channel::spawn_writer(sink);
    let wanted = ports.clone();
    let connections = tokio::task::spawn_blocking(move || connect_in(netns, wanted)).await.map_err(|e| Error::BadRequest(e.to_string()))??;

    let mut writers: Vec<Option<OwnedWriteHalf>> = Vec::new();
    let mut readers = Vec::new();
    for (i, (port, conn)) in ports.iter().zip(connections).enumerate() {
        let (data, error) = ((2 * i) as u8, (2 * i + 1) as u8);
        let prefix = port.to_le_bytes();
        let _ = out.send(channel::binary(data, &prefix)).await;
        let _ = out.send(channel::binary(error, &prefix)).await;
        let stream = conn.and_then(|s| {
            s.set_nonblocking(true).map_err(io("setting the connection non-blocking"))?;
            tokio::net::TcpStream::from_std(s).map_err(io("registering the connection"))
        });
        match stream {
            Ok(s) => {
                let (r, w) = s.into_split();
                readers.push(tokio::spawn(copy_out(r, data, out.clone())));
                writers.push(Some(w));
            }
            Err(e) => {
                let _ = out.send(channel::binary(error, e.to_string().as_bytes())).await;
                writers.push(None);
            }
        }
    }
    drop(out);
    let aborts: Vec<_> = readers.iter().map(|r| r.abort_handle()).collect();
    let all_read = futures_util::future::join_all(readers);
    let client = async {
        while let Some(Ok(message)) = incoming.next().await {
            let data = match message {
                Message::Binary(b) => b,
                Message::Close(_) => break,
                _ => continue,
            };
            let Some((&channel, payload)) = data.split_first() else { continue };
            // Data channels are even; the client writes nothing we act on to error channels.
            let slot = (channel % 2 == 0).then(|| writers.get_mut(channel as usize / 2)).flatten();
            if let Some(w @ Some(_)) = slot
                && w.as_mut().expect("matched Some").write_all(payload).await.is_err()
            {
                *w = None;
            }
        }
    };
    // The session ends when the client leaves or every connection has been closed by the pod.
    tokio::select! {
        _ = all_read => {}
        () = client => {}
    }
    // Readers still copying hold the queue open; the socket closes once they are gone.
    aborts.iter().for_each(|a| a.abort());
    let _ = writer.await;
    Ok(())
}

async fn copy_out(mut from: tokio::net::tcp::OwnedReadHalf, channel: u8, out: Outgoing) {
    let mut buf = vec![0u8; 32 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 || out.send(channel::binary(channel, &buf[..n])).await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_checked() {
        assert_eq!(parse_ports("80").unwrap(), vec![80]);
        assert_eq!(parse_ports("80,8080").unwrap(), vec![80, 8080]);
        assert!(parse_ports("").is_err());
        assert!(parse_ports("0").is_err());
        assert!(parse_ports("http").is_err());
        assert!(parse_ports("70000").is_err());
    }
}
