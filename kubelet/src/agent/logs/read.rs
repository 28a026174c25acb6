//! Reading a container's CRI log file for `kubectl logs`: the options of the kubelet's
//! containerLogs endpoint (tailLines, timestamps, sinceSeconds/sinceTime, limitBytes,
//! follow), partial entries joined into their lines, and following the file as it grows
//! and across rotation until the container has exited.

use std::collections::VecDeque;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::format;

/// How often a followed file is checked for more when it had none.
const FOLLOW_POLL: Duration = Duration::from_millis(100);
/// How often a followed container is asked whether it still runs.
const RUNNING_CHECK: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("invalid log options: {0}")]
    Options(String),
    #[error("reading the log file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
}

/// The containerLogs query, validated.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogOptions {
    pub follow: bool,
    pub tail_lines: Option<u64>,
    pub timestamps: bool,
    /// Lines before this are left out (from sinceTime, or now less sinceSeconds).
    pub since: Option<Timestamp>,
    pub limit_bytes: Option<u64>,
    pub previous: bool,
}

impl LogOptions {
    /// From the raw query (`follow=true&tailLines=10`...); `now` resolves sinceSeconds.
    pub fn from_query(query: &str, now: Timestamp) -> Result<LogOptions, LogError> {
        let bad = |m: String| LogError::Options(m);
        let mut o = LogOptions::default();
        let mut since_seconds = None;
        let mut since_time = None;
        for (k, v) in query_pairs(query) {
            let flag = || matches!(v.as_str(), "true" | "1" | "True" | "");
            match k.as_str() {
                "follow" => o.follow = flag(),
                "timestamps" => o.timestamps = flag(),
                "previous" => o.previous = flag(),
                "tailLines" => {
                    let n: i64 = v.parse().map_err(|_| bad(format!("tailLines {v:?} is not a number")))?;
                    // A negative count means all, as upstream's `--tail=-1`.
                    o.tail_lines = (n >= 0).then_some(n as u64);
                }
                "limitBytes" => {
                    let n: i64 = v.parse().map_err(|_| bad(format!("limitBytes {v:?} is not a number")))?;
                    if n < 1 {
                        return Err(bad("limitBytes must be greater than zero".into()));
                    }
                    o.limit_bytes = Some(n as u64);
                }
                "sinceSeconds" => {
                    let n: i64 = v.parse().map_err(|_| bad(format!("sinceSeconds {v:?} is not a number")))?;
                    if n < 1 {
                        return Err(bad("sinceSeconds must be greater than zero".into()));
                    }
                    since_seconds = Some(n);
                }
                "sinceTime" => since_time = Some(v.parse::<Timestamp>().map_err(|_| bad(format!("sinceTime {v:?} is not an RFC 3339 time")))?),
                _ => {}
            }
        }
        o.since = match (since_seconds, since_time) {
            (Some(_), Some(_)) => return Err(bad("at most one of sinceTime or sinceSeconds may be specified".into())),
            (Some(s), None) => now.checked_sub(SignedDuration::from_secs(s)).ok(),
            (None, t) => t,
        };
        Ok(o)
    }
}

/// The query's pairs in order, percent-decoded (repeats kept).
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Whether a followed container still runs; following ends once it does not.
#[async_trait]
pub trait StillRunning: Send + Sync {
    async fn still_running(&self) -> bool;
}

/// Turns entries into output lines: partial entries joined, timestamps applied; each line
/// keeps its time for `since`, which upstream applies after `tailLines`.
#[derive(Debug, Default)]
struct Lines {
    timestamps: bool,
    since: Option<Timestamp>,
    /// A line begun by partial entries: its first timestamp and its content so far.
    pending: Option<(String, Timestamp, Vec<u8>)>,
}

impl Lines {
    fn new(o: &LogOptions) -> Lines {
        Lines { timestamps: o.timestamps, since: o.since, pending: None }
    }

    /// The lines at or after `since`.
    fn since(&self, lines: impl IntoIterator<Item = (Timestamp, Vec<u8>)>) -> impl Iterator<Item = Vec<u8>> {
        let since = self.since;
        lines.into_iter().filter(move |(t, _)| since.is_none_or(|s| *t >= s)).map(|(_, line)| line)
    }

