//! A SPDY/3.1 session over one connection: a reader task that decodes frames and routes
//! them to streams, a writer task that encodes and sends frames in order. Either end can
//! open streams (the client odd ids, the server even ones); every stream the peer opens is
//! answered at once with a SYN_REPLY and handed out by `accept`.
//!
//! Flow control is minimal: received data is acknowledged with WINDOW_UPDATEs (for the
//! stream and the session) as it arrives, so a peer that honours windows keeps sending; the
//! peer's windows are not enforced on what we send (spdystream, the Kubernetes client,
//! sends no WINDOW_UPDATEs of its own).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::Error;
use super::frame::Frame;
use super::header_block::{Compressor, Decompressor, Headers};

/// Our largest data frame.
const CHUNK: usize = 32 * 1024;

/// After our GOAWAY: how long the peer has to close its side before we drop the connection.
const LINGER: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

enum Out {
    Frame(Frame),
    Close,
}

/// Where the reader delivers each open stream's data, and who waits for a SYN_REPLY.
#[derive(Default)]
struct Routes {
    data: HashMap<u32, mpsc::UnboundedSender<Vec<u8>>>,
    replies: HashMap<u32, oneshot::Sender<()>>,
}

pub struct Session {
    out: mpsc::Sender<Out>,
    accepted: mpsc::UnboundedReceiver<Stream>,
    routes: Arc<Mutex<Routes>>,
    next_id: u32,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

/// One stream: its headers, the peer's data until its FIN, and our half.
pub struct Stream {
    pub id: u32,
    pub headers: Headers,
    incoming: mpsc::UnboundedReceiver<Vec<u8>>,
    pub writer: StreamWriter,
}

impl Stream {
    /// The peer's next data; `None` after its FIN (or a reset, or the session's end).
    pub async fn read(&mut self) -> Option<Vec<u8>> {
        self.incoming.recv().await
    }
}

/// Our half of a stream; cheap to clone.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    out: mpsc::Sender<Out>,
}

impl StreamWriter {
    pub async fn write(&self, data: &[u8]) -> Result<(), Error> {
        for chunk in data.chunks(CHUNK) {
            self.send(Frame::Data { stream: self.id, fin: false, data: chunk.to_vec() }).await?;
        }
        Ok(())
    }

    /// Ends our half (FIN).
    pub async fn close(&self) -> Result<(), Error> {
        self.send(Frame::Data { stream: self.id, fin: true, data: Vec::new() }).await
    }

    async fn send(&self, frame: Frame) -> Result<(), Error> {
        self.out.send(Out::Frame(frame)).await.map_err(|_| Error::Closed)
    }
}

