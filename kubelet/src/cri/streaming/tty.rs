//! The terminal of an exec with `tty`: a pty of ours between the client and the OCI
//! runtime, read and written without blocking, its window size set from the resize channel.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;

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