    /// Every complete output line in `data`'s complete lines; the bytes consumed.
    fn feed(&mut self, data: &[u8], out: &mut Vec<(Timestamp, Vec<u8>)>) -> usize {
        let mut used = 0;
        while let Some(nl) = data[used..].iter().position(|b| *b == b'\n') {
            let line = &data[used..used + nl];
            used += nl + 1;
            let Ok(entry) = format::parse(line) else {
                tracing::debug!(line = %String::from_utf8_lossy(line), "a log line that is not in the CRI format was skipped");
                continue;
            };
            let (raw, time, mut content) = match self.pending.take() {
                Some((raw, time, mut content)) => {
                    content.extend_from_slice(entry.content);
                    (raw, time, content)
                }
                None => (entry.raw_time.to_string(), entry.time, entry.content.to_vec()),
            };
            if entry.partial {
                self.pending = Some((raw, time, content));
                continue;
            }
            content.push(b'\n');
            if self.timestamps {
                let mut line = Vec::with_capacity(raw.len() + 1 + content.len());
                line.extend_from_slice(raw.as_bytes());
                line.push(b' ');
                line.extend_from_slice(&content);
                content = line;
            }
            out.push((time, content));
        }
        used
    }
}

/// Where the output goes, with limitBytes applied; false once nothing more is to be sent
/// (the limit is reached or the client went away).
struct Sink<'a, W> {
    out: &'a mut W,
    left: Option<u64>,
}

impl<W: AsyncWrite + Unpin> Sink<'_, W> {
    async fn write(&mut self, lines: impl IntoIterator<Item = Vec<u8>>) -> bool {
        for line in lines {
            let take = match self.left {
                Some(0) => return false,
                Some(left) => (line.len() as u64).min(left) as usize,
                None => line.len(),
            };
            if self.out.write_all(&line[..take]).await.is_err() {
                return false;
            }
            if let Some(left) = self.left.as_mut() {
                *left -= take as u64;
                if *left == 0 {
                    let _ = self.out.flush().await;
                    return false;
                }
            }
        }
        self.out.flush().await.is_ok()
    }
}

