//! The DNS server: UDP and TCP on one address, each query answered from the current
//! [`Records`] (swapped through a watch channel while serving) or forwarded upstream.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::answer::{Answer, Reply};
use super::bind;
use super::{DnsError, Records, Upstreams};

/// The UDP payload size we advertise in EDNS and the most we send to a client asking more
/// (1232: the DNS flag day 2020 size that avoids IP fragmentation).
const EDNS_PAYLOAD: u16 = 1232;
/// A TCP client idle this long is disconnected.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Queries past this many in flight (slow upstreams under a flood) are dropped; the
/// clients retry. Bounds memory, not throughput: local answers finish at once.
const MAX_UDP_IN_FLIGHT: usize = 2048;
/// TCP connections past this many are closed at once.
const MAX_TCP_CONNECTIONS: usize = 256;

/// Sockets bound and ready to serve; bind first to learn the address (port 0 in tests).
pub struct DnsServer {
    udp: UdpSocket,
    tcp: TcpListener,
    local: SocketAddr,
}

impl DnsServer {
    /// Binds UDP and TCP on `listen`. With port 0 both get the same free port.
    pub async fn bind(listen: SocketAddr) -> Result<Self, DnsError> {
        Self::bind_with(listen, false).await
    }

    /// As [`DnsServer::bind`], but `listen`'s address need not be on the node yet
    /// (IP_FREEBIND): queries arrive once it is configured.
    pub async fn bind_nonlocal(listen: SocketAddr) -> Result<Self, DnsError> {
        Self::bind_with(listen, true).await
    }

    async fn bind_with(listen: SocketAddr, nonlocal: bool) -> Result<Self, DnsError> {
        let bind_err = |proto, addr, source| DnsError::Bind { proto, addr, source };
        // With port 0 the UDP port the kernel picks may be taken for TCP: pick again.
        let attempts = if listen.port() == 0 { 20 } else { 1 };
        let mut last = None;
        for _ in 0..attempts {
            let udp = if nonlocal { bind::udp(listen) } else { UdpSocket::bind(listen).await }.map_err(|e| bind_err("UDP", listen, e))?;
            let local = udp.local_addr().map_err(|e| bind_err("UDP", listen, e))?;
            match if nonlocal { bind::tcp(local) } else { TcpListener::bind(local).await } {
                Ok(tcp) => return Ok(Self { udp, tcp, local }),
                Err(e) => last = Some(bind_err("TCP", local, e)),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    /// The bound address (UDP and TCP share it).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Serves until `shutdown` completes (then returns Ok) or a socket fails.
    pub async fn serve(
        self,
        records: watch::Receiver<Arc<Records>>,
        upstream: Upstreams,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), DnsError> {
        let handler = Arc::new(Handler { records, upstream });
        let local = self.local;
        tracing::info!(%local, zone = %handler.records.borrow().zone().apex(), "cluster DNS serving");
        tokio::select! {
            result = serve_udp(self.udp, local, handler.clone()) => result,
            result = serve_tcp(self.tcp, local, handler) => result,
            () = shutdown => Ok(()),
        }
    }
}

/// Binds `listen` and serves until `shutdown`.
pub async fn serve(
    listen: SocketAddr,
    records: watch::Receiver<Arc<Records>>,
    upstream: Upstreams,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DnsError> {
    DnsServer::bind(listen).await?.serve(records, upstream, shutdown).await
}

struct Handler {
    records: watch::Receiver<Arc<Records>>,
    upstream: Upstreams,
}

async fn serve_udp(socket: UdpSocket, local: SocketAddr, handler: Arc<Handler>) -> Result<(), DnsError> {
    let socket = Arc::new(socket);
    // Queries in flight die with the server (dropping the set aborts them).
    let mut in_flight = JoinSet::new();
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            // A previous send's ICMP error can surface here; it concerns that client only.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused || e.kind() == std::io::ErrorKind::ConnectionReset => continue,
            Err(source) => return Err(DnsError::Socket { proto: "UDP", addr: local, source }),
        };
        while in_flight.try_join_next().is_some() {}
        if in_flight.len() >= MAX_UDP_IN_FLIGHT {
            tracing::debug!(%peer, "cluster DNS: too many queries in flight; dropped");
            continue;
        }
        let query = buf[..n].to_vec();
        let (socket, handler) = (socket.clone(), handler.clone());
        in_flight.spawn(async move {
            if let Some(reply) = handler.handle(&query, false).await
                && let Err(e) = socket.send_to(&reply, peer).await
            {
                tracing::debug!(%peer, error = %e, "cluster DNS: cannot send UDP reply");
            }
        });
    }
}

async fn serve_tcp(listener: TcpListener, local: SocketAddr, handler: Arc<Handler>) -> Result<(), DnsError> {
    let mut connections = JoinSet::new();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) if is_per_connection(&e) => {
                tracing::debug!(error = %e, "cluster DNS: TCP accept failed");
                continue;
            }
            Err(source) => return Err(DnsError::Socket { proto: "TCP", addr: local, source }),
        };
        while connections.try_join_next().is_some() {}
        if connections.len() >= MAX_TCP_CONNECTIONS {
            tracing::debug!(%peer, "cluster DNS: too many TCP connections; closed");
            continue;
        }
        let handler = handler.clone();
        connections.spawn(async move {
            if let Err(e) = serve_connection(stream, &handler).await {
                tracing::debug!(%peer, error = %e, "cluster DNS: TCP connection ended");
            }
        });
    }
}

