//! `snapshots.schedule`: standard 5-field cron, LXD's `@` aliases, comma-space lists.

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, Timelike};

use super::Error;

/// One parsed 5-field cron expression (robfig/cron `ParseStandard` semantics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronSpec {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    /// Day-of-month or day-of-week was `*`/`?`: days must match both (else either).
    dom_star: bool,
    dow_star: bool,
}

/// A whole `snapshots.schedule` value: zero or more cron specs (empty for `@never`), and
/// whether `@startup` asks for a snapshot whenever the instance starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    specs: Vec<CronSpec>,
    startup: bool,
}

struct Field {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Field = Field { min: 0, max: 59, names: &[] };
const HOUR: Field = Field { min: 0, max: 23, names: &[] };
const DOM: Field = Field { min: 1, max: 31, names: &[] };
const MONTH: Field = Field { min: 1, max: 12, names: &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"] };
const DOW: Field = Field { min: 0, max: 6, names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"] };

/// LXD's aliases; `M` and `H` are replaced by a minute and hour derived from the subject
/// (instance) ID, spreading load like LXD's obfuscation.
const ALIASES: &[(&str, &str)] = &[
    ("@hourly", "M * * * *"),
    ("@daily", "M H * * *"),
    ("@midnight", "M 0 * * *"),
    ("@weekly", "M H * * 0"),
    ("@monthly", "M H 1 * *"),
    ("@annually", "M H 1 1 *"),
    ("@yearly", "M H 1 1 *"),
];

impl CronSpec {
    /// Parses `minute hour day-of-month month day-of-week`.
    pub fn parse(spec: &str) -> Result<CronSpec, Error> {
        let bad = |reason: String| Error::Schedule { spec: spec.to_string(), reason };
        let fields: Vec<&str> = spec.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(bad(format!("expected 5 fields, found {}", fields.len())));
        }
        let (minute, _) = parse_field(fields[0], &MINUTE).map_err(&bad)?;
        let (hour, _) = parse_field(fields[1], &HOUR).map_err(&bad)?;
        let (dom, dom_star) = parse_field(fields[2], &DOM).map_err(&bad)?;
        let (month, _) = parse_field(fields[3], &MONTH).map_err(&bad)?;
        let (dow, dow_star) = parse_field(fields[4], &DOW).map_err(&bad)?;
        Ok(CronSpec { minute, hour, dom, month, dow, dom_star, dow_star })
    }

    /// Whether the minute of `t` is scheduled.
    pub fn matches(&self, t: NaiveDateTime) -> bool {
        bit(self.minute, t.minute()) && bit(self.hour, t.hour()) && bit(self.month, t.month()) && self.day_matches(t.date())
    }

    fn day_matches(&self, d: NaiveDate) -> bool {
        let dom = bit(self.dom, d.day());
        let dow = bit(self.dow, d.weekday().num_days_from_sunday());
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first scheduled minute strictly after `t`, searching up to five years ahead.
    pub fn next_after(&self, t: NaiveDateTime) -> Option<NaiveDateTime> {
        let mut cur = t.with_second(0)?.with_nanosecond(0)? + Duration::minutes(1);
        let limit = t + Duration::days(5 * 366);
        while cur <= limit {
            if !bit(self.month, cur.month()) {
                let (y, m) = if cur.month() == 12 { (cur.year() + 1, 1) } else { (cur.year(), cur.month() + 1) };
                cur = NaiveDate::from_ymd_opt(y, m, 1)?.and_hms_opt(0, 0, 0)?;
            } else if !self.day_matches(cur.date()) {
                cur = (cur.date() + Duration::days(1)).and_hms_opt(0, 0, 0)?;
            } else if !bit(self.hour, cur.hour()) {
                cur = cur.with_minute(0)? + Duration::hours(1);
            } else if !bit(self.minute, cur.minute()) {
                cur += Duration::minutes(1);
            } else {
                return Some(cur);
            }
        }
        None
    }
}

impl Schedule {
    /// Parses a `snapshots.schedule` value for the subject (instance or volume) `subject_id`.
    /// Several schedules are separated by `, ` (comma and space), as LXD splits them.
    pub fn parse(spec: &str, subject_id: i64) -> Result<Schedule, Error> {
        let parts: Vec<&str> = if spec.contains(", ") { spec.split(',').map(str::trim).filter(|s| !s.is_empty()).collect() } else { vec![spec.trim()] };
        let mut specs = Vec::new();
        let mut startup = false;
        for part in parts {
            if part.is_empty() || part.eq_ignore_ascii_case("@never") {
                continue;
            }
            if part.eq_ignore_ascii_case("@startup") {
                startup = true;
                continue;
            }
            let lower = part.to_ascii_lowercase();
            let expanded = match ALIASES.iter().find(|(a, _)| *a == lower) {
                Some((_, template)) => {
                    let (minute, hour) = obfuscated_time(subject_id);
                    template.replacen('M', &minute.to_string(), 1).replacen('H', &hour.to_string(), 1)
                }
                None if part.starts_with('@') => {
                    return Err(Error::Schedule { spec: spec.to_string(), reason: format!("unknown alias {part}") })
                }
                None => part.to_string(),
            };
            specs.push(CronSpec::parse(&expanded)?);
        }
        Ok(Schedule { specs, startup })
    }

    /// Whether a snapshot is due in the minute of `now` (LXD `snapshotIsScheduledNow`).
    pub fn matches(&self, now: NaiveDateTime) -> bool {
        self.specs.iter().any(|s| s.matches(now))
    }

    /// The first scheduled minute strictly after `t`.
    pub fn next_after(&self, t: NaiveDateTime) -> Option<NaiveDateTime> {
        self.specs.iter().filter_map(|s| s.next_after(t)).min()
    }

    /// Whether nothing is ever scheduled (`@never` or empty).
    pub fn is_never(&self) -> bool {
        self.specs.is_empty() && !self.startup
    }

    /// Whether a snapshot is due when the instance starts (`@startup`).
    pub fn on_startup(&self) -> bool {
        self.startup
    }
}

/// `snapshotIsScheduledNow`: an unparsable schedule is never due.
pub fn is_scheduled_now(spec: &str, subject_id: i64, now: NaiveDateTime) -> bool {
    Schedule::parse(spec, subject_id).map(|s| s.matches(now)).unwrap_or(false)
}

/// A stable minute and hour for a subject. LXD seeds Go's math/rand with the ID; the
/// values differ from LXD's but are stable per subject and spread the same way.
fn obfuscated_time(subject_id: i64) -> (u32, u32) {
    let mut x = subject_id as u64 ^ 0x9E37_79B9_7F4A_7C15;
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    ((x % 60) as u32, ((x >> 16) % 24) as u32)
}

fn bit(set: u64, v: u32) -> bool {
    v < 64 && set & (1 << v) != 0
}

/// Parses one field; returns the value set and whether it was a plain `*`/`?`.
fn parse_field(expr: &str, f: &Field) -> Result<(u64, bool), String> {
    let mut set = 0u64;
    let mut star = false;
    for item in expr.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s.parse::<u32>().map_err(|_| format!("bad step in {item:?}"))?)),
            None => (item, None),
        };
        if step == Some(0) {
            return Err(format!("step of zero in {item:?}"));
        }
        let (lo, hi, is_star) = if range == "*" || range == "?" {
            (f.min, f.max, true)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, f)?, value(b, f)?, false)
        } else {
            let v = value(range, f)?;
            // `a/n` means from a to the end, as in robfig/cron.
            (v, if step.is_some() { f.max } else { v }, false)
        };
        if lo > hi {
            return Err(format!("range {item:?} runs backwards"));
        }
        let step = step.unwrap_or(1);
        star |= is_star && step == 1;
        let mut v = lo;
        while v <= hi {
            set |= 1 << v;
            v += step;
        }
    }
    Ok((set, star))
}

