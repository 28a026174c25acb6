//! The CRI container log format: what the kubelet's `kubectl logs` reader parses.
//!
//! Each entry is one line `<timestamp> <stream> <tag> <content>\n`:
//! - `timestamp` is Go's RFC3339Nano (`2006-01-02T15:04:05.999999999Z07:00`), here always in
//!   UTC (`Z`), the fraction with its trailing zeros trimmed and left out when zero;
//! - `stream` is `stdout` or `stderr`;
//! - `tag` is `F` for a full line or the last piece of one, `P` for a piece of a line that
//!   goes on in the next `P`/`F` entry of the same stream.
//!
//! A line longer than [`MAX_LINE`] is cut into `P` pieces of exactly `MAX_LINE` bytes and a
//! final `F` (a line of exactly `MAX_LINE` bytes is one `F`). Output left without a newline
//! when the stream ends is written as `P`, as containerd does: the line never ended. A `\r`
//! right before the `\n` is dropped, as containerd does, so CRLF output reads like LF output.
//! A line is held back until its newline (or `MAX_LINE` bytes) arrives, so a prompt without
//! a newline shows up only when the stream ends (containerd behaves the same).
//!
//! The writer is pure: it writes to any `Write` and takes time from a [`Clock`], so the
//! format is unit-tested with a fake clock.

use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

/// The longest content of one entry: containerd's default `max_container_log_line_size`.
pub const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

/// Where timestamps come from.
pub trait Clock {
    fn now(&self) -> SystemTime;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Turns the bytes of the container's two streams into CRI log entries on `out`.
pub struct CriLogWriter<W: Write, C: Clock> {
    out: W,
    clock: C,
    max_line: usize,
    /// The unfinished line of each stream.
    pending: [Vec<u8>; 2],
}

impl<W: Write, C: Clock> CriLogWriter<W, C> {
    pub fn new(out: W, clock: C) -> Self {
        Self::with_max_line(out, clock, MAX_LINE)
    }

    pub fn with_max_line(out: W, clock: C, max_line: usize) -> Self {
        assert!(max_line > 0, "a log line must be allowed some content");
        CriLogWriter { out, clock, max_line, pending: [Vec::new(), Vec::new()] }
    }

