//! How long ago something happened, in the short form `kubectl get` prints (`45s`, `5m3s`,
//! `3h`, `2d5h`): apimachinery's HumanDuration rules, which drop precision as the span grows.

use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

/// A span as HumanDuration prints it. A small negative span (clock skew of under two
/// seconds) reads as `0s`; anything earlier is `<invalid>`.
pub fn human_duration(d: Duration) -> String {
    let seconds = d.whole_seconds();
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 { format!("{}d", hours / 24) } else { format!("{}d{h}h", hours / 24) };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        return if days == 0 { format!("{}y", hours / 24 / 365) } else { format!("{}y{days}d", hours / 24 / 365) };
    }
    format!("{}y", hours / 24 / 365)
}

/// Parses an RFC 3339 timestamp as the API writes them (`2024-05-01T10:00:00Z`, or with
/// fractional seconds for MicroTime).
pub fn parse_timestamp(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// The age column of a timestamp field: `<unknown>` when it is absent or unreadable, as
/// upstream prints a zero time.
pub fn since(timestamp: Option<&str>, now: OffsetDateTime) -> String {
    match timestamp.and_then(parse_timestamp) {
        Some(t) => human_duration(now - t),
        None => "<unknown>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn human_duration_follows_the_apimachinery_steps() {
        let cases = [
            (Duration::seconds(-5), "<invalid>"),
            (Duration::milliseconds(-1500), "0s"),
            (Duration::seconds(0), "0s"),
            (Duration::seconds(45), "45s"),
            (Duration::seconds(119), "119s"),
            (Duration::seconds(120), "2m"),
            (Duration::seconds(5 * 60 + 3), "5m3s"),
            (Duration::minutes(10), "10m"),
            (Duration::minutes(179), "179m"),
            (Duration::hours(3), "3h"),
            (Duration::minutes(3 * 60 + 20), "3h20m"),
            (Duration::hours(8), "8h"),
            (Duration::hours(47), "47h"),
            (Duration::hours(48), "2d"),
            (Duration::hours(53), "2d5h"),
            (Duration::days(8), "8d"),
            (Duration::days(729), "729d"),
            (Duration::days(730), "2y"),
            (Duration::days(731), "2y1d"),
            (Duration::days(365 * 9), "9y"),
        ];
        for (d, want) in cases {
            assert_eq!(human_duration(d), want, "{d:?}");
        }
    }

    #[test]
    fn since_reads_timestamps_and_marks_missing_ones() {
        let now = datetime!(2025-01-01 12:00:00 UTC);
        assert_eq!(since(Some("2025-01-01T11:59:15Z"), now), "45s");
        assert_eq!(since(Some("2024-12-30T06:59:59.123456Z"), now), "2d5h");
        assert_eq!(since(None, now), "<unknown>");
        assert_eq!(since(Some("yesterday"), now), "<unknown>");
    }
}
