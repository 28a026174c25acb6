//! The terminal of an exec with `tty`: the OCI runtime creates the pty and sends its master
//! over the console socket (SCM_RIGHTS); we read and write the master without blocking
//! and set its window size from the resize channel.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use tokio::io::unix::AsyncFd;
use tokio::net::UnixListener;

use super::Error;
use super::channel::Size;

/// How long the runtime may take to send the master once it started.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Accepts the runtime's connection on the console socket and receives the master.
pub async fn receive_master(listener: &UnixListener) -> Result<OwnedFd, Error> {
    let (stream, _) = tokio::time::timeout(CONSOLE_TIMEOUT, listener.accept())
        .await
        .map_err(|_| Error::Console(format!("nothing connected within {CONSOLE_TIMEOUT:?}")))?
        .map_err(|e| Error::Console(format!("accepting: {e}")))?;
    let stream = stream.into_std().map_err(|e| Error::Console(e.to_string()))?;
    stream.set_nonblocking(false).map_err(|e| Error::Console(e.to_string()))?;
    let _ = stream.set_read_timeout(Some(CONSOLE_TIMEOUT));
    tokio::task::spawn_blocking(move || receive_fd(stream.as_raw_fd()))
        .await
        .map_err(|e| Error::Console(e.to_string()))?
}

fn receive_fd(socket: RawFd) -> Result<OwnedFd, Error> {
    // runc sends the pty's name as the payload; we only want the descriptor.
    let mut payload = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut payload)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(socket, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(|e| Error::Console(format!("receiving: {e}")))?;
    let cmsgs = msg.cmsgs().map_err(|e| Error::Console(format!("control messages: {e}")))?;
    for cmsg in cmsgs {
        if let ControlMessageOwned::ScmRights(fds) = cmsg
            && let Some(&fd) = fds.first()
        {
            // Safety: the kernel just installed `fd` in our table for us alone.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            for &extra in &fds[1..] {
                drop(unsafe { OwnedFd::from_raw_fd(extra) });
            }
            return Ok(owned);
        }
    }
    Err(Error::Console("the message carried no descriptor".into()))
}

/// The master side of the exec's terminal.
pub struct PtyMaster {
    fd: AsyncFd<OwnedFd>,
}

impl PtyMaster {
    pub fn new(fd: OwnedFd) -> io::Result<PtyMaster> {
        let flags = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFL)?;
        let flags = nix::fcntl::OFlag::from_bits_retain(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(flags))?;
        // Safety: an OwnedFd keeps its descriptor open and unchanged until it is dropped,
        // which happens only with the AsyncFd.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)?;
        Ok(PtyMaster { fd })
    }

    /// Output of the terminal; 0 once every slave is closed (the kernel says EIO).
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut ready = self.fd.readable().await?;
            match ready.try_io(|fd| nix::unistd::read(fd.get_ref(), buf).map_err(io::Error::from)) {
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let mut ready = self.fd.writable().await?;
            match ready.try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(io::Error::from)) {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    pub fn resize(&self, size: Size) -> io::Result<()> {
        let ws = libc::winsize { ws_row: size.height, ws_col: size.width, ws_xpixel: 0, ws_ypixel: 0 };
        // Safety: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
        let rc = unsafe { libc::ioctl(self.fd.get_ref().as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }
}
