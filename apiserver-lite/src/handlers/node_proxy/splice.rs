//! Two upgraded connections joined byte for byte, as a proxy relays an exec, attach or
//! port-forward session (this server to a kubelet; the kubelet to its runtime's streaming
//! server).
//!
//! Each direction runs on its own. One that ends, at its sender's end of stream or at an
//! error, shuts the writing half it fed, and the other direction goes on delivering what is
//! in flight. `tokio::io::copy_bidirectional` stops both at the first error: when one side
//! resets its connection (a server that closes while the client's last frame is unread), the
//! session's final bytes in the other direction (an exec's exit status) were lost, and the
//! client saw its connection cut.

use std::time::Duration;

use futures_util::future::{Either, select};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// How a joined session ended: what each direction carried, or why it stopped.
#[derive(Debug)]
pub struct Spliced {
    pub a_to_b: std::io::Result<u64>,
    pub b_to_a: std::io::Result<u64>,
}

impl Spliced {
    /// The first error of either direction, for a log line.
    pub fn error(&self) -> Option<&std::io::Error> {
        self.a_to_b.as_ref().err().or(self.b_to_a.as_ref().err())
    }
}

/// Copy `a` to `b` and `b` to `a` until both directions have ended. Once the first has
/// ended, the other gets `grace` to finish (a peer that neither sends nor closes would
/// otherwise hold the session forever); it is then cut, with a `TimedOut` error.
pub async fn join<A, B>(a: A, b: B, grace: Duration) -> Spliced
where
    A: AsyncRead + AsyncWrite + Send,
    B: AsyncRead + AsyncWrite + Send,
{
    let (mut a_read, mut a_write) = tokio::io::split(a);
    let (mut b_read, mut b_write) = tokio::io::split(b);
    let forward = Box::pin(async move {
        let copied = tokio::io::copy(&mut a_read, &mut b_write).await;
        let _ = b_write.shutdown().await;
        copied
    });
    let backward = Box::pin(async move {
        let copied = tokio::io::copy(&mut b_read, &mut a_write).await;
        let _ = a_write.shutdown().await;
        copied
    });
    let cut = || Err(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("the other direction ended and this one did not within {}s", grace.as_secs())));
    match select(forward, backward).await {
        Either::Left((a_to_b, backward)) => Spliced { a_to_b, b_to_a: tokio::time::timeout(grace, backward).await.unwrap_or_else(|_| cut()) },
        Either::Right((b_to_a, forward)) => Spliced { a_to_b: tokio::time::timeout(grace, forward).await.unwrap_or_else(|_| cut()), b_to_a },
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::{AsyncReadExt, ReadBuf};

    use super::*;

    /// A peer that has reset its connection: every write fails, and what it had sent
    /// before (`tail`) is still read, after the first write was tried, then the end.
    struct Reset {
        tail: Vec<u8>,
        written_to: bool,
    }

    impl AsyncRead for Reset {
        fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
            if !self.written_to {
                // Woken by the failed write below.
                return Poll::Pending;
            }
            let n = self.tail.len().min(buf.remaining());
            let rest = self.tail.split_off(n);
            buf.put_slice(&self.tail);
            self.tail = rest;
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Reset {
        fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, _: &[u8]) -> Poll<std::io::Result<usize>> {
            self.written_to = true;
            cx.waker().wake_by_ref();
            Poll::Ready(Err(std::io::ErrorKind::ConnectionReset.into()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn the_last_bytes_arrive_though_the_other_way_was_reset() {
        let (mut client, proxy_side) = tokio::io::duplex(1024);
        let server = Reset { tail: b"exit status".to_vec(), written_to: false };
        let joined = tokio::spawn(join(proxy_side, server, Duration::from_secs(5)));
        // The client's close frame meets the reset; the server's status must still come.
        client.write_all(b"close").await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"exit status");
        let spliced = joined.await.unwrap();
        assert_eq!(spliced.a_to_b.unwrap_err().kind(), std::io::ErrorKind::ConnectionReset);
        assert_eq!(spliced.b_to_a.unwrap(), 11);
    }

    #[tokio::test]
    async fn each_end_is_passed_on_and_both_ways_carry_data() {
        let (mut client, a) = tokio::io::duplex(1024);
        let (b, mut server) = tokio::io::duplex(1024);
        let joined = tokio::spawn(join(a, b, Duration::from_secs(5)));
        client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        // The server ends its side; the client still has its say, then ends too.
        server.write_all(b"pong").await.unwrap();
        server.shutdown().await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"pong");
        client.write_all(b"bye").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"bye");
        let spliced = joined.await.unwrap();
        assert_eq!((spliced.a_to_b.unwrap(), spliced.b_to_a.unwrap()), (7, 4));
    }

    #[tokio::test]
    async fn a_peer_that_never_ends_is_cut_after_the_grace() {
        let (mut client, a) = tokio::io::duplex(1024);
        let (b, server) = tokio::io::duplex(1024);
        let joined = tokio::spawn(join(a, b, Duration::from_millis(100)));
        drop(server);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        // The client neither writes nor closes.
        let spliced = joined.await.unwrap();
        assert_eq!(spliced.a_to_b.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
        drop(client);
    }
}
