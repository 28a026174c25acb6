//! The apimachinery types whose JSON is not their protobuf fields: times, durations and the
//! Go duration syntax, written the way Go's `encoding/json` writes them.

use time::OffsetDateTime;
use time::macros::format_description;

/// `metav1.Time` / `metav1.MicroTime` from (seconds, nanos) since the epoch: RFC 3339 in UTC,
/// whole seconds for Time and six fractional digits for MicroTime, as their MarshalJSON
/// writes them. The zero time (0, 0) is JSON null, as Go writes a zero Time. None when the
/// instant has no RFC 3339 form (outside years 0 to 9999).
pub(crate) fn rfc3339(seconds: i64, nanos: i64, micro: bool) -> Option<serde_json::Value> {
    if seconds == 0 && nanos == 0 {
        return Some(serde_json::Value::Null);
    }
    let instant = OffsetDateTime::from_unix_timestamp(seconds).ok()?;
    let instant = instant.checked_add(time::Duration::nanoseconds(nanos))?;
    if !(0..=9999).contains(&instant.year()) {
        return None;
    }
    let text = if micro {
        instant.format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        ))
    } else {
        instant.format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
    };
    text.ok().map(serde_json::Value::String)
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `1m0s`, `1.5ms`, `0s`.
pub(crate) fn go_duration(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let u = nanos.unsigned_abs();
    if u == 0 {
        return "0s".to_string();
    }
    if u < 1_000_000_000 {
        let (unit, precision) = match u {
            0..1_000 => ("ns", 0),
            1_000..1_000_000 => ("µs", 3),
            _ => ("ms", 6),
        };
        let scale = 10u64.pow(precision);
        return format!(
            "{sign}{}{}{unit}",
            u / scale,
            fraction(u % scale, precision)
        );
    }
    let seconds = u / 1_000_000_000;
    let frac = fraction(u % 1_000_000_000, 9);
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if h > 0 {
        format!("{sign}{h}h{m}m{s}{frac}s")
    } else if m > 0 {
        format!("{sign}{m}m{s}{frac}s")
    } else {
        format!("{sign}{s}{frac}s")
    }
}

/// `.123` for the `digits`-digit fraction `value`, trailing zeros dropped; empty for zero.
fn fraction(value: u64, digits: u32) -> String {
    if value == 0 {
        return String::new();
    }
    let text = format!("{value:0width$}", width = digits as usize);
    format!(".{}", text.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn time_is_whole_seconds_and_microtime_has_six_digits() {
        // 2026-12-02T10:00:00Z
        assert_eq!(
            rfc3339(1_796_205_600, 0, false),
            Some(json!("2026-12-02T10:00:00Z"))
        );
        assert_eq!(
            rfc3339(1_796_205_600, 123_456_789, false),
            Some(json!("2026-12-02T10:00:00Z"))
        );
        assert_eq!(
            rfc3339(1_796_205_600, 123_456_789, true),
            Some(json!("2026-12-02T10:00:00.123456Z"))
        );
        assert_eq!(
            rfc3339(1_796_205_600, 0, true),
            Some(json!("2026-12-02T10:00:00.000000Z"))
        );
    }

    #[test]
    fn zero_time_is_null_and_out_of_range_is_refused() {
        assert_eq!(rfc3339(0, 0, false), Some(serde_json::Value::Null));
        assert_eq!(
            rfc3339(-62_135_596_800 - 400 * 86_400, 0, false),
            None,
            "year -1"
        );
        assert_eq!(rfc3339(i64::MAX, 0, false), None);
    }

    #[test]
    fn durations_read_as_go_prints_them() {
        let s = 1_000_000_000i64;
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(5), "5ns");
        assert_eq!(go_duration(1_500), "1.5µs");
        assert_eq!(go_duration(1_500_000), "1.5ms");
        assert_eq!(go_duration(30 * s), "30s");
        assert_eq!(go_duration(60 * s), "1m0s");
        assert_eq!(go_duration(3600 * s), "1h0m0s");
        assert_eq!(go_duration(3723 * s + 500_000_000), "1h2m3.5s");
        assert_eq!(go_duration(-90 * s), "-1m30s");
    }
}
