//! Times and durations as the user types and reads them.
//!
//! The API speaks Unix milliseconds ([`UnixMillis`]). People read UTC timestamps and "3m ago",
//! and type `2h`, `7d`, `2025-03-01` or `2025-03-01T12:00:00Z`. All of it is pure: "now" is an
//! argument, so the tests need no clock.

use clawn_proto::time::UnixMillis;

const MS_PER_SEC: i64 = 1000;
const SECS_PER_DAY: i64 = 86_400;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `2025-03-01 12:00:00` (UTC).
pub fn format_utc(ms: UnixMillis) -> String {
    let secs = ms.div_euclid(MS_PER_SEC);
    let (y, m, d) = civil_from_days(secs.div_euclid(SECS_PER_DAY));
    let s = secs.rem_euclid(SECS_PER_DAY);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// `just now`, `42s ago`, `5m ago`, `3h ago`, `12d ago`; a future time is shown as `in 5m`.
pub fn format_ago(now: UnixMillis, then: UnixMillis) -> String {
    let delta = (now - then) / MS_PER_SEC;
    let (n, future) = if delta < 0 {
        (-delta, true)
    } else {
        (delta, false)
    };
    if n < 5 {
        return "just now".into();
    }
    let text = match n {
        n if n < 60 => format!("{n}s"),
        n if n < 3600 => format!("{}m", n / 60),
        n if n < SECS_PER_DAY => format!("{}h", n / 3600),
        n => format!("{}d", n / SECS_PER_DAY),
    };
    if future {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// Parses a duration: plain seconds (`3600`) or units `s m h d w`, combinable (`1h30m`).
pub fn parse_duration_secs(input: &str) -> Result<u64, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(n) = s.parse::<u64>() {
        return Ok(n);
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => {
                return Err(format!(
                    "invalid duration {input:?}: unknown unit {c:?} (use s, m, h, d or w)"
                ));
            }
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("invalid duration {input:?}: a number must come before {c:?}"))?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("duration {input:?} is too long"))?;
    }
    if !digits.is_empty() {
        return Err(format!(
            "invalid duration {input:?}: {digits} needs a unit (s, m, h, d or w)"
        ));
    }
    Ok(total)
}

/// A point in time as typed: absolute, or relative to when the command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSpec {
    /// Unix milliseconds.
    At(UnixMillis),
    /// This many seconds before now.
    Ago(u64),
}

impl TimeSpec {
    /// The Unix milliseconds it denotes, given `now`.
    pub fn resolve(self, now: UnixMillis) -> UnixMillis {
        match self {
            Self::At(ms) => ms,
            Self::Ago(secs) => now.saturating_sub(
                i64::try_from(secs)
                    .unwrap_or(i64::MAX)
                    .saturating_mul(MS_PER_SEC),
            ),
        }
    }
}

/// Parses `--since`/`--until`: Unix milliseconds (`1740830400000`), a duration ago (`2h`, `7d`),
/// a UTC date (`2025-03-01`) or a UTC date-time (`2025-03-01T12:00`, `2025-03-01 12:00:30Z`).
pub fn parse_time_spec(input: &str) -> Result<TimeSpec, String> {
    let s = input.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(TimeSpec::At(ms));
    }
    if s.len() >= 10 && s.as_bytes().get(4) == Some(&b'-') {
        return parse_datetime(s).map(TimeSpec::At).ok_or_else(|| {
            format!("invalid time {input:?}: use YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS][Z] (UTC), Unix ms, or a duration like 2h")
        });
    }
    parse_duration_secs(s).map(TimeSpec::Ago).map_err(|e| {
        format!(
            "{e}; a time is Unix ms, YYYY-MM-DD[THH:MM[:SS]] (UTC) or a duration ago like 2h or 7d"
        )
    })
}

/// A point in time that is now or later, as typed: absolute, or a duration from now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FutureSpec {
    /// Unix milliseconds.
    At(UnixMillis),
    /// This many seconds after now.
    In(u64),
}

impl FutureSpec {
    /// The Unix milliseconds it denotes, given `now`.
    pub fn resolve(self, now: UnixMillis) -> UnixMillis {
        match self {
            Self::At(ms) => ms,
            Self::In(secs) => now.saturating_add(
                i64::try_from(secs)
                    .unwrap_or(i64::MAX)
                    .saturating_mul(MS_PER_SEC),
            ),
        }
    }
}

/// Parses a time that lies ahead: Unix milliseconds, a UTC date or date-time as for
/// [`parse_time_spec`], or a duration from now (`2h`, `1d`).
pub fn parse_future_spec(input: &str) -> Result<FutureSpec, String> {
    let s = input.trim();
    if let Ok(ms) = s.parse::<i64>() {
        // Plain seconds would be ambiguous with Unix ms: a bare number is Unix ms here too.
        return Ok(FutureSpec::At(ms));
    }
    if s.len() >= 10 && s.as_bytes().get(4) == Some(&b'-') {
        return parse_datetime(s).map(FutureSpec::At).ok_or_else(|| {
            format!("invalid time {input:?}: use YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS][Z] (UTC), Unix ms, or a duration from now like 2h")
        });
    }
    parse_duration_secs(s).map(FutureSpec::In).map_err(|e| {
        format!(
            "{e}; a time is Unix ms, YYYY-MM-DD[THH:MM[:SS]] (UTC) or a duration from now like 2h or 1d"
        )
    })
}

