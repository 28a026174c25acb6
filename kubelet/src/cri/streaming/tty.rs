//! The terminal of an exec with `tty`: a pty of ours between the client and the OCI
//! runtime, read and written without blocking, its window size set from the resize channel.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, ReadBuf};

use super::Error;
use super::channel::Size;

/// A terminal for the OCI runtime's stdio: the runtime is started on its slave (as its
/// controlling terminal), makes the container's terminal itself and copies between the
/// two; a resize of ours reaches it as SIGWINCH and it passes the size on. (runc refuses a
/// console socket unless it detaches, and a detached exec's exit code is lost to us.)
/// The slave is raw: line editing and echo happen in the container's terminal.
pub fn open_pty() -> Result<(OwnedFd, OwnedFd), Error> {
    let pty = nix::pty::openpty(None, None).map_err(|e| Error::Console(format!("openpty: {e}")))?;
    let mut termios = nix::sys::termios::tcgetattr(&pty.slave).map_err(|e| Error::Console(format!("tcgetattr: {e}")))?;
    nix::sys::termios::cfmakeraw(&mut termios);
    nix::sys::termios::tcsetattr(&pty.slave, nix::sys::termios::SetArg::TCSANOW, &termios)
        .map_err(|e| Error::Console(format!("tcsetattr: {e}")))?;
    Ok((pty.master, pty.slave))
}

/// Run in the runtime's child before exec: a session of its own whose controlling
/// terminal is its stdin (our slave), so resizes signal it.
pub fn become_session_leader() -> std::io::Result<()> {
    // Safety: async-signal-safe calls only, between fork and exec.
    unsafe {
        if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
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

/// The terminal's output, read as any other stream: it ends (a read of 0) once every slave
/// is closed, which the kernel tells the master with EIO.
pub struct PtyOutput(pub Arc<PtyMaster>);

impl AsyncRead for PtyOutput {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.0.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| nix::unistd::read(fd.get_ref(), unfilled).map_err(io::Error::from)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Poll::Ready(Ok(())),
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn output_is_read_until_the_last_slave_closes() {
        let (master, slave) = open_pty().unwrap();
        let mut output = PtyOutput(Arc::new(PtyMaster::new(master).unwrap()));
        nix::unistd::write(&slave, b"hello").unwrap();
        let mut buf = [0u8; 16];
        let n = output.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hello");
        drop(slave);
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), output.read(&mut buf)).await.expect("the end of the output");
        assert_eq!(n.unwrap(), 0, "EIO after the slave closed reads as the end");
    }
}