/// The file's identity, to see it replaced by rotation.
fn inode(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Write the log at `path` to `out` as `options` ask. With `follow`, keep reading as the
/// file grows and after it is rotated, until `running` says the container has exited (or
/// forever without it) or `out` is closed.
pub async fn write_logs<W: AsyncWrite + Unpin>(path: &Path, options: &LogOptions, running: Option<&dyn StillRunning>, out: &mut W) -> Result<(), LogError> {
    let read_err = |source| LogError::Read { path: path.to_path_buf(), source };
    let mut file = tokio::fs::File::open(path).await.map_err(read_err)?;
    let mut identity = file.metadata().await.ok().map(|m| (m.dev(), m.ino()));
    let mut lines = Lines::new(options);
    let mut sink = Sink { out, left: options.limit_bytes };
    let mut buf = Vec::new();
    file.read_to_end(&mut buf).await.map_err(read_err)?;
    let mut first = Vec::new();
    let used = lines.feed(&buf, &mut first);
    buf.drain(..used);
    let skip = options.tail_lines.map_or(0, |n| first.len().saturating_sub(n as usize));
    let first: VecDeque<Vec<u8>> = lines.since(first.into_iter().skip(skip)).collect();
    if !sink.write(first).await || !options.follow {
        return Ok(());
    }
    let mut last_check = Instant::now();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut chunk).await.map_err(read_err)?;
        if n > 0 {
            buf.extend_from_slice(&chunk[..n]);
            let mut out = Vec::new();
            let used = lines.feed(&buf, &mut out);
            buf.drain(..used);
            if !sink.write(lines.since(out)).await {
                return Ok(());
            }
            continue;
        }
        // At the end: rotated away (a new file under the name), exited, or just quiet.
        let now_identity = inode(path);
        if now_identity.is_some() && now_identity != identity {
            // Lines written between our last read and the rename are still in the old file:
            // read it to its end once more, then go on with the new one.
            let mut rest = Vec::new();
            file.read_to_end(&mut rest).await.map_err(read_err)?;
            if !rest.is_empty() {
                buf.extend_from_slice(&rest);
                let mut out = Vec::new();
                let used = lines.feed(&buf, &mut out);
                buf.drain(..used);
                if !sink.write(lines.since(out)).await {
                    return Ok(());
                }
            }
            match tokio::fs::File::open(path).await {
                Ok(f) => {
                    file = f;
                    identity = now_identity;
                    buf.clear();
                    continue;
                }
                Err(e) => tracing::debug!(error = %e, "a rotated log file's successor could not be opened yet"),
            }
        }
        if let Some(running) = running
            && last_check.elapsed() >= RUNNING_CHECK
        {
            last_check = Instant::now();
            if !running.still_running().await {
                // Whatever it wrote last is in the file by now.
                let mut rest = Vec::new();
                file.read_to_end(&mut rest).await.map_err(read_err)?;
                buf.extend_from_slice(&rest);
                let mut out = Vec::new();
                lines.feed(&buf, &mut out);
                sink.write(lines.since(out)).await;
                return Ok(());
            }
        }
        // A client that went away is seen only on a write: an empty one tells (a closed
        // pipe refuses even that) without sending anything.
        if sink.out.write(&[]).await.is_err() {
            return Ok(());
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    const LOG: &str = "2024-01-01T00:00:01.000000001Z stdout F one\n\
2024-01-01T00:00:02Z stderr P tw\n\
2024-01-01T00:00:02.5Z stderr F o\n\
2024-01-01T00:00:03Z stdout F three\n";

    fn now() -> Timestamp {
        "2024-01-01T00:00:10Z".parse().unwrap()
    }

    async fn read(log: &str, query: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, log).unwrap();
        let mut out = Vec::new();
        write_logs(&path, &LogOptions::from_query(query, now()).unwrap(), None, &mut out).await.unwrap();
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn partial_entries_join_their_line() {
        assert_eq!(read(LOG, "").await, "one\ntwo\nthree\n");
    }

    #[tokio::test]
    async fn tail_timestamps_since_and_limit() {
        assert_eq!(read(LOG, "tailLines=2").await, "two\nthree\n");
        assert_eq!(read(LOG, "tailLines=0").await, "");
        assert_eq!(read(LOG, "tailLines=-1").await, "one\ntwo\nthree\n");
        assert_eq!(read(LOG, "timestamps=true&tailLines=1").await, "2024-01-01T00:00:03Z three\n");
        assert_eq!(read(LOG, "timestamps=true&tailLines=2").await, "2024-01-01T00:00:02Z two\n2024-01-01T00:00:03Z three\n");
        assert_eq!(read(LOG, "sinceTime=2024-01-01T00%3A00%3A02Z").await, "two\nthree\n");
        assert_eq!(read(LOG, "sinceSeconds=8").await, "two\nthree\n");
        // Upstream takes the tail first, then leaves out what is too old.
        assert_eq!(read(LOG, "tailLines=2&sinceTime=2024-01-01T00:00:03Z").await, "three\n");
        assert_eq!(read(LOG, "limitBytes=6").await, "one\ntw");
        assert_eq!(read("garbage\n2024-01-01T00:00:03Z stdout F ok\n2024-01-01T00:00:04Z stdout F unfinis", "").await, "ok\n");
    }

    #[test]
    fn invalid_options_are_refused() {
        assert!(LogOptions::from_query("sinceSeconds=1&sinceTime=2024-01-01T00:00:00Z", now()).is_err());
        assert!(LogOptions::from_query("limitBytes=0", now()).is_err());
        assert!(LogOptions::from_query("tailLines=x", now()).is_err());
        let o = LogOptions::from_query("follow=true&previous=true", now()).unwrap();
        assert!(o.follow && o.previous);
    }

    struct Flag(Arc<AtomicBool>);
    #[async_trait]
    impl StillRunning for Flag {
        async fn still_running(&self) -> bool {
            self.0.load(Ordering::SeqCst)
        }
    }

    #[tokio::test]
    async fn following_ends_when_the_client_goes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, "2024-01-01T00:00:01Z stdout F first\n").unwrap();
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let flag = Flag(Arc::new(AtomicBool::new(true)));
        let task = tokio::spawn(async move {
            let o = LogOptions { follow: true, ..Default::default() };
            write_logs(&path, &o, Some(&flag), &mut server).await.unwrap();
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(client);
        tokio::time::timeout(Duration::from_secs(2), task).await.expect("the follower noticed the client is gone").unwrap();
    }

    #[tokio::test]
    async fn follow_reads_growth_and_rotation_until_exit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, "2024-01-01T00:00:01Z stdout F first\n").unwrap();
        let running = Arc::new(AtomicBool::new(true));
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        let p = path.clone();
        let flag = Flag(running.clone());
        let task = tokio::spawn(async move {
            let o = LogOptions { follow: true, ..Default::default() };
            write_logs(&p, &o, Some(&flag), &mut server).await.unwrap();
        });
        let mut got = Vec::new();
        let mut read_until = async |want: &str| {
            let mut b = [0u8; 1024];
            while !String::from_utf8_lossy(&got).contains(want) {
                let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut b)).await.expect("more log in time").unwrap();
                got.extend_from_slice(&b[..n]);
            }
        };
        read_until("first\n").await;
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"2024-01-01T00:00:02Z stdout P sec").unwrap();
        f.write_all(b"\n2024-01-01T00:00:02Z stdout F ond\n").unwrap();
        read_until("second\n").await;
        // Rotation: the file is renamed, the last lines land in the old one, then a new one.
        f.write_all(b"2024-01-01T00:00:03Z stdout F third\n").unwrap();
        std::fs::rename(&path, dir.path().join("0.log.20240101-000003")).unwrap();
        std::fs::write(&path, "2024-01-01T00:00:04Z stdout F fourth\n").unwrap();
        read_until("fourth\n").await;
        running.store(false, Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(5), task).await.expect("following ends when the container exits").unwrap();
        assert_eq!(String::from_utf8(got).unwrap(), "first\nsecond\nthird\nfourth\n");
    }
}