/// A length of time in the largest two units: `45s`, `12m`, `1h30m`, `2d3h`.
pub fn format_duration_secs(secs: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = secs;
    let mut parts = 0;
    for (size, unit) in UNITS {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
            parts += 1;
        } else if parts > 0 {
            // The two units shown must be adjacent (`1h5s` reads as a typo): stop.
            parts += 1;
        }
        if parts == 2 {
            break;
        }
    }
    out
}

fn parse_datetime(s: &str) -> Option<UnixMillis> {
    let s = s
        .strip_suffix('Z')
        .or_else(|| s.strip_suffix('z'))
        .unwrap_or(s);
    let (date, time) = match s.split_once(['T', 't', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut parts = date.split('-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let mut secs = days_from_civil(y, m, d) * SECS_PER_DAY;
    if let Some(t) = time {
        let mut parts = t.split(':');
        let h: i64 = parts.next()?.parse().ok()?;
        let min: i64 = parts.next()?.parse().ok()?;
        let sec: i64 = match parts.next() {
            Some(p) => p.parse().ok()?,
            None => 0,
        };
        if parts.next().is_some()
            || !(0..24).contains(&h)
            || !(0..60).contains(&min)
            || !(0..60).contains(&sec)
        {
            return None;
        }
        secs += h * 3600 + min * 60 + sec;
    }
    Some(secs * MS_PER_SEC)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(format_utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(format_utc(1_740_830_400_123), "2025-03-01 12:00:00");
        assert_eq!(format_utc(-1000), "1969-12-31 23:59:59");
    }

    #[test]
    fn formats_relative() {
        let now = 1_000_000_000;
        assert_eq!(format_ago(now, now - 2_000), "just now");
        assert_eq!(format_ago(now, now - 42_000), "42s ago");
        assert_eq!(format_ago(now, now - 5 * 60_000), "5m ago");
        assert_eq!(format_ago(now, now - 3 * 3_600_000), "3h ago");
        assert_eq!(format_ago(now, now - 12 * 86_400_000), "12d ago");
        assert_eq!(format_ago(now, now + 5 * 60_000), "in 5m");
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration_secs("3600"), Ok(3600));
        assert_eq!(parse_duration_secs("90s"), Ok(90));
        assert_eq!(parse_duration_secs("1h30m"), Ok(5400));
        assert_eq!(parse_duration_secs("7d"), Ok(604_800));
        assert_eq!(parse_duration_secs("2w"), Ok(1_209_600));
        for bad in ["", "h", "5x", "1h30", "-5m"] {
            assert!(parse_duration_secs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_time_specs() {
        assert_eq!(
            parse_time_spec("1740830400000"),
            Ok(TimeSpec::At(1_740_830_400_000))
        );
        assert_eq!(
            parse_time_spec("2025-03-01"),
            Ok(TimeSpec::At(1_740_787_200_000))
        );
        assert_eq!(
            parse_time_spec("2025-03-01T12:00"),
            Ok(TimeSpec::At(1_740_830_400_000))
        );
        assert_eq!(
            parse_time_spec("2025-03-01 12:00:00Z"),
            Ok(TimeSpec::At(1_740_830_400_000))
        );
        assert_eq!(parse_time_spec("2h"), Ok(TimeSpec::Ago(7200)));
        assert_eq!(
            TimeSpec::Ago(7200).resolve(10_000_000),
            10_000_000 - 7_200_000
        );
        for bad in [
            "2025-02-30",
            "2025-13-01",
            "2025-03-01T25:00",
            "yesterday",
            "2025-03-01T12",
        ] {
            assert!(parse_time_spec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_future_specs() {
        assert_eq!(parse_future_spec("2h"), Ok(FutureSpec::In(7200)));
        assert_eq!(
            parse_future_spec("2025-03-01T12:00"),
            Ok(FutureSpec::At(1_740_830_400_000))
        );
        assert_eq!(
            parse_future_spec("1740830400000"),
            Ok(FutureSpec::At(1_740_830_400_000))
        );
        assert_eq!(FutureSpec::In(60).resolve(1_000), 61_000);
        assert!(parse_future_spec("tomorrow").is_err());
        assert!(parse_future_spec("2025-02-30").is_err());
    }

    #[test]
    fn formats_durations() {
        assert_eq!(format_duration_secs(0), "0s");
        assert_eq!(format_duration_secs(45), "45s");
        assert_eq!(format_duration_secs(7200), "2h");
        assert_eq!(format_duration_secs(5400), "1h30m");
        assert_eq!(format_duration_secs(3605), "1h");
        assert_eq!(format_duration_secs(2 * 86_400 + 3 * 3600 + 59), "2d3h");
        assert_eq!(format_duration_secs(3599), "59m59s");
    }

    #[test]
    fn civil_round_trip() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
