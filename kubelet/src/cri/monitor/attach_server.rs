//! The monitor's side of the attach socket (see [`super::attach`] for the framing): the
//! listener, its clients, and the container's stdin they write to. Nothing here blocks for
//! long: the monitor's loop polls [`AttachServer::poll_fds`] and calls
//! [`AttachServer::serve`] when any is readable.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::attach::{ATTACH_SOCKET, AttachError, Decoder, Frame, ShortPath};
use super::log_writer::Stream;

/// How long a write to the container's stdin may wait for the container to read.
const STDIN_WAIT: Duration = Duration::from_secs(1);

/// The container's stdin, as the monitor holds it.
pub enum Stdin {
    /// The container has none (`stdin: false`), or it was closed.
    None,
    /// The write end of the container's stdin pipe.
    Pipe(File),
    /// The terminal's master (a duplicate: output is read from another).
    Pty(File),
}

struct Client {
    stream: UnixStream,
    decoder: Decoder,
    /// It sent a `Stdin` frame: its detach counts for `stdin_once`.
    uses_stdin: bool,
}

pub struct AttachServer {
    listener: UnixListener,
    socket: PathBuf,
    _short: ShortPath,
    clients: Vec<Client>,
    stdin: Stdin,
    stdin_once: bool,
}

impl AttachServer {
    /// Listen on `<dir>/attach.sock` (a stale socket from before is replaced).
    pub fn bind(dir: &Path, stdin: Stdin, stdin_once: bool) -> Result<AttachServer, AttachError> {
        let socket = dir.join(ATTACH_SOCKET);
        let io_err = |source| AttachError::Io { path: socket.clone(), source };
        let short = ShortPath::new(dir, ATTACH_SOCKET)?;
        let _ = std::fs::remove_file(short.path());
        let listener = UnixListener::bind(short.path()).map_err(io_err)?;
        listener.set_nonblocking(true).map_err(io_err)?;
        Ok(AttachServer { listener, socket, _short: short, clients: Vec::new(), stdin, stdin_once })
    }

    /// The descriptors to poll for reading.
    pub fn poll_fds(&self) -> Vec<BorrowedFd<'_>> {
        let mut fds = vec![self.listener.as_fd()];
        fds.extend(self.clients.iter().map(|c| c.stream.as_fd()));
        fds
    }

    /// Accept new clients and handle what the clients sent.
    pub fn serve(&mut self) {
        while let Ok((stream, _)) = self.listener.accept() {
            if stream.set_nonblocking(true).is_ok() {
                self.clients.push(Client { stream, decoder: Decoder::default(), uses_stdin: false });
            }
        }
        let mut i = 0;
        while i < self.clients.len() {
            match self.read_client(i) {
                Ok(()) => i += 1,
                Err(()) => self.detach(i),
            }
        }
    }

    /// Read what client `i` sent and act on it; `Err` when it went away or broke the protocol.
    fn read_client(&mut self, i: usize) -> Result<(), ()> {
        let mut buf = [0u8; 32 * 1024];
        loop {
            match self.clients[i].stream.read(&mut buf) {
                Ok(0) => return Err(()),
                Ok(n) => self.clients[i].decoder.push(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return Err(()),
            }
        }
        loop {
            match self.clients[i].decoder.next_frame() {
                Ok(Some(frame)) => {
                    self.clients[i].uses_stdin |= matches!(frame, Frame::Stdin(_));
                    self.handle(frame);
                }
                Ok(None) => return Ok(()),
                Err(e) => {
                    eprintln!("kubelet-rs monitor: {e}; the client is disconnected");
                    return Err(());
                }
            }
        }
    }

    fn handle(&mut self, frame: Frame) {
        match frame {
            Frame::Stdin(data) => self.write_stdin(&data),
            Frame::CloseStdin => self.close_stdin(),
            Frame::Resize { width, height } => {
                if let Stdin::Pty(master) = &self.stdin {
                    let ws = libc::winsize { ws_row: height, ws_col: width, ws_xpixel: 0, ws_ypixel: 0 };
                    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
                    unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
                }
            }
            // Output frames come from the monitor only.
            Frame::Stdout(_) | Frame::Stderr(_) => {}
        }
    }

    /// Write to the container's stdin (non-blocking), waiting a little for a container that
    /// is slow to read; what it does not take by then is dropped.
    fn write_stdin(&mut self, mut data: &[u8]) {
        let (Stdin::Pipe(f) | Stdin::Pty(f)) = &mut self.stdin else { return };
        while !data.is_empty() {
            match f.write(data) {
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut fds = [PollFd::new(f.as_fd(), PollFlags::POLLOUT)];
                    if !matches!(poll(&mut fds, PollTimeout::try_from(STDIN_WAIT).unwrap_or(PollTimeout::MAX)), Ok(1..)) {
                        eprintln!("kubelet-rs monitor: the container does not read its stdin; {} bytes dropped", data.len());
                        return;
                    }
                }
                Err(_) => {
                    // The container closed its stdin: nothing will read it any more.
                    self.stdin = Stdin::None;
                    return;
                }
            }
        }
    }

    /// A pipe is closed; a terminal gets end-of-file as a keyboard sends it (^D).
    fn close_stdin(&mut self) {
        if let Stdin::Pty(_) = &self.stdin {
            self.write_stdin(b"\x04");
        }
        self.stdin = Stdin::None;
    }

    fn detach(&mut self, i: usize) {
        let client = self.clients.remove(i);
        if self.stdin_once && client.uses_stdin {
            self.close_stdin();
        }
    }

    /// Send output to every client; one that cannot take it now is disconnected.
    pub fn broadcast(&mut self, stream: Stream, data: &[u8]) {
        if self.clients.is_empty() {
            return;
        }
        let frame = match stream {
            Stream::Stdout => Frame::Stdout(data.to_vec()),
            Stream::Stderr => Frame::Stderr(data.to_vec()),
        }
        .encode();
        let mut i = 0;
        while i < self.clients.len() {
            if write_frame(&mut self.clients[i].stream, &frame) {
                i += 1;
            } else {
                eprintln!("kubelet-rs monitor: an attach client does not keep up with the output; disconnected");
                self.detach(i);
            }
        }
    }
}

