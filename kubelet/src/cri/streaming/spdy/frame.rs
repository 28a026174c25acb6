//! SPDY/3.1 frames. Every frame has an 8-byte head: a control frame starts with the
//! control bit, the version (3) and its type; a data frame with its stream id (31 bits).
//! Then 8 bits of flags and a 24-bit length of what follows.

use tokio::io::{AsyncRead, AsyncReadExt};

use super::Error;
use super::header_block::{Compressor, Decompressor, Headers};

pub const VERSION: u16 = 3;
pub const FLAG_FIN: u8 = 0x01;
const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// The largest payload a 24-bit length allows.
pub const MAX_LENGTH: usize = 0xff_ffff;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// RST_STREAM status: the stream was refused.
pub const REFUSED_STREAM: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Data { stream: u32, fin: bool, data: Vec<u8> },
    SynStream { stream: u32, associated: u32, priority: u8, fin: bool, unidirectional: bool, headers: Headers },
    SynReply { stream: u32, fin: bool, headers: Headers },
    RstStream { stream: u32, status: u32 },
    /// (flags, id, value) of each setting.
    Settings { entries: Vec<(u8, u32, u32)> },
    Ping { id: u32 },
    GoAway { last_stream: u32, status: u32 },
    Headers { stream: u32, fin: bool, headers: Headers },
    WindowUpdate { stream: u32, delta: u32 },
    /// A control frame of a type we do not act on (CREDENTIAL, or another version's).
    Other { kind: u16 },
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, Error> {
    b.get(at..at + 4).map(|s| u32::from_be_bytes(s.try_into().expect("four bytes"))).ok_or_else(|| Error::Protocol("a frame is shorter than its type needs".into()))
}

fn id_at(b: &[u8], at: usize) -> Result<u32, Error> {
    Ok(u32_at(b, at)? & 0x7fff_ffff)
}

impl Frame {
    /// The frame on the wire; header blocks go through the session's compressor, so frames
    /// must be encoded in the order they are sent.
    pub fn encode(&self, z: &mut Compressor) -> Result<Vec<u8>, Error> {
        let (kind, flags, body): (Option<u16>, u8, Vec<u8>) = match self {
            Frame::Data { stream, fin, data } => {
                let mut out = Vec::with_capacity(8 + data.len());
                out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
                return finish(out, fin_flag(*fin), data);
            }
            Frame::SynStream { stream, associated, priority, fin, unidirectional, headers } => {
                let mut b = Vec::new();
                b.extend_from_slice(&stream.to_be_bytes());
                b.extend_from_slice(&associated.to_be_bytes());
                b.push(priority << 5);
                b.push(0);
                b.extend(z.compress(headers)?);
                let flags = fin_flag(*fin) | if *unidirectional { FLAG_UNIDIRECTIONAL } else { 0 };
                (Some(SYN_STREAM), flags, b)
            }
            Frame::SynReply { stream, fin, headers } => (Some(SYN_REPLY), fin_flag(*fin), with_block(*stream, headers, z)?),
            Frame::Headers { stream, fin, headers } => (Some(HEADERS), fin_flag(*fin), with_block(*stream, headers, z)?),
            Frame::RstStream { stream, status } => (Some(RST_STREAM), 0, two(*stream, *status)),
            Frame::Settings { entries } => {
                let mut b = (entries.len() as u32).to_be_bytes().to_vec();
                for (flags, id, value) in entries {
                    b.extend_from_slice(&((u32::from(*flags) << 24) | (id & 0xff_ffff)).to_be_bytes());
                    b.extend_from_slice(&value.to_be_bytes());
                }
                (Some(SETTINGS), 0, b)
            }
            Frame::Ping { id } => (Some(PING), 0, id.to_be_bytes().to_vec()),
            Frame::GoAway { last_stream, status } => (Some(GOAWAY), 0, two(*last_stream, *status)),
            Frame::WindowUpdate { stream, delta } => (Some(WINDOW_UPDATE), 0, two(*stream, *delta)),
            Frame::Other { kind } => return Err(Error::Protocol(format!("control frame type {kind} is not sent"))),
        };
        let kind = kind.expect("a control frame");
        let mut out = Vec::with_capacity(8 + body.len());
        out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
        out.extend_from_slice(&kind.to_be_bytes());
        finish(out, flags, &body)
    }

