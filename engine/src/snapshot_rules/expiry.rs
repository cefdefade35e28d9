//! `snapshots.expiry`: `<n><unit>` fields separated by spaces (LXD `GetExpiry`).

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};

use super::Error;

/// The expiry date of a snapshot taken at `reference`; `None` for an empty expression.
/// Units: `S` seconds, `M` minutes, `H` hours, `d` days, `w` weeks, `m` months, `y`
/// years; each at most once (a repeated non-zero unit is an error). Months and years
/// overflow like Go's `AddDate` (Jan 31 + 1m = Mar 2 or 3).
pub fn get_expiry(reference: DateTime<Utc>, expr: &str) -> Result<Option<DateTime<Utc>>, Error> {
    let expr = expr.trim();
    if expr.is_empty() {
        return Ok(None);
    }
    let bad = || Error::Expiry(expr.to_string());
    // Order: S M H d w m y.
    let mut values = [0i64; 7];
    for field in expr.split(' ') {
        let unit = field.chars().last().ok_or_else(bad)?;
        let idx = "SMHdwmy".find(unit).ok_or_else(bad)?;
        let num = &field[..field.len() - unit.len_utf8()];
        if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        if values[idx] > 0 {
            return Err(bad());
        }
        values[idx] = num.parse().map_err(|_| bad())?;
    }
    let [secs, mins, hours, days, weeks, months, years] = values;
    let date = add_date(reference, years, months, days + weeks * 7).ok_or_else(bad)?;
    let delta = Duration::try_hours(hours)
        .and_then(|h| Duration::try_minutes(mins).map(|m| h + m))
        .and_then(|hm| Duration::try_seconds(secs).map(|s| hm + s))
        .ok_or_else(bad)?;
    date.checked_add_signed(delta).map(Some).ok_or_else(bad)
}

/// Go's `time.AddDate`: add years, months and days, then normalise the overflow.
fn add_date(t: DateTime<Utc>, years: i64, months: i64, days: i64) -> Option<DateTime<Utc>> {
    let total = (t.year() as i64 + years) * 12 + (t.month0() as i64) + months;
    let year = i32::try_from(total.div_euclid(12)).ok()?;
    let month = u32::try_from(total.rem_euclid(12) + 1).ok()?;
    let first = NaiveDate::from_ymd_opt(year, month, 1)?;
    let date = first.checked_add_signed(Duration::try_days(t.day() as i64 - 1 + days)?)?;
    Some(date.and_time(t.time()).and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    /// The vectors of LXD's shared TestGetExpiry.
    #[test]
    fn lxd_vectors() {
        let r = at(2000, 1, 1, 0, 0, 0);
        assert_eq!(get_expiry(r, "1M 2H 3d 4w 5m 6y").unwrap(), Some(at(2006, 7, 2, 2, 1, 0)));
        assert_eq!(get_expiry(r, "5S 1M 2H 3d 4y").unwrap(), Some(at(2004, 1, 4, 2, 1, 5)));
        assert_eq!(get_expiry(r, "0M 0H 0d 0w 0m 0y").unwrap(), Some(r));
        assert_eq!(get_expiry(r, "").unwrap(), None);
        assert!(get_expiry(r, "1M 1M").is_err());
        assert!(get_expiry(r, "1z").is_err());
    }

    #[test]
    fn month_overflow_follows_go() {
        assert_eq!(get_expiry(at(2021, 1, 31, 0, 0, 0), "1m").unwrap(), Some(at(2021, 3, 3, 0, 0, 0)));
        assert_eq!(get_expiry(at(2020, 2, 29, 12, 0, 0), "1y").unwrap(), Some(at(2021, 3, 1, 12, 0, 0)));
        assert_eq!(get_expiry(at(2020, 12, 15, 0, 0, 0), "2w").unwrap(), Some(at(2020, 12, 29, 0, 0, 0)));
        assert!(get_expiry(at(2020, 1, 1, 0, 0, 0), "d").is_err());
        assert!(get_expiry(at(2020, 1, 1, 0, 0, 0), "-1d").is_err());
        assert!(get_expiry(at(2020, 1, 1, 0, 0, 0), "1d  2H").is_err(), "fields are split on single spaces");
    }
}
