//! The protocol between the sandbox manager (the starter) and a starting pod init: a
//! `SOCK_SEQPACKET` socket pair, one JSON message per packet. The init's end is passed as
//! `--sync-fd` and made close-on-exec at once.
//!
//! ```text
//! pod-init (in the pod's namespaces, after unshare(CLONE_NEWPID) and fork)
//!          -> starter   Started { init_pid }   (the init's pid as the starter sees it)
//! init     -> starter   Ready                  (its own session, signals blocked: it can be stopped)
//! either   -> starter   Failed { message }     (instead of the next message)
//! ```
//!
//! The starter rejects any other order.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, socketpair};
use serde::{Deserialize, Serialize};

/// From the pod init to its starter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromInit {
    Started { init_pid: i32 },
    Ready,
    Failed { message: String },
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("pod init channel: {0}")]
    Io(#[from] io::Error),
    #[error("pod init channel: bad message: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("pod init channel: closed before {expected}")]
    Closed { expected: &'static str },
    #[error("pod init channel: no {expected} before the deadline")]
    Timeout { expected: &'static str },
    #[error("pod init channel: expected {expected}, got {got}")]
    Unexpected { expected: &'static str, got: String },
    #[error("{0}")]
    Failed(String),
}

/// Larger than any message sent (a failure's message is an error's text).
const MAX_MESSAGE: usize = 1 << 16;

pub struct StarterEnd(OwnedFd);
pub struct InitEnd(OwnedFd);

/// A connected pair, both ends close-on-exec.
pub fn pair() -> Result<(StarterEnd, InitEnd), Error> {
    let (a, b) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).map_err(io::Error::from)?;
    Ok((StarterEnd(a), InitEnd(b)))
}

impl InitEnd {
    pub fn from_fd(fd: OwnedFd) -> InitEnd {
        InitEnd(fd)
    }

    pub fn send(&self, msg: &FromInit) -> Result<(), Error> {
        let mut buf = serde_json::to_vec(msg)?;
        buf.truncate(MAX_MESSAGE);
        nix::sys::socket::send(self.0.as_raw_fd(), &buf, MsgFlags::MSG_NOSIGNAL).map_err(io::Error::from)?;
        Ok(())
    }
}

impl AsFd for InitEnd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl StarterEnd {
    /// The next message before `deadline`; a `Failed` one is [`Error::Failed`].
    fn recv(&self, deadline: Instant, expected: &'static str) -> Result<FromInit, Error> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
            let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(io::Error::from(e).into()),
                Ok(0) => return Err(Error::Timeout { expected }),
                Ok(_) => break,
            }
        }
        let mut buf = vec![0u8; MAX_MESSAGE];
        let n = loop {
            match nix::sys::socket::recv(self.0.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => break other.map_err(io::Error::from)?,
            }
        };
        if n == 0 {
            return Err(Error::Closed { expected });
        }
        match serde_json::from_slice(&buf[..n])? {
            FromInit::Failed { message } => Err(Error::Failed(message)),
            msg => Ok(msg),
        }
    }

    /// `Started`: the init's pid.
    pub fn expect_started(&self, deadline: Instant) -> Result<i32, Error> {
        const EXPECTED: &str = "Started";
        match self.recv(deadline, EXPECTED)? {
            FromInit::Started { init_pid } => Ok(init_pid),
            other => Err(Error::Unexpected { expected: EXPECTED, got: format!("{other:?}") }),
        }
    }

    pub fn expect_ready(&self, deadline: Instant) -> Result<(), Error> {
        const EXPECTED: &str = "Ready";
        match self.recv(deadline, EXPECTED)? {
            FromInit::Ready => Ok(()),
            other => Err(Error::Unexpected { expected: EXPECTED, got: format!("{other:?}") }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[test]
    fn started_then_ready() {
        let (starter, init) = pair().unwrap();
        init.send(&FromInit::Started { init_pid: 42 }).unwrap();
        init.send(&FromInit::Ready).unwrap();
        assert_eq!(starter.expect_started(soon()).unwrap(), 42);
        starter.expect_ready(soon()).unwrap();
    }

    #[test]
    fn failures_out_of_order_messages_closes_and_silence_are_errors() {
        let (starter, init) = pair().unwrap();
        init.send(&FromInit::Failed { message: "setns: EPERM".into() }).unwrap();
        assert_eq!(starter.expect_started(soon()).unwrap_err().to_string(), "setns: EPERM");
        init.send(&FromInit::Ready).unwrap();
        assert!(matches!(starter.expect_started(soon()), Err(Error::Unexpected { expected: "Started", .. })));
        let err = starter.expect_ready(Instant::now() + Duration::from_millis(20)).unwrap_err();
        assert!(matches!(err, Error::Timeout { expected: "Ready" }), "{err}");
        drop(init);
        assert!(matches!(starter.expect_ready(soon()), Err(Error::Closed { expected: "Ready" })));
    }
}
