//! CronJob schedules: standard 5-field cron (with the vixie-cron day-of-month OR
//! day-of-week rule and names like JAN and MON), the macros (@yearly, @annually, @monthly,
//! @weekly, @daily, @midnight, @hourly, @every <duration>), a `TZ=`/`CRON_TZ=` prefix, and
//! `spec.timeZone`, as upstream's cron library reads them. Parsing and the occurrence
//! search are croner's; time zones are jiff's, loaded from the system's zoneinfo as
//! kube-controller-manager's Go runtime loads them.

use std::time::Duration;

use croner::parser::{CronParser, Seconds, Year};
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::{SignedDuration, Timestamp, Zoned};

/// Where time zone files are read from (Go's default on Linux).
const ZONEINFO: &str = "/usr/share/zoneinfo";
/// Upstream gives up counting missed start times past this many, and warns.
pub const MAX_MISSED: u64 = 100;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unparseable schedule {schedule:?}: {reason}")]
    Schedule { schedule: String, reason: String },
    #[error("unknown time zone {name:?}: {reason}")]
    TimeZone { name: String, reason: String },
}

#[derive(Debug, Clone)]
pub enum Schedule {
    Cron { cron: Box<croner::Cron>, zone: TimeZone },
    /// `@every <duration>`: times `delay` apart, counted from the previous one.
    Every(Duration),
}

/// Parse `schedule` to be evaluated in `time_zone` (UTC when unset: the zone
/// kube-controller-manager's containers run in).
pub fn parse(schedule: &str, time_zone: Option<&str>) -> Result<Schedule, Error> {
    let bad = |reason: String| Error::Schedule { schedule: schedule.to_string(), reason };
    let mut zone_name = time_zone.map(str::to_string);
    let mut spec = schedule.trim();
    for prefix in ["CRON_TZ=", "TZ="] {
        if let Some(rest) = spec.strip_prefix(prefix) {
            let (name, rest) = rest.split_once(char::is_whitespace).ok_or_else(|| bad("a TZ= prefix needs a schedule after it".into()))?;
            zone_name = Some(name.to_string());
            spec = rest.trim();
        }
    }
    if let Some(every) = spec.strip_prefix("@every ") {
        let delay = parse_go_duration(every.trim()).ok_or_else(|| bad(format!("invalid duration {every:?}")))?;
        // Rounded down to whole seconds, at least one, as upstream's cron library does.
        return Ok(Schedule::Every(Duration::from_secs(delay.as_secs().max(1))));
    }
    let spec = if spec.eq_ignore_ascii_case("@midnight") { "@daily" } else { spec };
    if spec.starts_with('@') && !["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@hourly"].iter().any(|m| spec.eq_ignore_ascii_case(m)) {
        return Err(bad(format!("unrecognized descriptor {spec}")));
    }
    if !spec.starts_with('@') && spec.split_whitespace().count() != 5 {
        return Err(bad(format!("expected exactly 5 fields, found {}", spec.split_whitespace().count())));
    }
    let parser = CronParser::builder().seconds(Seconds::Disallowed).year(Year::Disallowed).build();
    let cron = parser.parse(spec).map_err(|e| bad(e.to_string()))?;
    let zone = match zone_name {
        Some(name) => load_zone(&name)?,
        None => TimeZone::UTC,
    };
    Ok(Schedule::Cron { cron: Box::new(cron), zone })
}

/// A time zone by IANA name, from the system's zoneinfo.
pub fn load_zone(name: &str) -> Result<TimeZone, Error> {
    let err = |reason: &str| Error::TimeZone { name: name.to_string(), reason: reason.to_string() };
    if name == "UTC" || name == "Etc/UTC" {
        return Ok(TimeZone::UTC);
    }
    let safe = !name.is_empty() && !name.starts_with('/') && name.split('/').all(|part| !part.is_empty() && part != "." && part != "..")
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "/_-+".contains(c));
    if !safe {
        return Err(err("not a time zone name"));
    }
    let data = std::fs::read(std::path::Path::new(ZONEINFO).join(name)).map_err(|e| err(&e.to_string()))?;
    TimeZone::tzif(name, &data).map_err(|e| err(&e.to_string()))
}

/// A Go duration such as `1h30m`, `90s` or `1.5h`.
fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Some(Duration::from_secs_f64(total))
}

fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

