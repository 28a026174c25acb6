//! Forwarding to the node's resolvers: each is tried in order with a short timeout; the first
//! reply is relayed as it is. UDP first, TCP when the client asked over TCP and the UDP
//! reply was truncated.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::resolv_conf::nameservers;
use super::DnsError;

/// How long one upstream gets before the next is tried (a client's own timeout is 5 s).
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// The upstream resolvers, in the order they are tried.
#[derive(Debug, Clone)]
pub struct Upstreams {
    servers: Vec<SocketAddr>,
    timeout: Duration,
}

impl Upstreams {
    pub fn new(servers: Vec<SocketAddr>, timeout: Duration) -> Self {
        Self { servers, timeout }
    }

    /// The `nameserver` lines of a resolv.conf (the host's `/etc/resolv.conf`, or the
    /// kubelet's `resolvConf` setting).
    pub fn from_resolv_conf(path: &Path, timeout: Duration) -> Result<Self, DnsError> {
        let text = std::fs::read_to_string(path).map_err(|source| DnsError::ResolvConf { path: path.to_path_buf(), source })?;
        let servers = nameservers(&text);
        if servers.is_empty() {
            tracing::warn!(path = %path.display(), "cluster DNS: no nameserver in the resolv.conf; names outside the cluster will get SERVFAIL");
        }
        Ok(Self::new(servers, timeout))
    }

    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// Drops upstreams that are this server itself, which would forward in a loop (a host
    /// resolv.conf naming 127.0.0.1 while we listen on port 53 of all addresses).
    pub fn without(mut self, own: SocketAddr) -> Self {
        self.servers.retain(|server| {
            let is_self = server.port() == own.port() && (server.ip() == own.ip() || (own.ip().is_unspecified() && server.ip().is_loopback()));
            if is_self {
                tracing::warn!(%server, "cluster DNS: not forwarding to itself; upstream dropped");
            }
            !is_self
        });
        self
    }

    /// Sends a client's query (as received) to each upstream in turn and returns the first
    /// reply to it, unchanged. `tcp`: the client asked over TCP, so a truncated UDP reply is
    /// retried over TCP with the same upstream.
    pub async fn exchange(&self, query: &[u8], tcp: bool) -> Result<Vec<u8>, DnsError> {
        let mut last = DnsError::NoUpstream;
        for &server in &self.servers {
            match tokio::time::timeout(self.timeout, exchange_with(server, query, tcp)).await {
                Ok(Ok(reply)) => return Ok(reply),
                Ok(Err(e)) => last = e,
                Err(_) => last = DnsError::UpstreamTimeout { server, timeout: self.timeout },
            }
            tracing::debug!(error = %last, "cluster DNS: upstream failed, trying the next");
        }
        Err(last)
    }

    /// Resolves one name upstream (recursion desired), for a CNAME leaving the zone.
    pub async fn resolve(&self, name: &Name, qtype: RecordType) -> Result<Message, DnsError> {
        let mut query = Message::query();
        query.metadata.recursion_desired = true;
        query.add_query(Query::query(name.clone(), qtype));
        let reply = self.exchange(&query.to_vec()?, true).await?;
        Message::from_vec(&reply).map_err(|e| DnsError::UpstreamReply { server: self.servers[0], reason: e.to_string() })
    }
}

const TC_BIT: u8 = 0x02;
const QR_BIT: u8 = 0x80;

async fn exchange_with(server: SocketAddr, query: &[u8], tcp: bool) -> Result<Vec<u8>, DnsError> {
    let reply = exchange_udp(server, query).await?;
    if tcp && reply[2] & TC_BIT != 0 {
        return exchange_tcp(server, query).await;
    }
    Ok(reply)
}

/// One query over a fresh connected socket: a random source port per query, and only the
/// upstream's datagrams arrive on it.
async fn exchange_udp(server: SocketAddr, query: &[u8]) -> Result<Vec<u8>, DnsError> {
    let io = |source| DnsError::UpstreamIo { server, source };
    let local: SocketAddr = if server.is_ipv4() { (Ipv4Addr::UNSPECIFIED, 0).into() } else { (Ipv6Addr::UNSPECIFIED, 0).into() };
    let socket = UdpSocket::bind(local).await.map_err(io)?;
    socket.connect(server).await.map_err(io)?;
    socket.send(query).await.map_err(io)?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = socket.recv(&mut buf).await.map_err(io)?;
        // Stray or spoofed datagrams (wrong id, not a response) are ignored, not fatal.
        if n >= 12 && buf[..2] == query[..2] && buf[2] & QR_BIT != 0 {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn exchange_tcp(server: SocketAddr, query: &[u8]) -> Result<Vec<u8>, DnsError> {
    let io = |source| DnsError::UpstreamIo { server, source };
    let mut stream = TcpStream::connect(server).await.map_err(io)?;
    let len = u16::try_from(query.len()).map_err(|_| DnsError::UpstreamReply { server, reason: "query too long".into() })?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await.map_err(io)?;
    let len = stream.read_u16().await.map_err(io)?;
    let mut reply = vec![0u8; usize::from(len)];
    stream.read_exact(&mut reply).await.map_err(io)?;
    if reply.len() < 12 || reply[..2] != query[..2] {
        return Err(DnsError::UpstreamReply { server, reason: "reply does not match the query".into() });
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(upstreams: &Upstreams) -> Vec<String> {
        upstreams.servers().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn never_forwards_to_itself() {
        let servers = vec!["127.0.0.1:53".parse().unwrap(), "10.0.0.2:53".parse().unwrap(), "127.0.0.53:53".parse().unwrap()];
        let all = Upstreams::new(servers, DEFAULT_UPSTREAM_TIMEOUT);
        assert_eq!(addrs(&all.clone().without("0.0.0.0:53".parse().unwrap())), ["10.0.0.2:53"]);
        assert_eq!(addrs(&all.clone().without("127.0.0.1:53".parse().unwrap())), ["10.0.0.2:53", "127.0.0.53:53"]);
        assert_eq!(addrs(&all.without("0.0.0.0:5353".parse().unwrap())).len(), 3);
    }

    #[tokio::test]
    async fn no_upstream_is_an_error() {
        let none = Upstreams::new(Vec::new(), DEFAULT_UPSTREAM_TIMEOUT);
        assert!(matches!(none.exchange(&[0; 12], false).await, Err(DnsError::NoUpstream)));
    }
}
