//! A typed, message-preserving channel between the runtime and its children: a
//! `SOCK_SEQPACKET` socket pair carrying one JSON message per packet. Both ends are
//! close-on-exec, so a successful `execve` in the child reads as end-of-channel in the parent.

use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::message::{FromChild, FromParent};

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("sync channel: {0}")]
    Io(#[from] io::Error),
    #[error("sync channel: bad message: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("sync channel: a message of {0} bytes is larger than any the protocol sends")]
    TooLarge(usize),
    #[error("sync channel: the other side closed it")]
    Closed,
    #[error("sync channel: expected {expected}, got {got}")]
    Unexpected { expected: &'static str, got: String },
}

/// One end of the channel: sends `S`, receives `R`.
pub struct Channel<S, R> {
    fd: OwnedFd,
    _types: PhantomData<(S, R)>,
}

pub type ParentEnd = Channel<FromParent, FromChild>;
pub type ChildEnd = Channel<FromChild, FromParent>;

/// A connected pair: the parent's end and the child's end.
pub fn pair() -> Result<(ParentEnd, ChildEnd), ChannelError> {
    let (a, b) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
        .map_err(io::Error::from)?;
    Ok((Channel { fd: a, _types: PhantomData }, Channel { fd: b, _types: PhantomData }))
}

const MAX_MESSAGE: usize = 1 << 20;

impl<S: Serialize, R: DeserializeOwned + std::fmt::Debug> Channel<S, R> {
    pub fn send(&self, msg: &S) -> Result<(), ChannelError> {
        let buf = serde_json::to_vec(msg)?;
        nix::sys::socket::send(self.fd.as_raw_fd(), &buf, MsgFlags::MSG_NOSIGNAL).map_err(io::Error::from)?;
        Ok(())
    }

    /// The next message, or `None` when the other side closed its end.
    pub fn recv(&self) -> Result<Option<R>, ChannelError> {
        // Peek at the packet's length first, so the buffer is just as large as the message.
        let len = self.recv_into(&mut [], MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC)?;
        if len == 0 {
            return Ok(None);
        }
        if len > MAX_MESSAGE {
            return Err(ChannelError::TooLarge(len));
        }
        let mut buf = vec![0u8; len];
        let n = self.recv_into(&mut buf, MsgFlags::empty())?;
        Ok(Some(serde_json::from_slice(&buf[..n])?))
    }

    fn recv_into(&self, buf: &mut [u8], flags: MsgFlags) -> Result<usize, ChannelError> {
        loop {
            match nix::sys::socket::recv(self.fd.as_raw_fd(), buf, flags) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => return Ok(other.map_err(io::Error::from)?),
            }
        }
    }

    /// The next message, which must exist.
    pub fn recv_some(&self) -> Result<R, ChannelError> {
        self.recv()?.ok_or(ChannelError::Closed)
    }
}

impl ChildEnd {
    /// Wait for exactly `expected` from the parent.
    pub fn expect(&self, expected: &'static str, matches: impl Fn(&FromParent) -> bool) -> Result<FromParent, ChannelError> {
        let msg = self.recv_some()?;
        if matches(&msg) { Ok(msg) } else { Err(ChannelError::Unexpected { expected, got: format!("{msg:?}") }) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_keep_their_boundaries_and_types() {
        let (parent, child) = pair().unwrap();
        child.send(&FromChild::ProcessForked { pid: 42 }).unwrap();
        child.send(&FromChild::Ready).unwrap();
        assert_eq!(parent.recv().unwrap(), Some(FromChild::ProcessForked { pid: 42 }));
        assert_eq!(parent.recv().unwrap(), Some(FromChild::Ready));
        parent.send(&FromParent::HooksDone).unwrap();
        let got = child.expect("HooksDone", |m| matches!(m, FromParent::HooksDone)).unwrap();
        assert_eq!(got, FromParent::HooksDone);
    }

    #[test]
    fn out_of_order_message_is_rejected() {
        let (parent, child) = pair().unwrap();
        parent.send(&FromParent::HooksDone).unwrap();
        let err = child.expect("IdMapsWritten", |m| matches!(m, FromParent::IdMapsWritten)).unwrap_err();
        assert!(err.to_string().contains("expected IdMapsWritten, got HooksDone"), "{err}");
    }

    #[test]
    fn a_large_message_arrives_whole() {
        let (parent, child) = pair().unwrap();
        let state = "x".repeat(100_000);
        parent.send(&FromParent::Proceed { state: state.clone() }).unwrap();
        assert_eq!(child.recv().unwrap(), Some(FromParent::Proceed { state }));
    }

    #[test]
    fn closed_end_reads_as_none() {
        let (parent, child) = pair().unwrap();
        drop(child);
        assert_eq!(parent.recv().unwrap(), None);
        assert!(matches!(parent.recv_some(), Err(ChannelError::Closed)));
    }
}
