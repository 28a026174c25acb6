//! A guard in front of the tar reader that refuses oversize extension headers (GNU long
//! names and links, PAX records) before the tar crate reads them into memory: a small
//! compressed layer could otherwise declare a long name of gigabytes. It follows the
//! archive's structure the way the tar crate does (header size, overridden by a PAX `size`
//! record for the next real entry) and stops watching at the end-of-archive block, at a
//! header whose checksum is wrong (the tar crate refuses it) and at GNU sparse entries
//! (refused later).

use std::io::{self, Read};

/// The largest GNU long name/link or PAX header accepted.
pub const MAX_EXTENSION: u64 = 1 << 20;

const BLOCK: usize = 512;

enum State {
    Header { buf: Box<[u8; BLOCK]>, have: usize },
    /// Data bytes to pass; `pax` collects a PAX header's records.
    Data { remaining: u64, pax: Option<Vec<u8>> },
    Off,
}

pub struct HeaderGuard<R> {
    inner: R,
    state: State,
    /// The size a PAX header set for the next real entry.
    pax_size: Option<u64>,
}

impl<R: Read> HeaderGuard<R> {
    pub fn new(inner: R) -> Self {
        HeaderGuard { inner, state: State::Header { buf: Box::new([0; BLOCK]), have: 0 }, pax_size: None }
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    fn observe(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            match &mut self.state {
                State::Off => return Ok(()),
                State::Header { buf, have } => {
                    let n = (BLOCK - *have).min(data.len());
                    buf[*have..*have + n].copy_from_slice(&data[..n]);
                    *have += n;
                    data = &data[n..];
                    if *have == BLOCK {
                        let header = **buf;
                        self.state = self.header(&header)?;
                    }
                }
                State::Data { remaining, pax } => {
                    let n = (*remaining).min(data.len() as u64) as usize;
                    if let Some(p) = pax {
                        p.extend_from_slice(&data[..n]);
                    }
                    *remaining -= n as u64;
                    data = &data[n..];
                    if *remaining == 0 {
                        if let Some(p) = pax.take() {
                            self.pax_size = pax_size(&p);
                        }
                        self.state = State::Header { buf: Box::new([0; BLOCK]), have: 0 };
                    }
                }
            }
        }
        Ok(())
    }

    fn header(&mut self, h: &[u8; BLOCK]) -> io::Result<State> {
        if h.iter().all(|&b| b == 0) || !checksum_ok(h) {
            return Ok(State::Off);
        }
        let kind = h[156];
        let Some(mut size) = numeric(&h[124..136]) else { return Ok(State::Off) };
        let extension = matches!(kind, b'L' | b'K' | b'x' | b'g');
        if matches!(kind, b'L' | b'K' | b'x') && size > MAX_EXTENSION {
            let what = match kind {
                b'L' => "GNU long name",
                b'K' => "GNU long link name",
                _ => "PAX header",
            };
            return Err(io::Error::other(format!("{what} of {size} bytes, over the limit of {MAX_EXTENSION}")));
        }
        if kind == b'S' {
            return Ok(State::Off);
        }
        if !extension && let Some(s) = self.pax_size.take() {
            size = s;
        }
        // Data is padded to whole blocks.
        let padded = size.checked_add(BLOCK as u64 - 1).ok_or_else(|| io::Error::other("tar entry size overflows"))? & !(BLOCK as u64 - 1);
        if padded == 0 {
            if kind == b'x' {
                self.pax_size = None;
            }
            return Ok(State::Header { buf: Box::new([0; BLOCK]), have: 0 });
        }
        Ok(State::Data { remaining: padded, pax: (kind == b'x').then(Vec::new) })
    }
}

impl<R: Read> Read for HeaderGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.observe(&buf[..n])?;
        Ok(n)
    }
}

fn checksum_ok(h: &[u8; BLOCK]) -> bool {
    let sum: u64 = h[..148].iter().chain(&h[156..]).map(|&b| b as u64).sum::<u64>() + 8 * 32;
    numeric(&h[148..156]) == Some(sum)
}

/// A tar numeric field: octal text, or base-256 when the first byte's high bit is set.
fn numeric(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let mut v: u64 = (field[0] & 0x7f) as u64;
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(b as u64)?;
        }
        return Some(v);
    }
    let text = std::str::from_utf8(field).ok()?.trim_matches(|c: char| c == '\0' || c == ' ');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// The `size` record of PAX header data (`<len> size=<n>\n` records).
fn pax_size(data: &[u8]) -> Option<u64> {
    let mut rest = data;
    let mut found = None;
    while !rest.is_empty() {
        let space = rest.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
        if len <= space || len > rest.len() {
            return found;
        }
        let record = &rest[space + 1..len];
        if let Some(v) = record.strip_prefix(b"size=") {
            found = std::str::from_utf8(v).ok()?.trim_end_matches('\n').parse().ok();
        }
        rest = &rest[len..];
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_pax_sizes_parse() {
        assert_eq!(numeric(b"00000001750\0"), Some(1000));
        assert_eq!(numeric(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]), Some(256));
        assert_eq!(pax_size(b"12 path=abc\n13 size=4242\n"), Some(4242));
        assert_eq!(pax_size(b"12 path=abc\n"), None);
    }
}
