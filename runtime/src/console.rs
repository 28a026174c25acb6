//! Terminals: a pseudo-terminal made inside the container, its master end sent to whoever
//! listens on `--console-socket` (SCM_RIGHTS, as runc does), or relayed by the runtime itself
//! when it runs in the foreground.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("cannot open a pseudo-terminal at {path} (is /dev/pts mounted in the container?): {source}")]
    Open { path: String, source: io::Error },
    #[error("pseudo-terminal: {what}: {source}")]
    Pty { what: &'static str, source: io::Error },
    #[error("console socket: {what}: {source}")]
    Socket { what: &'static str, source: io::Error },
    #[error("console socket: no file descriptor was received")]
    NoFd,
}

/// A fresh pseudo-terminal: the master, the slave, and the slave's number in its devpts.
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
    pub index: u32,
}

/// Open a new pty through the `ptmx` at `ptmx` (a path the kernel can open; for a container,
/// its own `/dev/pts/ptmx`, so the pty belongs to the container's devpts).
pub fn open_pty(ptmx: &Path) -> Result<Pty, ConsoleError> {
    let master = nix::fcntl::open(ptmx, nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_NOCTTY | nix::fcntl::OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
        .map_err(|e| ConsoleError::Open { path: ptmx.display().to_string(), source: e.into() })?;
    let pty_err = |what| move |source| ConsoleError::Pty { what, source };
    let unlock: libc::c_int = 0;
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } < 0 {
        return Err(pty_err("unlock")(io::Error::last_os_error()));
    }
    let mut index: libc::c_uint = 0;
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut index) } < 0 {
        return Err(pty_err("read its number")(io::Error::last_os_error()));
    }
    // TIOCGPTPEER opens the slave from the master, with no path lookup to race.
    let fd = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(pty_err("open its slave")(io::Error::last_os_error()));
    }
    Ok(Pty { master, slave: unsafe { OwnedFd::from_raw_fd(fd) }, index })
}

pub fn set_window_size(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub fn window_size(fd: BorrowedFd<'_>) -> io::Result<(u16, u16)> {
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((ws.ws_row, ws.ws_col))
}

/// Make `slave` the calling process's stdin, stdout, stderr and controlling terminal. The
/// caller must lead a session (after `setsid`).
pub fn become_controlling(slave: &OwnedFd) -> Result<(), ConsoleError> {
    for target in 0..=2 {
        if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
            return Err(ConsoleError::Pty { what: "attach to stdio", source: io::Error::last_os_error() });
        }
    }
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
        return Err(ConsoleError::Pty { what: "make it the controlling terminal", source: io::Error::last_os_error() });
    }
    Ok(())
}

/// Send `fd` over a unix socket with SCM_RIGHTS; the message body is `name`.
pub fn send_fd(socket: BorrowedFd<'_>, fd: BorrowedFd<'_>, name: &str) -> Result<(), ConsoleError> {
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [io::IoSlice::new(name.as_bytes())];
    sendmsg::<()>(socket.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .map_err(|e| ConsoleError::Socket { what: "send the terminal", source: e.into() })?;
    Ok(())
}

/// Receive one descriptor sent with [`send_fd`].
pub fn recv_fd(socket: BorrowedFd<'_>) -> Result<(OwnedFd, String), ConsoleError> {
    let mut buf = vec![0u8; 4096];
    let mut cmsg_space = nix::cmsg_space!([RawFd; 1]);
    let (fd, n) = {
        let mut iov = [io::IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(socket.as_raw_fd(), &mut iov, Some(&mut cmsg_space), MsgFlags::MSG_CMSG_CLOEXEC)
            .map_err(|e| ConsoleError::Socket { what: "receive the terminal", source: e.into() })?;
        let mut fd = None;
        for c in msg.cmsgs().map_err(|e| ConsoleError::Socket { what: "read control data", source: e.into() })? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                fd = fds.first().copied();
            }
        }
        (fd, msg.bytes)
    };
    let fd = fd.ok_or(ConsoleError::NoFd)?;
    buf.truncate(n);
    Ok((unsafe { OwnedFd::from_raw_fd(fd) }, String::from_utf8_lossy(&buf).into_owned()))
}

/// Connect to the listener at `--console-socket`.
pub fn connect(path: &Path) -> Result<UnixStream, ConsoleError> {
    UnixStream::connect(path).map_err(|source| ConsoleError::Socket { what: "connect", source })
}

/// Puts the runtime's own terminal in raw mode while relaying, and restores it after.
pub struct RawMode {
    fd: RawFd,
    saved: nix::sys::termios::Termios,
}

impl RawMode {
    pub fn enter(fd: BorrowedFd<'_>) -> Option<RawMode> {
        let saved = nix::sys::termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        nix::sys::termios::cfmakeraw(&mut raw);
        nix::sys::termios::tcsetattr(fd, nix::sys::termios::SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { fd: fd.as_raw_fd(), saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let _ = nix::sys::termios::tcsetattr(fd, nix::sys::termios::SetArg::TCSANOW, &self.saved);
    }
}

/// Write all of `data`, retrying on EINTR.
pub fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn pty_round_trip_and_fd_passing() {
        let pty = open_pty(Path::new("/dev/ptmx")).unwrap();
        set_window_size(pty.master.as_fd(), 40, 120).unwrap();
        assert_eq!(window_size(pty.slave.as_fd()).unwrap(), (40, 120));

        let (a, b) = UnixStream::pair().unwrap();
        send_fd(a.as_fd(), pty.master.as_fd(), "/dev/ptmx").unwrap();
        let (master2, name) = recv_fd(b.as_fd()).unwrap();
        assert_eq!(name, "/dev/ptmx");
        // The received descriptor is the same terminal: what the slave writes, it reads.
        nix::unistd::write(pty.slave.as_fd(), b"hello").unwrap();
        let mut buf = [0u8; 16];
        let n = nix::unistd::read(master2.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
    }

    #[test]
    fn recv_without_fd_is_an_error() {
        let (a, b) = UnixStream::pair().unwrap();
        use std::io::Write;
        (&a).write_all(b"no fd here").unwrap();
        assert!(matches!(recv_fd(b.as_fd()), Err(ConsoleError::NoFd)));
    }
}
