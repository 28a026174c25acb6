//! The attach socket: a unix stream socket the monitor serves in the container's directory
//! (`<bundle>/attach.sock`) for `Attach`. Every client gets the container's live output and
//! may write its stdin (when the container has one) and resize its terminal (`tty`).
//!
//! Each frame is `kind: u8`, `len: u32` (big endian), then `len` bytes of payload:
//!
//! ```text
//! client  -> monitor   1 Stdin(bytes)     input for the container's stdin
//!                      2 CloseStdin       end of input (a pipe is closed; a terminal gets ^D)
//!                      3 Resize(w, h)     two u16, big endian (tty only; else ignored)
//! monitor -> client    4 Stdout(bytes)    output (a terminal's output is all stdout)
//!                      5 Stderr(bytes)
//! ```
//!
//! A client that sent a `Stdin` frame (an empty one claims stdin without input) uses stdin;
//! with `stdin_once`, the first such client to go away closes the container's stdin (an
//! output-only client comes and goes without effect). When the container has exited and its output is drained, the monitor
//! closes every connection. A client that does not keep up with the output (its socket
//! buffer full) is disconnected, so that it never stalls the container.
//!
//! Container directories are deeper than a socket address may be long (108 bytes), so the
//! socket is bound and reached through `/proc/self/fd/<dir fd>/attach.sock` ([`ShortPath`]).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The attach socket's name in the container's directory.
pub const ATTACH_SOCKET: &str = "attach.sock";
/// The console socket's name (the runtime hands over the terminal's master on it).
pub const CONSOLE_SOCKET: &str = "console.sock";
/// The largest payload a frame may carry.
pub const MAX_PAYLOAD: usize = 1 << 20;

const HEADER: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Stdin(Vec<u8>),
    CloseStdin,
    Resize { width: u16, height: u16 },
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("attach socket: unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("attach socket: a frame of {0} bytes is larger than {MAX_PAYLOAD}")]
    TooLarge(usize),
    #[error("attach socket: a resize frame must carry 4 bytes, not {0}")]
    BadResize(usize),
    #[error("attach socket {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl Frame {
    /// The frame as it goes on the socket.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, payload): (u8, &[u8]) = match self {
            Frame::Stdin(d) => (1, d),
            Frame::CloseStdin => (2, &[]),
            Frame::Resize { .. } => (3, &[]),
            Frame::Stdout(d) => (4, d),
            Frame::Stderr(d) => (5, d),
        };
        let resize;
        let payload = if let Frame::Resize { width, height } = self {
            resize = [width.to_be_bytes(), height.to_be_bytes()].concat();
            &resize[..]
        } else {
            payload
        };
        let mut out = Vec::with_capacity(HEADER + payload.len());
        out.push(kind);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }
}

/// Frames out of a byte stream that arrives in arbitrary pieces.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole frame, if one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, AttachError> {
        if self.buf.len() < HEADER {
            return Ok(None);
        }
        let kind = self.buf[0];
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(AttachError::TooLarge(len));
        }
        if !(1..=5).contains(&kind) {
            return Err(AttachError::UnknownKind(kind));
        }
        if self.buf.len() < HEADER + len {
            return Ok(None);
        }
        let payload: Vec<u8> = self.buf.drain(..HEADER + len).skip(HEADER).collect();
        Ok(Some(match kind {
            1 => Frame::Stdin(payload),
            2 => Frame::CloseStdin,
            3 => {
                let [w0, w1, h0, h1] = payload[..] else { return Err(AttachError::BadResize(payload.len())) };
                Frame::Resize { width: u16::from_be_bytes([w0, w1]), height: u16::from_be_bytes([h0, h1]) }
            }
            4 => Frame::Stdout(payload),
            _ => Frame::Stderr(payload),
        }))
    }
}

/// A socket path in a directory, short enough for a socket address whatever the directory's
/// depth: `/proc/self/fd/<n>/<name>`, valid while this value (holding the directory open)
/// lives, in this process only.
pub struct ShortPath {
    _dir: OwnedFd,
    path: PathBuf,
    fd: i32,
    name: String,
}

impl ShortPath {
    pub fn new(dir: &Path, name: &str) -> Result<ShortPath, AttachError> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = File::options()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(dir)
            .map_err(|source| AttachError::Io { path: dir.join(name), source })?;
        let dir_fd = OwnedFd::from(file);
        let fd = dir_fd.as_raw_fd();
        Ok(ShortPath { path: PathBuf::from(format!("/proc/self/fd/{fd}/{name}")), _dir: dir_fd, fd, name: name.to_string() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The same path as another process (a child of ours) can reach it.
    pub fn for_pid(&self, pid: u32) -> PathBuf {
        PathBuf::from(format!("/proc/{pid}/fd/{}/{}", self.fd, self.name))
    }
}

/// Connect to the attach socket of the container in `dir` (blocking).
pub fn connect(dir: &Path) -> Result<std::os::unix::net::UnixStream, AttachError> {
    let short = ShortPath::new(dir, ATTACH_SOCKET)?;
    std::os::unix::net::UnixStream::connect(short.path()).map_err(|source| AttachError::Io { path: dir.join(ATTACH_SOCKET), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_across_arbitrary_reads() {
        let frames = vec![
            Frame::Stdin(b"echo hi\n".to_vec()),
            Frame::Resize { width: 132, height: 43 },
            Frame::CloseStdin,
            Frame::Stdout(Vec::new()),
            Frame::Stderr(vec![0xff; 70_000]),
        ];
        let bytes: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        for piece in [1, 3, 7, 4096, bytes.len()] {
            let mut d = Decoder::default();
            let mut got = Vec::new();
            for chunk in bytes.chunks(piece) {
                d.push(chunk);
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got, frames, "pieces of {piece}");
        }
    }

    #[test]
    fn the_wire_format_is_kind_length_payload() {
        assert_eq!(Frame::Stdin(b"ab".to_vec()).encode(), [1, 0, 0, 0, 2, b'a', b'b']);
        assert_eq!(Frame::CloseStdin.encode(), [2, 0, 0, 0, 0]);
        assert_eq!(Frame::Resize { width: 80, height: 24 }.encode(), [3, 0, 0, 0, 4, 0, 80, 0, 24]);
    }

    #[test]
    fn bad_frames_are_rejected() {
        let mut d = Decoder::default();
        d.push(&[9, 0, 0, 0, 0]);
        assert!(matches!(d.next_frame(), Err(AttachError::UnknownKind(9))));
        let mut d = Decoder::default();
        d.push(&[1, 0xff, 0, 0, 0]);
        assert!(matches!(d.next_frame(), Err(AttachError::TooLarge(_))));
        let mut d = Decoder::default();
        d.push(&[3, 0, 0, 0, 1, 7]);
        assert!(matches!(d.next_frame(), Err(AttachError::BadResize(1))));
        let mut d = Decoder::default();
        d.push(&[4, 0, 0]);
        assert!(d.next_frame().unwrap().is_none());
    }

    #[test]
    fn a_short_path_reaches_a_deep_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let deep = tmp.path().join("d".repeat(100)).join("e".repeat(100));
        std::fs::create_dir_all(&deep).unwrap();
        let short = ShortPath::new(&deep, ATTACH_SOCKET).unwrap();
        let listener = std::os::unix::net::UnixListener::bind(short.path()).unwrap();
        assert!(deep.join(ATTACH_SOCKET).exists());
        let _client = connect(&deep).unwrap();
        listener.accept().unwrap();
    }
}
