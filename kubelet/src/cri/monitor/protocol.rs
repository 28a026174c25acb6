//! The protocol between the CRI service (the starter) and a monitor it starts: a
//! `SOCK_SEQPACKET` socket pair, one JSON message per packet. The monitor's end is passed as
//! `--sync-fd`; the monitor makes it close-on-exec at once so that neither the OCI runtime
//! nor the container inherits it.
//!
//! ```text
//! monitor -> starter   Started { monitor_pid }   (after it detached: its own session)
//! monitor -> starter   Created { pid }            (`<runtime> create` exited 0; pid: the init)
//!                    | Failed { message }         (the runtime's stderr, or why it did not run)
//! monitor              closes its end
//! ```
//!
//! The starter rejects any other order. The monitor then runs on alone; what it learns later
//! (the exit) goes to the exit file, which outlives both processes.
//!
//! The container's stdin and output for `Attach` are served on another socket, at a fixed
//! place in the container's directory (`attach`), so they need no message here.

use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, socketpair};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// From the monitor to its starter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromMonitor {
    Started { monitor_pid: i32 },
    Created { pid: i32 },
    Failed { message: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("monitor channel: {0}")]
    Io(#[from] io::Error),
    #[error("monitor channel: bad message: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("monitor channel: a message of {0} bytes is larger than any the protocol sends")]
    TooLarge(usize),
    #[error("monitor channel: the monitor closed it before sending {expected}")]
    Closed { expected: &'static str },
    #[error("monitor channel: no {expected} before the deadline")]
    Timeout { expected: &'static str },
    #[error("monitor channel: expected {expected}, got {got}")]
    Unexpected { expected: &'static str, got: String },
}

/// Large enough for a runtime's error message; anything larger is cut by the monitor.
const MAX_MESSAGE: usize = 1 << 16;

/// One end of the channel, sending `S`.
pub struct Channel<S> {
    fd: OwnedFd,
    _sends: PhantomData<S>,
}

/// The monitor's end.
pub type MonitorEnd = Channel<FromMonitor>;
/// The starter's end: it only receives.
pub type StarterEnd = Channel<()>;

/// A connected pair, both ends close-on-exec.
pub fn pair() -> Result<(StarterEnd, MonitorEnd), ProtocolError> {
    let (a, b) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).map_err(io::Error::from)?;
    Ok((Channel { fd: a, _sends: PhantomData }, Channel { fd: b, _sends: PhantomData }))
}

impl<S> Channel<S> {
    pub fn from_fd(fd: OwnedFd) -> Self {
        Channel { fd, _sends: PhantomData }
    }
}

impl<S> AsFd for Channel<S> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl MonitorEnd {
    pub fn send(&self, msg: &FromMonitor) -> Result<(), ProtocolError> {
        let buf = serde_json::to_vec(msg)?;
        if buf.len() > MAX_MESSAGE {
            return Err(ProtocolError::TooLarge(buf.len()));
        }
        nix::sys::socket::send(self.fd.as_raw_fd(), &buf, MsgFlags::MSG_NOSIGNAL).map_err(io::Error::from)?;
        Ok(())
    }
}

impl StarterEnd {
    /// The next message, or `None` when the monitor closed its end; waits until `deadline`.
    pub fn recv_until<R: DeserializeOwned>(&self, deadline: Instant, expected: &'static str) -> Result<Option<R>, ProtocolError> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // Rounded up: poll must not return before the deadline.
            let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
            let ms = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, ms) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(io::Error::from(e).into()),
                Ok(0) => return Err(ProtocolError::Timeout { expected }),
                Ok(_) => break,
            }
        }
        // Peek at the packet's length first, so the buffer is just as large as the message.
        let len = self.recv_into(&mut [], MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC)?;
        if len == 0 {
            return Ok(None);
        }
        if len > MAX_MESSAGE {
            return Err(ProtocolError::TooLarge(len));
        }
        let mut buf = vec![0u8; len];
        let n = self.recv_into(&mut buf, MsgFlags::empty())?;
        Ok(Some(serde_json::from_slice(&buf[..n])?))
    }

    /// `Started`, before `deadline`; returns the monitor's pid.
    pub fn expect_started(&self, deadline: Instant) -> Result<i32, ProtocolError> {
        const EXPECTED: &str = "Started";
        match self.recv_until::<FromMonitor>(deadline, EXPECTED)? {
            Some(FromMonitor::Started { monitor_pid }) => Ok(monitor_pid),
            Some(other) => Err(ProtocolError::Unexpected { expected: EXPECTED, got: format!("{other:?}") }),
            None => Err(ProtocolError::Closed { expected: EXPECTED }),
        }
    }

    /// `Created` or `Failed`, before `deadline`: the outcome of `create`.
    pub fn expect_outcome(&self, deadline: Instant) -> Result<FromMonitor, ProtocolError> {
        const EXPECTED: &str = "Created or Failed";
        match self.recv_until::<FromMonitor>(deadline, EXPECTED)? {
            Some(m @ (FromMonitor::Created { .. } | FromMonitor::Failed { .. })) => Ok(m),
            Some(other) => Err(ProtocolError::Unexpected { expected: EXPECTED, got: format!("{other:?}") }),
            None => Err(ProtocolError::Closed { expected: EXPECTED }),
        }
    }

    fn recv_into(&self, buf: &mut [u8], flags: MsgFlags) -> Result<usize, ProtocolError> {
        loop {
            match nix::sys::socket::recv(self.fd.as_raw_fd(), buf, flags) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => return Ok(other.map_err(io::Error::from)?),
            }
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
    fn a_created_container_round_trips() {
        let (starter, monitor) = pair().unwrap();
        monitor.send(&FromMonitor::Started { monitor_pid: 7 }).unwrap();
        monitor.send(&FromMonitor::Created { pid: 42 }).unwrap();
        assert_eq!(starter.expect_started(soon()).unwrap(), 7);
        assert_eq!(starter.expect_outcome(soon()).unwrap(), FromMonitor::Created { pid: 42 });
    }

    #[test]
    fn a_failure_carries_the_runtime_message() {
        let (starter, monitor) = pair().unwrap();
        monitor.send(&FromMonitor::Started { monitor_pid: 7 }).unwrap();
        let message = "config.json: no such file or directory\n".repeat(100);
        monitor.send(&FromMonitor::Failed { message: message.clone() }).unwrap();
        starter.expect_started(soon()).unwrap();
        assert_eq!(starter.expect_outcome(soon()).unwrap(), FromMonitor::Failed { message });
    }

    #[test]
    fn out_of_order_messages_are_rejected() {
        let (starter, monitor) = pair().unwrap();
        monitor.send(&FromMonitor::Created { pid: 42 }).unwrap();
        let err = starter.expect_started(soon()).unwrap_err();
        assert!(err.to_string().contains("expected Started, got Created { pid: 42 }"), "{err}");
        monitor.send(&FromMonitor::Started { monitor_pid: 1 }).unwrap();
        let err = starter.expect_outcome(soon()).unwrap_err();
        assert!(matches!(err, ProtocolError::Unexpected { .. }), "{err}");
    }

    #[test]
    fn a_closed_channel_and_silence_are_errors() {
        let (starter, monitor) = pair().unwrap();
        let started = Instant::now();
        let err = starter.expect_started(Instant::now() + Duration::from_millis(50)).unwrap_err();
        assert!(matches!(err, ProtocolError::Timeout { expected: "Started", .. }), "{err}");
        assert!(started.elapsed() >= Duration::from_millis(50));
        drop(monitor);
        let err = starter.expect_started(soon()).unwrap_err();
        assert!(matches!(err, ProtocolError::Closed { expected: "Started" }), "{err}");
    }

    #[test]
    fn messages_are_plain_json() {
        let json = serde_json::to_string(&FromMonitor::Created { pid: 5 }).unwrap();
        assert_eq!(json, r#"{"Created":{"pid":5}}"#);
    }
}