/// The whole frame or nothing useful: a client that took part of it is out of step.
fn write_frame(stream: &mut UnixStream, mut frame: &[u8]) -> bool {
    let mut waited = false;
    while !frame.is_empty() {
        match stream.write(frame) {
            Ok(n) => frame = &frame[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Give a reader a moment once; the container must not wait on it.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && !waited => {
                waited = true;
                let mut fds = [PollFd::new(stream.as_fd(), PollFlags::POLLOUT)];
                let _ = poll(&mut fds, PollTimeout::from(100u8));
            }
            Err(_) => return false,
        }
    }
    true
}

impl Drop for AttachServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe() -> (File, File) {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK).unwrap();
        (File::from(r), File::from(w))
    }

    fn read_frame(c: &mut UnixStream) -> Frame {
        let mut d = Decoder::default();
        let mut buf = [0u8; 1024];
        loop {
            if let Some(f) = d.next_frame().unwrap() {
                return f;
            }
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0);
            d.push(&buf[..n]);
        }
    }

    fn serve_until(server: &mut AttachServer, mut done: impl FnMut(&AttachServer) -> bool) {
        for _ in 0..200 {
            server.serve();
            if done(server) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("condition not reached");
    }

    #[test]
    fn clients_write_stdin_get_output_and_stdin_once_closes_on_detach() {
        let dir = tempfile::tempdir().unwrap();
        let (mut r, w) = pipe();
        let mut server = AttachServer::bind(dir.path(), Stdin::Pipe(w), true).unwrap();
        // An output-only client comes and goes: stdin stays open.
        let watcher = super::super::attach::connect(dir.path()).unwrap();
        serve_until(&mut server, |s| !s.clients.is_empty());
        drop(watcher);
        serve_until(&mut server, |s| s.clients.is_empty());
        assert!(matches!(r.read(&mut [0u8; 4]), Err(e) if e.kind() == io::ErrorKind::WouldBlock));
        let mut client = super::super::attach::connect(dir.path()).unwrap();
        client.write_all(&Frame::Stdin(b"hello".to_vec()).encode()).unwrap();
        let mut got = Vec::new();
        serve_until(&mut server, |_| {
            let mut buf = [0u8; 16];
            if let Ok(n) = r.read(&mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
            got == b"hello"
        });
        server.broadcast(Stream::Stderr, b"oops");
        assert_eq!(read_frame(&mut client), Frame::Stderr(b"oops".to_vec()));
        drop(client);
        // Detached: with stdin_once the pipe reads as ended.
        serve_until(&mut server, |_| matches!(r.read(&mut [0u8; 4]), Ok(0)));
        let socket = dir.path().join(ATTACH_SOCKET);
        assert!(socket.exists());
        drop(server);
        assert!(!socket.exists());
    }

    #[test]
    fn without_stdin_once_stdin_stays_open_until_closed_explicitly() {
        let dir = tempfile::tempdir().unwrap();
        let (mut r, w) = pipe();
        let mut server = AttachServer::bind(dir.path(), Stdin::Pipe(w), false).unwrap();
        let client = super::super::attach::connect(dir.path()).unwrap();
        serve_until(&mut server, |_| true);
        drop(client);
        for _ in 0..5 {
            server.serve();
        }
        assert!(matches!(r.read(&mut [0u8; 4]), Err(e) if e.kind() == io::ErrorKind::WouldBlock));
        let mut c2 = super::super::attach::connect(dir.path()).unwrap();
        c2.write_all(&Frame::CloseStdin.encode()).unwrap();
        serve_until(&mut server, |_| matches!(r.read(&mut [0u8; 4]), Ok(0)));
    }
}
