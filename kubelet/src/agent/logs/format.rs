//! The CRI log file format: one entry a line,
//! `<RFC3339Nano timestamp> <stdout|stderr> <P|F> <content>`, where `P` marks a partial
//! entry whose content continues in the next one (the runtime splits long lines).

use k8s_openapi::jiff::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One entry of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The timestamp as written (kubectl gets it as is with `timestamps=true`).
    pub raw_time: &'a str,
    pub time: Timestamp,
    pub stream: Stream,
    pub partial: bool,
    pub content: &'a [u8],
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("a CRI log line needs four space-separated fields (timestamp, stream, tag, content), this has {0}")]
    Fields(usize),
    #[error("a CRI log line's timestamp {0:?} is not RFC 3339")]
    Time(String),
    #[error("a CRI log line's stream {0:?} is neither stdout nor stderr")]
    Stream(String),
}

/// One line, without its trailing newline.
pub fn parse(line: &[u8]) -> Result<Entry<'_>, FormatError> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let (Some(time), Some(stream), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(FormatError::Fields(line.split(|b| *b == b' ').count().min(3)));
    };
    let content = parts.next().unwrap_or(b"");
    let raw_time = std::str::from_utf8(time).map_err(|_| FormatError::Time(String::from_utf8_lossy(time).into()))?;
    let parsed: Timestamp = raw_time.parse().map_err(|_| FormatError::Time(raw_time.to_string()))?;
    let stream = match stream {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        other => return Err(FormatError::Stream(String::from_utf8_lossy(other).into())),
    };
    // Tags are `:`-separated for future use; the first says partial or full.
    let partial = tag.split(|b| *b == b':').next() == Some(b"P");
    Ok(Entry { raw_time, time: parsed, stream, partial, content })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_and_partial_entries() {
        let e = parse(b"2016-10-06T00:17:09.669794202Z stdout F hello world").unwrap();
        assert_eq!(e.raw_time, "2016-10-06T00:17:09.669794202Z");
        assert_eq!(e.stream, Stream::Stdout);
        assert!(!e.partial);
        assert_eq!(e.content, b"hello world");
        let e = parse(b"2016-10-06T00:17:09.669794202Z stderr P part").unwrap();
        assert!(e.partial && e.stream == Stream::Stderr);
        let e = parse(b"2016-10-06T00:17:09.669794202+02:00 stdout F ").unwrap();
        assert_eq!(e.content, b"");
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        assert!(matches!(parse(b"nonsense"), Err(FormatError::Fields(_))));
        assert!(matches!(parse(b"yesterday stdout F x"), Err(FormatError::Time(_))));
        assert!(matches!(parse(b"2016-10-06T00:17:09Z stdin F x"), Err(FormatError::Stream(_))));
    }
}