    /// The frame with this 8-byte head and payload.
    pub fn decode(head: [u8; 8], payload: &[u8], z: &mut Decompressor) -> Result<Frame, Error> {
        let flags = head[4];
        let fin = flags & FLAG_FIN != 0;
        if head[0] & 0x80 == 0 {
            return Ok(Frame::Data { stream: u32::from_be_bytes(head[..4].try_into().expect("four bytes")), fin, data: payload.to_vec() });
        }
        let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
        if version != VERSION {
            return Err(Error::Protocol(format!("SPDY version {version} is not spoken")));
        }
        let p = payload;
        Ok(match u16::from_be_bytes([head[2], head[3]]) {
            SYN_STREAM => Frame::SynStream {
                stream: id_at(p, 0)?,
                associated: id_at(p, 4)?,
                priority: p.get(8).ok_or_else(|| Error::Protocol("a short SYN_STREAM".into()))? >> 5,
                fin,
                unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                headers: z.decompress(p.get(10..).unwrap_or_default())?,
            },
            SYN_REPLY => Frame::SynReply { stream: id_at(p, 0)?, fin, headers: z.decompress(p.get(4..).unwrap_or_default())? },
            HEADERS => Frame::Headers { stream: id_at(p, 0)?, fin, headers: z.decompress(p.get(4..).unwrap_or_default())? },
            RST_STREAM => Frame::RstStream { stream: id_at(p, 0)?, status: u32_at(p, 4)? },
            SETTINGS => {
                let count = u32_at(p, 0)? as usize;
                let entries = (0..count)
                    .map(|i| {
                        let head = u32_at(p, 4 + 8 * i)?;
                        Ok(((head >> 24) as u8, head & 0xff_ffff, u32_at(p, 8 + 8 * i)?))
                    })
                    .collect::<Result<_, Error>>()?;
                Frame::Settings { entries }
            }
            PING => Frame::Ping { id: u32_at(p, 0)? },
            GOAWAY => Frame::GoAway { last_stream: id_at(p, 0)?, status: u32_at(p, 4).unwrap_or(0) },
            WINDOW_UPDATE => Frame::WindowUpdate { stream: id_at(p, 0)?, delta: id_at(p, 4)? },
            kind => Frame::Other { kind },
        })
    }

    /// The next frame from `r`; `None` when the peer closed the connection between frames.
    pub async fn read(r: &mut (impl AsyncRead + Unpin), z: &mut Decompressor) -> Result<Option<Frame>, Error> {
        let mut head = [0u8; 8];
        match r.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(Error::Io(e)),
        }
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        let mut payload = vec![0u8; len];
        r.read_exact(&mut payload).await.map_err(Error::Io)?;
        Frame::decode(head, &payload, z).map(Some)
    }
}

fn fin_flag(fin: bool) -> u8 {
    if fin { FLAG_FIN } else { 0 }
}

fn two(a: u32, b: u32) -> Vec<u8> {
    [a.to_be_bytes(), b.to_be_bytes()].concat()
}

fn with_block(stream: u32, headers: &Headers, z: &mut Compressor) -> Result<Vec<u8>, Error> {
    Ok([stream.to_be_bytes().to_vec(), z.compress(headers)?].concat())
}

fn finish(mut out: Vec<u8>, flags: u8, body: &[u8]) -> Result<Vec<u8>, Error> {
    if body.len() > MAX_LENGTH {
        return Err(Error::Protocol(format!("a frame of {} bytes is too long", body.len())));
    }
    out.push(flags);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(body);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(frame: Frame) -> Vec<u8> {
        let (mut c, mut d) = (Compressor::new(), Decompressor::new());
        let bytes = frame.encode(&mut c).unwrap();
        let head: [u8; 8] = bytes[..8].try_into().unwrap();
        assert_eq!(Frame::decode(head, &bytes[8..], &mut d).unwrap(), frame);
        bytes
    }

    #[test]
    fn frames_have_the_specified_layout() {
        assert_eq!(round_trip(Frame::Data { stream: 5, fin: true, data: b"hi".to_vec() }), b"\0\0\0\x05\x01\0\0\x02hi");
        assert_eq!(round_trip(Frame::Ping { id: 1 }), b"\x80\x03\0\x06\0\0\0\x04\0\0\0\x01");
        assert_eq!(round_trip(Frame::WindowUpdate { stream: 0, delta: 65536 }), b"\x80\x03\0\x09\0\0\0\x08\0\0\0\0\0\x01\0\0");
        assert_eq!(round_trip(Frame::RstStream { stream: 3, status: REFUSED_STREAM }), b"\x80\x03\0\x03\0\0\0\x08\0\0\0\x03\0\0\0\x03");
        assert_eq!(round_trip(Frame::GoAway { last_stream: 7, status: 0 }), b"\x80\x03\0\x07\0\0\0\x08\0\0\0\x07\0\0\0\0");
        let settings = round_trip(Frame::Settings { entries: vec![(0, 7, 65536)] });
        assert_eq!(settings, b"\x80\x03\0\x04\0\0\0\x0c\0\0\0\x01\0\0\0\x07\0\x01\0\0");
    }

    #[test]
    fn header_frames_round_trip() {
        let headers = Headers::new(&[("streamType", "stdout")]);
        let syn = round_trip(Frame::SynStream { stream: 1, associated: 0, priority: 0, fin: false, unidirectional: false, headers: headers.clone() });
        assert_eq!(&syn[..5], b"\x80\x03\0\x01\0");
        round_trip(Frame::SynReply { stream: 1, fin: false, headers: headers.clone() });
        round_trip(Frame::Headers { stream: 1, fin: true, headers });
    }

    #[test]
    fn other_versions_and_short_frames_are_refused() {
        let mut d = Decompressor::new();
        assert!(Frame::decode(*b"\x80\x02\0\x06\0\0\0\x04", b"\0\0\0\x01", &mut d).is_err());
        assert!(Frame::decode(*b"\x80\x03\0\x03\0\0\0\x02", b"\0\0", &mut d).is_err());
        assert_eq!(Frame::decode(*b"\x80\x03\0\x0a\0\0\0\0", b"", &mut d).unwrap(), Frame::Other { kind: 10 });
    }
}