fn value(s: &str, f: &Field) -> Result<u32, String> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = f.names.iter().position(|n| *n == lower) {
        return Ok(i as u32 + f.min);
    }
    let v: u32 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if v < f.min || v > f.max {
        return Err(format!("{v} is outside {}-{}", f.min, f.max));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d).unwrap().and_hms_opt(h, mi, 0).unwrap()
    }

    #[test]
    fn standard_fields() {
        let s = CronSpec::parse("*/15 9-17 * * mon-fri").unwrap();
        assert!(s.matches(t(2024, 1, 1, 9, 30))); // a Monday
        assert!(!s.matches(t(2024, 1, 1, 9, 31)));
        assert!(!s.matches(t(2024, 1, 6, 9, 30))); // Saturday
        assert!(!s.matches(t(2024, 1, 1, 18, 0)));
        assert_eq!(s.next_after(t(2024, 1, 5, 17, 45)), Some(t(2024, 1, 8, 9, 0)));
        // robfig/cron (and so LXD) allows 0-6 only: 7 is not Sunday.
        assert!(CronSpec::parse("0 0 * * 7").is_err());
        assert!(CronSpec::parse("0 0 * * sun").unwrap().matches(t(2024, 1, 7, 0, 0)));
        let names = CronSpec::parse("30 4 1 JAN,jul *").unwrap();
        assert!(names.matches(t(2024, 7, 1, 4, 30)));
        assert_eq!(names.next_after(t(2024, 1, 1, 4, 30)), Some(t(2024, 7, 1, 4, 30)));
        assert_eq!(CronSpec::parse("0 12 29 2 *").unwrap().next_after(t(2021, 3, 1, 0, 0)), Some(t(2024, 2, 29, 12, 0)));
        assert_eq!(CronSpec::parse("5/20 * * * *").unwrap().next_after(t(2024, 1, 1, 0, 45)), Some(t(2024, 1, 1, 1, 5)));
    }

    /// Vixie/robfig: with both day fields restricted a day matches either; with one `*`, both.
    #[test]
    fn day_of_month_or_day_of_week() {
        let either = CronSpec::parse("0 0 13 * 5").unwrap();
        assert!(either.matches(t(2024, 9, 13, 0, 0))); // Friday the 13th
        assert!(either.matches(t(2024, 9, 6, 0, 0))); // a Friday
        assert!(either.matches(t(2024, 8, 13, 0, 0))); // a Tuesday the 13th
        assert!(!either.matches(t(2024, 9, 7, 0, 0)));
        let stepped = CronSpec::parse("0 0 */2 * 1").unwrap(); // */2 is not a star
        assert!(stepped.matches(t(2024, 9, 2, 0, 0))); // a Monday, even day
        assert!(stepped.matches(t(2024, 9, 3, 0, 0))); // */2 starts at 1: odd days
        assert!(!stepped.matches(t(2024, 9, 4, 0, 0))); // a Wednesday, even day
    }

    #[test]
    fn invalid_specs() {
        for bad in ["", "* * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "*/0 * * * *", "5-1 * * * *", "x * * * *", "* * * * 8"] {
            assert!(CronSpec::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Schedule::parse("@fortnightly", 1).is_err());
    }

    #[test]
    fn lxd_aliases_and_lists() {
        assert!(Schedule::parse("@never", 1).unwrap().is_never());
        let startup = Schedule::parse("@startup, @hourly", 1).unwrap();
        assert!(startup.on_startup() && !startup.is_never());
        assert!(!Schedule::parse("@hourly", 1).unwrap().on_startup());
        let (m, h) = obfuscated_time(42);
        let daily = Schedule::parse("@daily", 42).unwrap();
        assert!(daily.matches(t(2024, 3, 3, h, m)));
        assert_eq!(daily, Schedule::parse("@DAILY", 42).unwrap(), "aliases are case-insensitive");
        let hourly = Schedule::parse("@hourly", 42).unwrap();
        assert!(hourly.matches(t(2024, 3, 3, 5, m)));
        assert_eq!(Schedule::parse("@midnight", 42).unwrap().next_after(t(2024, 3, 3, 12, 0)), Some(t(2024, 3, 4, 0, m)));
        // A comma-space list mixes aliases and cron; plain commas stay inside one cron field.
        let list = Schedule::parse("0 6 * * *, @weekly", 42).unwrap();
        assert!(list.matches(t(2024, 3, 5, 6, 0)));
        assert!(list.matches(t(2024, 3, 3, h, m))); // Sunday
        let commas = Schedule::parse("0 6,18 * * *", 1).unwrap();
        assert!(commas.matches(t(2024, 3, 5, 18, 0)));
        assert!(is_scheduled_now("*/5 * * * *", 1, t(2024, 1, 1, 0, 10)));
        assert!(!is_scheduled_now("not a cron", 1, t(2024, 1, 1, 0, 10)));
        // Different subjects get spread over the hour.
        let spread: std::collections::HashSet<u32> = (0..100).map(|id| obfuscated_time(id).0).collect();
        assert!(spread.len() > 30);
    }
}
