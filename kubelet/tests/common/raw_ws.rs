//! A WebSocket client read frame by frame off the TCP stream, with no library between that
//! would answer the server's close frame on its own: the tests of the streaming server's
//! closing handshake (exec in `cri_streaming.rs`, attach in `cri_attach.rs`).

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::in_ns;

pub struct RawWs {
    tcp: tokio::net::TcpStream,
    buffered: Vec<u8>,
}

impl RawWs {
    /// Connects to `url` (http://127.0.0.1:<port>/...) from inside the node namespace `node`,
    /// offering `protocol`, and completes the upgrade.
    pub async fn connect(node: &Path, url: &str, protocol: &str) -> RawWs {
        let addr: std::net::SocketAddr = url.trim_start_matches("http://").split('/').next().unwrap().parse().unwrap();
        let tcp = in_ns(node, move || std::net::TcpStream::connect(addr)).unwrap();
        tcp.set_nonblocking(true).unwrap();
        let mut tcp = tokio::net::TcpStream::from_std(tcp).unwrap();
        let path = url.splitn(4, '/').nth(3).unwrap();
        let request = format!(
            "GET /{path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut raw = RawWs { tcp, buffered: Vec::new() };
        let end = loop {
            if let Some(i) = raw.buffered.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(raw.fill().await > 0, "the connection ended during the handshake");
        };
        let head = String::from_utf8_lossy(&raw.buffered[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        raw.buffered.drain(..end);
        raw
    }

    /// The server's frames (opcode, payload) up to its close frame, each within 20 s.
    pub async fn frames_until_close(&mut self) -> Vec<(u8, Vec<u8>)> {
        let mut frames = Vec::new();
        while frames.last().map(|(op, _)| *op) != Some(8) {
            frames.push(tokio::time::timeout(Duration::from_secs(20), self.frame()).await.expect("the session's frames"));
        }
        frames
    }

    /// After the server's close frame, the closing handshake: the server must keep the
    /// connection open while our close frame is held back (500 ms here), and close it within
    /// 5 s of our answer. Closed with the client's frame unread, the connection was reset, and
    /// a proxy between (the kubelet's, the API server's) then lost the session's last bytes.
    pub async fn closing_handshake(mut self) {
        let mut more = [0u8; 64];
        let early = tokio::time::timeout(Duration::from_millis(500), self.tcp.read(&mut more)).await;
        assert!(early.is_err(), "the server closed before the client answered its close frame: {early:?}");
        self.close().await;
        let end = tokio::time::timeout(Duration::from_secs(5), self.tcp.read(&mut more)).await;
        assert!(matches!(end, Ok(Ok(0))), "the server did not close after the client's close frame: {end:?}");
    }

    async fn fill(&mut self) -> usize {
        let mut buf = [0u8; 4096];
        let n = self.tcp.read(&mut buf).await.unwrap();
        self.buffered.extend_from_slice(&buf[..n]);
        n
    }

    /// The next frame's opcode and payload (the server's frames are unmasked).
    pub async fn frame(&mut self) -> (u8, Vec<u8>) {
        loop {
            if let [b0, b1, rest @ ..] = self.buffered.as_slice() {
                let (len, header) = match b1 & 0x7f {
                    126 if rest.len() >= 2 => (u16::from_be_bytes([rest[0], rest[1]]) as usize, 4),
                    126 | 127 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                if len != usize::MAX && self.buffered.len() >= header + len {
                    let opcode = b0 & 0x0f;
                    let payload = self.buffered[header..header + len].to_vec();
                    self.buffered.drain(..header + len);
                    return (opcode, payload);
                }
            }
            assert!(self.fill().await > 0, "the connection ended inside a frame");
        }
    }

    /// Our close frame, status 1000, masked as a client's must be.
    async fn close(&mut self) {
        let mask = [1u8, 2, 3, 4];
        let payload = [0x03u8, 0xe8];
        let mut frame = vec![0x88, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.tcp.write_all(&frame).await.unwrap();
    }
}