impl Schedule {
    /// The first scheduled time strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        match self {
            Schedule::Every(d) => Some(whole_seconds(t) + *d),
            Schedule::Cron { cron, zone } => {
                let start = whole_seconds(t).to_zoned(zone.clone());
                cron.find_next_occurrence(&start, false).ok().map(|z: Zoned| z.timestamp())
            }
        }
    }

    /// The scheduled times in (`earliest`, `now`]: the latest of them, and how many there are
    /// (counted up to `MAX_MISSED` + 1 only).
    pub fn most_recent(&self, earliest: Timestamp, now: Timestamp) -> (Option<Timestamp>, u64) {
        let Some(first) = self.next_after(earliest).filter(|t| *t <= now) else { return (None, 0) };
        let latest = match self {
            Schedule::Every(d) => {
                let steps = (now.duration_since(first).as_secs() as u64) / d.as_secs().max(1);
                first + SignedDuration::from_secs((steps * d.as_secs()) as i64)
            }
            Schedule::Cron { cron, zone } => {
                let end = whole_seconds(now).to_zoned(zone.clone());
                cron.find_previous_occurrence(&end, true).map(|z: Zoned| z.timestamp()).unwrap_or(first)
            }
        };
        let mut count = 1;
        let mut t = first;
        while count <= MAX_MISSED {
            match self.next_after(t) {
                Some(n) if n <= now => {
                    count += 1;
                    t = n;
                }
                _ => break,
            }
        }
        (Some(latest.max(first)), count)
    }

    /// The scheduled time as upstream writes it in the cronjob-scheduled-timestamp
    /// annotation: RFC 3339 in the schedule's zone.
    pub fn format(&self, t: Timestamp) -> String {
        match self {
            Schedule::Cron { zone, .. } => t.to_zoned(zone.clone()).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string().replace("+00:00", "Z"),
            Schedule::Every(_) => t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn five_fields_and_macros_give_the_next_times() {
        let every_five = parse("*/5 * * * *", None).unwrap();
        assert_eq!(every_five.next_after(ts("2025-01-01T10:03:20Z")), Some(ts("2025-01-01T10:05:00Z")));
        assert_eq!(every_five.next_after(ts("2025-01-01T10:05:00Z")), Some(ts("2025-01-01T10:10:00Z")));
        let hourly = parse("@hourly", None).unwrap();
        assert_eq!(hourly.next_after(ts("2025-01-01T10:00:00.5Z")), Some(ts("2025-01-01T11:00:00Z")));
        assert_eq!(parse("@midnight", None).unwrap().next_after(ts("2025-01-01T10:00:00Z")), Some(ts("2025-01-02T00:00:00Z")));
        // 2025-01-01 is a Wednesday; next Monday 09:30.
        assert_eq!(parse("30 9 * * MON", None).unwrap().next_after(ts("2025-01-01T00:00:00Z")), Some(ts("2025-01-06T09:30:00Z")));
        // Both day fields restricted: either matches (vixie cron).
        assert_eq!(parse("0 0 15 * MON", None).unwrap().next_after(ts("2025-01-01T00:00:00Z")), Some(ts("2025-01-06T00:00:00Z")));
        assert_eq!(parse("@every 90s", None).unwrap().next_after(ts("2025-01-01T00:00:00.3Z")), Some(ts("2025-01-01T00:01:30Z")));
        for bad in ["* * * *", "* * * * * *", "@sometimes", "61 * * * *", "@every soon"] {
            assert!(parse(bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn time_zones_shift_the_schedule() {
        if !std::path::Path::new(ZONEINFO).join("Europe/Berlin").exists() {
            eprintln!("SKIPPED: no {ZONEINFO}/Europe/Berlin on this machine");
            return;
        }
        // Midnight in Berlin in winter is 23:00 UTC.
        let s = parse("0 0 * * *", Some("Europe/Berlin")).unwrap();
        assert_eq!(s.next_after(ts("2025-01-01T12:00:00Z")), Some(ts("2025-01-01T23:00:00Z")));
        assert_eq!(s.format(ts("2025-01-01T23:00:00Z")), "2025-01-02T00:00:00+01:00");
        let prefixed = parse("TZ=Europe/Berlin 0 0 * * *", None).unwrap();
        assert_eq!(prefixed.next_after(ts("2025-07-01T12:00:00Z")), Some(ts("2025-07-01T22:00:00Z")));
        assert!(matches!(parse("0 0 * * *", Some("Mars/Olympus")), Err(Error::TimeZone { .. })));
        assert!(matches!(parse("0 0 * * *", Some("../../etc/passwd")), Err(Error::TimeZone { .. })));
        assert_eq!(parse("* * * * *", None).unwrap().format(ts("2025-01-01T23:00:00Z")), "2025-01-01T23:00:00Z");
    }

    #[test]
    fn most_recent_counts_missed_start_times() {
        let s = parse("*/10 * * * *", None).unwrap();
        assert_eq!(s.most_recent(ts("2025-01-01T10:00:00Z"), ts("2025-01-01T10:09:59Z")), (None, 0));
        assert_eq!(s.most_recent(ts("2025-01-01T10:00:00Z"), ts("2025-01-01T10:10:00Z")), (Some(ts("2025-01-01T10:10:00Z")), 1));
        assert_eq!(s.most_recent(ts("2025-01-01T10:00:00Z"), ts("2025-01-01T10:45:00Z")), (Some(ts("2025-01-01T10:40:00Z")), 4));
        let minutely = parse("* * * * *", None).unwrap();
        let (latest, missed) = minutely.most_recent(ts("2025-01-01T00:00:00Z"), ts("2025-01-02T00:00:30Z"));
        assert_eq!(latest, Some(ts("2025-01-02T00:00:00Z")));
        assert!(missed > MAX_MISSED, "{missed}");
        let every = parse("@every 1m", None).unwrap();
        assert_eq!(every.most_recent(ts("2025-01-01T00:00:00Z"), ts("2025-01-01T00:03:10Z")), (Some(ts("2025-01-01T00:03:00Z")), 3));
    }
}