    /// Feed bytes the container wrote on `stream`; every line (or piece) they complete is
    /// written out.
    pub fn write(&mut self, stream: Stream, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let room = self.max_line - self.pending[stream.index()].len();
            match data.iter().position(|&b| b == b'\n') {
                // The newline comes within the room left (a line of exactly max_line is
                // one full entry).
                Some(nl) if nl <= room => {
                    let mut line = std::mem::take(&mut self.pending[stream.index()]);
                    line.extend_from_slice(&data[..nl]);
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    self.entry(stream, 'F', &line)?;
                    data = &data[nl + 1..];
                }
                _ => {
                    let take = room.min(data.len());
                    self.pending[stream.index()].extend_from_slice(&data[..take]);
                    data = &data[take..];
                    // Full and more is coming: this piece is a partial. When exactly full
                    // and the input is used up, wait: a newline may come next.
                    if self.pending[stream.index()].len() == self.max_line && !data.is_empty() && data[0] != b'\n' {
                        let piece = std::mem::take(&mut self.pending[stream.index()]);
                        self.entry(stream, 'P', &piece)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The stream ended: what is left of its last line is written as a partial.
    pub fn finish(&mut self, stream: Stream) -> io::Result<()> {
        let rest = std::mem::take(&mut self.pending[stream.index()]);
        if !rest.is_empty() {
            self.entry(stream, 'P', &rest)?;
        }
        self.out.flush()
    }

    /// Write from now on to `out` (the log was reopened); returns the old output.
    /// Unfinished lines stay pending and go to the new output.
    pub fn replace_output(&mut self, out: W) -> W {
        std::mem::replace(&mut self.out, out)
    }

    pub fn output(&self) -> &W {
        &self.out
    }

    /// One entry, written with a single `write` so that a reader never sees half of it.
    fn entry(&mut self, stream: Stream, tag: char, content: &[u8]) -> io::Result<()> {
        let mut buf = Vec::with_capacity(content.len() + 48);
        buf.extend_from_slice(rfc3339_nano(self.clock.now()).as_bytes());
        buf.push(b' ');
        buf.extend_from_slice(stream.name().as_bytes());
        buf.push(b' ');
        buf.push(tag as u8);
        buf.push(b' ');
        buf.extend_from_slice(content);
        buf.push(b'\n');
        self.out.write_all(&buf)
    }
}

/// `t` as Go's `time.RFC3339Nano` formats a UTC time.
pub fn rfc3339_nano(t: SystemTime) -> String {
    // Times before 1970 do not occur in container logs; clamp rather than fail.
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    let mut s = format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60);
    let nanos = d.subsec_nanos();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days` algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::time::Duration;

    /// A clock that ticks one nanosecond per reading, from a fixed instant.
    struct FakeClock(Cell<u64>);

    impl Clock for &FakeClock {
        fn now(&self) -> SystemTime {
            let n = self.0.get();
            self.0.set(n + 1);
            UNIX_EPOCH + Duration::from_nanos(n)
        }
    }

    const T0: u64 = 1_700_000_000_123_456_700; // 2023-11-14T22:13:20.1234567Z

    fn writer(clock: &FakeClock, max: usize) -> CriLogWriter<Vec<u8>, &FakeClock> {
        CriLogWriter::with_max_line(Vec::new(), clock, max)
    }

    fn lines(w: &CriLogWriter<Vec<u8>, &FakeClock>) -> Vec<String> {
        String::from_utf8(w.output().clone()).unwrap().lines().map(str::to_string).collect()
    }

    /// The entries without their timestamps: `(stream, tag, content)`.
    fn entries(w: &CriLogWriter<Vec<u8>, &FakeClock>) -> Vec<(String, String, String)> {
        lines(w)
            .iter()
            .map(|l| {
                let mut it = l.splitn(4, ' ');
                let _ts = it.next().unwrap();
                (it.next().unwrap().to_string(), it.next().unwrap().to_string(), it.next().unwrap().to_string())
            })
            .collect()
    }

    fn e(stream: &str, tag: &str, content: &str) -> (String, String, String) {
        (stream.to_string(), tag.to_string(), content.to_string())
    }

    #[test]
    fn timestamps_are_go_rfc3339nano_in_utc() {
        let at = |n: u64| rfc3339_nano(UNIX_EPOCH + Duration::from_nanos(n));
        assert_eq!(at(T0), "2023-11-14T22:13:20.1234567Z");
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(1), "1970-01-01T00:00:00.000000001Z");
        assert_eq!(at(951_782_400_500_000_000), "2000-02-29T00:00:00.5Z");
        assert_eq!(at(4_102_444_799_999_999_999), "2099-12-31T23:59:59.999999999Z");
        assert_eq!(at(1_709_251_199_000_000_000), "2024-02-29T23:59:59Z");
    }

    #[test]
    fn short_lines_are_full_entries_with_a_timestamp() {
        let clock = FakeClock(Cell::new(T0));
        let mut w = writer(&clock, MAX_LINE);
        w.write(Stream::Stdout, b"hello\nworld\n").unwrap();
        assert_eq!(lines(&w), ["2023-11-14T22:13:20.1234567Z stdout F hello", "2023-11-14T22:13:20.123456701Z stdout F world"]);
    }

    #[test]
    fn lines_are_assembled_across_writes_and_crlf_reads_as_lf() {
        let clock = FakeClock(Cell::new(T0));
        let mut w = writer(&clock, MAX_LINE);
        w.write(Stream::Stdout, b"hel").unwrap();
        w.write(Stream::Stdout, b"lo\r").unwrap();
        w.write(Stream::Stdout, b"\n\n").unwrap();
        assert_eq!(entries(&w), [e("stdout", "F", "hello"), e("stdout", "F", "")]);
        // An empty line is an entry with empty content, its separator kept.
        assert!(lines(&w)[1].ends_with(" stdout F "), "{:?}", lines(&w));
    }

    #[test]
    fn both_streams_keep_their_own_pending_lines() {
        let clock = FakeClock(Cell::new(T0));
        let mut w = writer(&clock, MAX_LINE);
        w.write(Stream::Stdout, b"out-").unwrap();
        w.write(Stream::Stderr, b"err line\n").unwrap();
        w.write(Stream::Stdout, b"line\n").unwrap();
        assert_eq!(entries(&w), [e("stderr", "F", "err line"), e("stdout", "F", "out-line")]);
    }

    #[test]
    fn a_line_of_exactly_the_maximum_is_one_full_entry() {
        let clock = FakeClock(Cell::new(T0));
        let mut w = writer(&clock, MAX_LINE);
        let line = "a".repeat(MAX_LINE);
        w.write(Stream::Stdout, line.as_bytes()).unwrap();
        w.write(Stream::Stdout, b"\n").unwrap();
        assert_eq!(entries(&w), [e("stdout", "F", &line)]);
    }

    #[test]
    fn one_byte_over_the_maximum_is_a_partial_and_a_full() {
        let clock = FakeClock(Cell::new(T0));
        let mut w = writer(&clock, MAX_LINE);
        let line = format!("{}b\n", "a".repeat(MAX_LINE));
        w.write(Stream::Stderr, line.as_bytes()).unwrap();
        assert_eq!(entries(&w), [e("stderr", "P", &"a".repeat(MAX_LINE)), e("stderr", "F", "b")]);
    }

    #[test]
    fn long_lines_split_into_partials_then_a_full() {
        let clock = FakeClock(Cell::new(T0));
        let mut w = writer(&clock, 4);
        // Fed in odd-sized chunks: the split does not depend on how reads fall.
        for chunk in [&b"abcdefg"[..], b"hijk", b"lmn\nxy\n"] {
            w.write(Stream::Stdout, chunk).unwrap();
        }
        assert_eq!(entries(&w), [e("stdout", "P", "abcd"), e("stdout", "P", "efgh"), e("stdout", "P", "ijkl"), e("stdout", "F", "mn"), e("stdout", "F", "xy")]);
    }

    #[test]
    fn forty_kib_is_two_partials_and_a_full() {
        let clock = FakeClock(Cell::new(T0));
        let mut w = writer(&clock, MAX_LINE);
        let line = "x".repeat(40 * 1024) + "\n";
        w.write(Stream::Stdout, line.as_bytes()).unwrap();
        let got = entries(&w);
        let tags: Vec<_> = got.iter().map(|(_, t, c)| (t.as_str(), c.len())).collect();
        assert_eq!(tags, [("P", MAX_LINE), ("P", MAX_LINE), ("F", 40 * 1024 - 2 * MAX_LINE)]);
    }

    #[test]
    fn output_without_a_final_newline_is_a_partial_at_the_end() {
        let clock = FakeClock(Cell::new(T0));
        let mut w = writer(&clock, MAX_LINE);
        w.write(Stream::Stdout, b"done\nno newline").unwrap();
        assert_eq!(entries(&w), [e("stdout", "F", "done")]);
        w.finish(Stream::Stdout).unwrap();
        w.finish(Stream::Stderr).unwrap();
        assert_eq!(entries(&w), [e("stdout", "F", "done"), e("stdout", "P", "no newline")]);
    }

    #[test]
    fn exactly_full_at_the_end_of_the_stream_is_a_partial() {
        let clock = FakeClock(Cell::new(T0));
        let mut w = writer(&clock, 4);
        w.write(Stream::Stdout, b"abcd").unwrap();
        assert!(entries(&w).is_empty());
        w.finish(Stream::Stdout).unwrap();
        assert_eq!(entries(&w), [e("stdout", "P", "abcd")]);
    }

    #[test]
    fn pending_lines_move_to_the_new_output_on_reopen() {
        let clock = FakeClock(Cell::new(T0));
        let mut w = writer(&clock, MAX_LINE);
        w.write(Stream::Stdout, b"first\nsec").unwrap();
        let old = w.replace_output(Vec::new());
        w.write(Stream::Stdout, b"ond\n").unwrap();
        assert!(String::from_utf8(old).unwrap().ends_with(" stdout F first\n"));
        assert_eq!(entries(&w), [e("stdout", "F", "second")]);
    }
}