impl Session {
    pub fn new<T: AsyncRead + AsyncWrite + Send + 'static>(io: T, role: Role) -> Session {
        let (r, w) = tokio::io::split(io);
        let (out, queued) = mpsc::channel(64);
        let (accept, accepted) = mpsc::unbounded_channel();
        let routes = Arc::new(Mutex::new(Routes::default()));
        let reader = tokio::spawn(read_loop(r, role, routes.clone(), out.clone(), accept));
        let writer = tokio::spawn(write_loop(w, queued));
        let next_id = match role {
            Role::Client => 1,
            Role::Server => 2,
        };
        Session { out, accepted, routes, next_id, reader, writer }
    }

    /// The next stream the peer opened; `None` once the peer has gone.
    pub async fn accept(&mut self) -> Option<Stream> {
        self.accepted.recv().await
    }

    /// Opens a stream and waits for the peer's SYN_REPLY.
    pub async fn open(&mut self, headers: Headers) -> Result<Stream, Error> {
        let id = self.next_id;
        self.next_id += 2;
        let (tx, incoming) = mpsc::unbounded_channel();
        let (replied, reply) = oneshot::channel();
        {
            let mut routes = self.routes.lock().expect("routes lock");
            routes.data.insert(id, tx);
            routes.replies.insert(id, replied);
        }
        let frame = Frame::SynStream { stream: id, associated: 0, priority: 0, fin: false, unidirectional: false, headers: headers.clone() };
        self.out.send(Out::Frame(frame)).await.map_err(|_| Error::Closed)?;
        reply.await.map_err(|_| Error::Protocol(format!("stream {id} was refused")))?;
        Ok(Stream { id, headers, incoming, writer: StreamWriter { id, out: self.out.clone() } })
    }

    /// Sends what is queued, a GOAWAY and our end of the connection; then reads (and drops)
    /// what the peer still sends until it closes too or says GOAWAY, for at most [`LINGER`].
    /// A socket closed with the peer's frames unread is reset, and a reset can cut what we
    /// sent last (the exit status) on its way through a proxy.
    pub async fn close(mut self) {
        let _ = self.out.send(Out::Frame(Frame::GoAway { last_stream: 0, status: 0 })).await;
        let _ = self.out.send(Out::Close).await;
        let _ = (&mut self.writer).await;
        let _ = tokio::time::timeout(LINGER, &mut self.reader).await;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

async fn write_loop(mut w: impl AsyncWrite + Unpin, mut queued: mpsc::Receiver<Out>) {
    let mut z = Compressor::new();
    while let Some(Out::Frame(frame)) = queued.recv().await {
        let Ok(bytes) = frame.encode(&mut z) else { break };
        if w.write_all(&bytes).await.is_err() {
            break;
        }
    }
    let _ = w.shutdown().await;
}

async fn read_loop(mut r: impl AsyncRead + Unpin, role: Role, routes: Arc<Mutex<Routes>>, out: mpsc::Sender<Out>, accept: mpsc::UnboundedSender<Stream>) {
    let mut z = Decompressor::new();
    // Pings the peer started carry its parity (a client's are odd); ours are never echoed back.
    let peer_parity = match role {
        Role::Client => 0,
        Role::Server => 1,
    };
    let send = |f: Frame| out.send(Out::Frame(f));
    while let Ok(Some(frame)) = Frame::read(&mut r, &mut z).await {
        match frame {
            Frame::SynStream { stream, fin, headers, .. } => {
                let (tx, incoming) = mpsc::unbounded_channel();
                if !fin {
                    routes.lock().expect("routes lock").data.insert(stream, tx);
                }
                if send(Frame::SynReply { stream, fin: false, headers: Headers::default() }).await.is_err() {
                    break;
                }
                let _ = accept.send(Stream { id: stream, headers, incoming, writer: StreamWriter { id: stream, out: out.clone() } });
            }
            Frame::SynReply { stream, .. } => {
                if let Some(replied) = routes.lock().expect("routes lock").replies.remove(&stream) {
                    let _ = replied.send(());
                }
            }
            Frame::Data { stream, fin, data } => {
                let len = data.len() as u32;
                {
                    let mut routes = routes.lock().expect("routes lock");
                    if len > 0
                        && let Some(tx) = routes.data.get(&stream)
                    {
                        let _ = tx.send(data);
                    }
                    if fin {
                        routes.data.remove(&stream);
                    }
                }
                if len > 0 {
                    let _ = send(Frame::WindowUpdate { stream, delta: len }).await;
                    let _ = send(Frame::WindowUpdate { stream: 0, delta: len }).await;
                }
            }
            Frame::RstStream { stream, .. } => {
                let mut routes = routes.lock().expect("routes lock");
                routes.data.remove(&stream);
                routes.replies.remove(&stream);
            }
            Frame::Ping { id } if id % 2 == peer_parity => {
                let _ = send(Frame::Ping { id }).await;
            }
            Frame::GoAway { .. } => break,
            // Settings, window updates, trailing headers and our pings' echoes need nothing.
            _ => {}
        }
    }
    // Every stream ends with the session.
    let mut routes = routes.lock().expect("routes lock");
    routes.data.clear();
    routes.replies.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn streams_carry_data_both_ways_and_end_with_fin() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut client = Session::new(a, Role::Client);
        let mut server = Session::new(b, Role::Server);
        let opened = tokio::spawn(async move {
            let mut s = client.open(Headers::new(&[("streamType", "stdin")])).await.unwrap();
            s.writer.write(b"ping").await.unwrap();
            s.writer.close().await.unwrap();
            let mut got = Vec::new();
            while let Some(d) = s.read().await {
                got.extend(d);
            }
            (got, client)
        });
        let mut s = server.accept().await.unwrap();
        assert_eq!((s.id, s.headers.get("streamtype")), (1, Some("stdin")));
        assert_eq!(s.read().await.unwrap(), b"ping");
        assert_eq!(s.read().await, None);
        s.writer.write(&vec![7u8; 100_000]).await.unwrap();
        s.writer.close().await.unwrap();
        let (got, client) = opened.await.unwrap();
        assert_eq!(got, vec![7u8; 100_000]);
        // Each side's GOAWAY ends the other's reading, so both closes return at once.
        let server_closed = async {
            assert!(server.accept().await.is_none());
            server.close().await;
        };
        tokio::time::timeout(Duration::from_secs(2), async { tokio::join!(client.close(), server_closed) }).await.expect("both sides closed");
    }

    /// Closing waits for the peer to close its side, reading what it still sends, so the
    /// connection ends with FINs, not a reset that could cut our last frames.
    #[tokio::test]
    async fn close_reads_until_the_peer_closes_its_side() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut peer = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let server = Session::new(listener.accept().await.unwrap().0, Role::Server);
        let closing = tokio::spawn(server.close());
        let mut z = Decompressor::new();
        assert!(matches!(Frame::read(&mut peer, &mut z).await.unwrap(), Some(Frame::GoAway { .. })));
        assert_eq!(Frame::read(&mut peer, &mut z).await.unwrap(), None, "our end follows the GOAWAY");
        // The peer has not closed its side, so the server must still be reading: what the
        // peer sends now would otherwise arrive at a closed socket.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!closing.is_finished(), "closed before the peer closed its side");
        let mut c = Compressor::new();
        peer.write_all(&Frame::Ping { id: 1 }.encode(&mut c).unwrap()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        peer.shutdown().await.unwrap();
        tokio::time::timeout(Duration::from_secs(2), closing).await.expect("closed once the peer did").unwrap();
        let mut rest = Vec::new();
        assert_eq!(peer.read_to_end(&mut rest).await.unwrap(), 0, "the connection ended cleanly, not reset");
    }

    #[tokio::test]
    async fn pings_are_answered() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let _server = Session::new(b, Role::Server);
        let (mut r, mut w) = tokio::io::split(a);
        let mut c = Compressor::new();
        w.write_all(&Frame::Ping { id: 1 }.encode(&mut c).unwrap()).await.unwrap();
        let mut z = Decompressor::new();
        assert_eq!(Frame::read(&mut r, &mut z).await.unwrap(), Some(Frame::Ping { id: 1 }));
    }
}