/// Accept errors that concern one connection (or a passing shortage), not the listener.
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted | WouldBlock) || matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

/// Length-prefixed queries, answered in order, until the client closes or idles.
async fn serve_connection(mut stream: TcpStream, handler: &Handler) -> std::io::Result<()> {
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Ok(Ok(len)) => len,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        };
        let mut query = vec![0u8; usize::from(len)];
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut query)).await.map_err(|_| std::io::ErrorKind::TimedOut)??;
        let Some(reply) = handler.handle(&query, true).await else { continue };
        let Ok(reply_len) = u16::try_from(reply.len()) else { continue };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&reply_len.to_be_bytes());
        framed.extend_from_slice(&reply);
        stream.write_all(&framed).await?;
    }
}

impl Handler {
    /// The reply to one query message; `None` when nothing should be sent (a response, or
    /// bytes too short to carry an id).
    async fn handle(&self, query: &[u8], tcp: bool) -> Option<Vec<u8>> {
        let request = match Message::from_vec(query) {
            Ok(request) => request,
            Err(e) => {
                tracing::debug!(error = %e, "cluster DNS: malformed query");
                return format_error(query);
            }
        };
        if request.metadata.message_type != MessageType::Query {
            return None;
        }
        if request.metadata.op_code != OpCode::Query {
            return encode(&request, error_reply(ResponseCode::NotImp), tcp);
        }
        let [question] = request.queries.as_slice() else {
            return encode(&request, error_reply(ResponseCode::FormErr), tcp);
        };
        // One snapshot per query: a swap mid-query cannot mix two versions.
        let records = self.records.borrow().clone();
        match records.answer(question) {
            Answer::Forward => match self.upstream.exchange(query, tcp).await {
                Ok(reply) => Some(reply),
                Err(e) => {
                    tracing::debug!(name = %question.name(), error = %e, "cluster DNS: no upstream answered");
                    encode(&request, error_reply(ResponseCode::ServFail), tcp)
                }
            },
            Answer::Local(mut reply) => {
                if let Some(target) = reply.chase.take() {
                    self.chase(&mut reply, &target, question.query_type()).await;
                }
                encode(&request, reply, tcp)
            }
        }
    }

    /// Completes a CNAME out of the zone with the upstream's answer for its target.
    async fn chase(&self, reply: &mut Reply, target: &hickory_proto::rr::Name, qtype: hickory_proto::rr::RecordType) {
        match self.upstream.resolve(target, qtype).await {
            Ok(upstream) => {
                reply.rcode = upstream.metadata.response_code;
                reply.answers.extend(upstream.answers);
            }
            Err(e) => tracing::debug!(%target, error = %e, "cluster DNS: cannot resolve CNAME target upstream"),
        }
    }
}

fn error_reply(rcode: ResponseCode) -> Reply {
    Reply { rcode, authoritative: false, answers: Vec::new(), authorities: Vec::new(), additionals: Vec::new(), chase: None }
}

/// FORMERR for a message we could not parse, when it has a query header to reply to.
fn format_error(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None;
    }
    Message::error_msg(u16::from_be_bytes([query[0], query[1]]), OpCode::Query, ResponseCode::FormErr).to_vec().ok()
}

/// The reply message, fitted to the client's UDP size: additionals are dropped first (they
/// are optional), then everything but the question with TC set, so the client retries over TCP.
fn encode(request: &Message, reply: Reply, tcp: bool) -> Option<Vec<u8>> {
    let mut message = Message::response(request.metadata.id, request.metadata.op_code);
    message.metadata.recursion_desired = request.metadata.recursion_desired;
    message.metadata.recursion_available = true;
    message.metadata.authoritative = reply.authoritative;
    message.metadata.response_code = reply.rcode;
    message.add_queries(request.queries.iter().cloned());
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        message.set_edns(edns);
    }
    message.answers = reply.answers;
    message.authorities = reply.authorities;
    message.additionals = reply.additionals;
    let limit = if tcp { usize::from(u16::MAX) } else { usize::from(request.max_payload().min(EDNS_PAYLOAD)) };
    let encoded = |message: &Message| match message.to_vec() {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            tracing::warn!(error = %e, "cluster DNS: cannot encode reply");
            None
        }
    };
    let bytes = encoded(&message)?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    message.additionals.clear();
    let bytes = encoded(&message)?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    message.answers.clear();
    message.authorities.clear();
    message.metadata.truncation = true;
    encoded(&message)
}
