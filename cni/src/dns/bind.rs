//! Sockets for an address the node may not have yet: IP_FREEBIND lets the server bind, say,
//! the CNI bridge's gateway before the first pod creates the bridge, or a dedicated DNS
//! address on a dummy interface set up later (as NodeLocal DNSCache does).

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage};

fn freebind_socket(addr: SocketAddr, ty: SockType) -> std::io::Result<OwnedFd> {
    let family = if addr.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    let fd = socket(family, ty, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::IpFreebind, &true)?;
    if ty == SockType::Stream {
        // As tokio's own TcpListener::bind: restarts are not blocked by TIME_WAIT.
        setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    }
    bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    Ok(fd)
}

/// A UDP socket bound to `addr` whether or not the address is configured yet.
pub(crate) fn udp(addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    let fd = freebind_socket(addr, SockType::Datagram)?;
    tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(fd))
}

/// A listening TCP socket bound to `addr` whether or not the address is configured yet.
pub(crate) fn tcp(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let fd = freebind_socket(addr, SockType::Stream)?;
    listen(&fd, Backlog::new(1024).map_err(std::io::Error::from)?)?;
    tokio::net::TcpListener::from_std(std::net::TcpListener::from(fd))
}
