//! Name/value header blocks: a count, then each name and value with its length (32-bit
//! big-endian), compressed with zlib and the SPDY/3 dictionary. Each direction of a session
//! is one zlib stream, every block ending with a sync flush, so one compressor and one
//! decompressor live as long as the session.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

use super::Error;
use super::dictionary::DICTIONARY;

/// A stream's headers in the order sent. Names are lowercase on the wire; a name's several
/// values are joined by NUL bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, String)>);

impl Headers {
    pub fn new(pairs: &[(&str, &str)]) -> Headers {
        Headers(pairs.iter().map(|(n, v)| (n.to_ascii_lowercase(), v.to_string())).collect())
    }

    /// The value of `name`, whatever its case.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn encode(&self) -> Vec<u8> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(self.0.len() as u32).to_be_bytes());
        for (name, value) in &self.0 {
            for s in [name.to_ascii_lowercase().as_str(), value.as_str()] {
                raw.extend_from_slice(&(s.len() as u32).to_be_bytes());
                raw.extend_from_slice(s.as_bytes());
            }
        }
        raw
    }

    fn decode(mut raw: &[u8]) -> Result<Headers, Error> {
        let next = |raw: &mut &[u8], len: usize| -> Result<Vec<u8>, Error> {
            if raw.len() < len {
                return Err(Error::Protocol("a header block ends early".into()));
            }
            let (head, rest) = raw.split_at(len);
            *raw = rest;
            Ok(head.to_vec())
        };
        let u32_of = |b: Vec<u8>| u32::from_be_bytes(b.try_into().expect("four bytes")) as usize;
        let count = u32_of(next(&mut raw, 4)?);
        let mut pairs = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            let mut pair = [String::new(), String::new()];
            for s in &mut pair {
                let len = u32_of(next(&mut raw, 4)?);
                *s = String::from_utf8(next(&mut raw, len)?).map_err(|_| Error::Protocol("a header is not UTF-8".into()))?;
            }
            let [name, value] = pair;
            pairs.push((name, value));
        }
        Ok(Headers(pairs))
    }
}

/// Our side of the header stream.
pub struct Compressor(Compress);

impl Compressor {
    pub fn new() -> Compressor {
        let mut z = Compress::new(Compression::default(), true);
        z.set_dictionary(&DICTIONARY).expect("a fresh compressor takes a dictionary");
        Compressor(z)
    }

    pub fn compress(&mut self, headers: &Headers) -> Result<Vec<u8>, Error> {
        let raw = headers.encode();
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut consumed = 0;
        loop {
            let before = self.0.total_in();
            self.0.compress_vec(&raw[consumed..], &mut out, FlushCompress::Sync).map_err(|e| Error::Compression(e.to_string()))?;
            consumed += (self.0.total_in() - before) as usize;
            // Room left over means the flush is complete.
            if consumed == raw.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            out.reserve(out.capacity().max(64));
        }
    }
}

impl Default for Compressor {
    fn default() -> Self {
        Compressor::new()
    }
}

/// The peer's side of the header stream.
pub struct Decompressor(Decompress);

impl Decompressor {
    pub fn new() -> Decompressor {
        Decompressor(Decompress::new(true))
    }

    pub fn decompress(&mut self, block: &[u8]) -> Result<Headers, Error> {
        let mut out = Vec::with_capacity(block.len() * 4 + 64);
        let mut consumed = 0;
        loop {
            let (before_in, before_out) = (self.0.total_in(), self.0.total_out());
            let result = self.0.decompress_vec(&block[consumed..], &mut out, FlushDecompress::Sync);
            consumed += (self.0.total_in() - before_in) as usize;
            match result {
                Ok(_) => {}
                // The stream's first block names the dictionary.
                Err(e) if e.needs_dictionary().is_some() => {
                    self.0.set_dictionary(&DICTIONARY).map_err(|e| Error::Compression(e.to_string()))?;
                    continue;
                }
                Err(e) => return Err(Error::Compression(e.to_string())),
            }
            if consumed == block.len() && out.len() < out.capacity() {
                return Headers::decode(&out);
            }
            if self.0.total_in() == before_in && self.0.total_out() == before_out && out.len() < out.capacity() {
                return Err(Error::Compression("the header block is truncated".into()));
            }
            out.reserve(out.capacity().max(64));
        }
    }
}

impl Default for Decompressor {
    fn default() -> Self {
        Decompressor::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_through_one_zlib_stream() {
        let (mut c, mut d) = (Compressor::new(), Decompressor::new());
        let first = Headers::new(&[("streamType", "error"), ("port", "80")]);
        let block = c.compress(&first).unwrap();
        // zlib header with FDICT set, then the SPDY/3 dictionary's id.
        assert_eq!(block[1] & 0x20, 0x20);
        assert_eq!(&block[2..6], &[0xe3, 0xc6, 0xa7, 0xc2]);
        let got = d.decompress(&block).unwrap();
        assert_eq!(got.get("streamtype"), Some("error"));
        assert_eq!(got, Headers::new(&[("streamtype", "error"), ("port", "80")]));
        // Later blocks continue the stream; a large one needs several output buffers.
        let big = "x".repeat(100_000);
        let second = Headers::new(&[("a", &big), ("streamtype", "stdout")]);
        assert_eq!(d.decompress(&c.compress(&second).unwrap()).unwrap(), second);
        assert_eq!(d.decompress(&c.compress(&Headers::default()).unwrap()).unwrap(), Headers::default());
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// Two consecutive blocks as C zlib (1.2.13, level 9) compresses them with the SPDY/3
    /// dictionary: another implementation's stream decodes here.
    #[test]
    fn blocks_from_c_zlib_decode() {
        let mut d = Decompressor::new();
        let first = d.decompress(&hex("78f9e3c6a7c202a62346703a2b294a4dcc851625aca9a08006000000ffff")).unwrap();
        assert_eq!(first, Headers::new(&[("streamtype", "error")]));
        let second = d.decompress(&hex("02a54748d15c044ac64c16064092b308129199a004ce6880a115540a2502000000ffff")).unwrap();
        assert_eq!(second, Headers::new(&[("port", "80"), ("requestid", "0"), ("streamtype", "data")]));
    }

    #[test]
    fn raw_blocks_are_length_prefixed() {
        let h = Headers::new(&[("port", "80")]);
        assert_eq!(h.encode(), b"\0\0\0\x01\0\0\0\x04port\0\0\0\x0280");
        assert_eq!(Headers::decode(&h.encode()).unwrap(), h);
        assert!(Headers::decode(b"\0\0\0\x01\0\0\0\x09port").is_err());
    }

    #[test]
    fn a_stream_without_the_dictionary_is_refused() {
        let mut plain = Compress::new(Compression::default(), true);
        let mut block = Vec::with_capacity(256);
        plain.compress_vec(&Headers::new(&[("a", "b")]).encode(), &mut block, FlushCompress::Sync).unwrap();
        // Decodes (no dictionary named), but a garbage block does not.
        assert!(Decompressor::new().decompress(&block).is_ok());
        assert!(Decompressor::new().decompress(b"\x78\xbb\0\0\0\0garbage").is_err());
    }
}
