//! Timestamps: RFC 3339 UTC with microsecond precision, written by hand from
//! `SystemTime` so the crate needs no date library.
//!
//! The text form has a fixed width (`2024-05-01T12:00:00.123456Z`), so its
//! byte order is its time order: SQLite can sort and compare the stored text
//! directly, and `ORDER BY created_at` means what it says.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time, UTC, held as microseconds since the Unix epoch.
/// Times before 1970 do not occur in this daemon and are clamped to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

/// A string that is not an RFC 3339 UTC time of the form this crate accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not an RFC 3339 UTC time like 2024-05-01T12:00:00.123456Z")]
pub struct TimestampError {
    pub input: String,
}

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Timestamp {
        Timestamp::from_system_time(SystemTime::now())
    }

    pub fn from_system_time(t: SystemTime) -> Timestamp {
        let micros = t.duration_since(UNIX_EPOCH).map(|d| d.as_micros()).unwrap_or(0);
        Timestamp(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    pub fn from_unix_micros(micros: u64) -> Timestamp {
        Timestamp(micros)
    }

    pub fn unix_micros(self) -> u64 {
        self.0
    }

    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(self.0)
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later (a clock
    /// stepped back must not make a budget window negative).
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }

    /// Parses `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (1 to 9 fraction digits;
    /// digits past microseconds are dropped). Only `Z` is accepted as the
    /// offset: every time this daemon writes is UTC, and accepting offsets
    /// would let two spellings of one instant into the store.
    pub fn parse(s: &str) -> Result<Timestamp, TimestampError> {
        parse_rfc3339_utc(s).ok_or_else(|| TimestampError { input: s.to_owned() })
    }
}

fn parse_rfc3339_utc(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' || !matches!(b[b.len() - 1], b'Z' | b'z') {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u64> {
        let part = s.get(from..to)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let micros = match &s[19..s.len() - 1] {
        "" => 0,
        frac if frac.len() >= 2 && frac.len() <= 10 && frac.starts_with('.') => {
            let digits = &frac[1..];
            if !digits.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let padded = format!("{digits:0<6}");
            padded[..6].parse::<u64>().ok()?
        }
        _ => return None,
    };
    if year < 1970 || !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    // 60 would be a leap second; SystemTime has none, so neither do we.
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second;
    Some(Timestamp(secs * 1_000_000 + micros))
}

fn is_leap(year: u64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's days-from-civil / civil-from-days, restricted to dates from
// 1970 on so every quantity stays unsigned.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0 / 1_000_000;
        let micros = self.0 % 1_000_000;
        let (year, month, day) = civil_from_days(secs / 86_400);
        let rem = secs % 86_400;
        let (hour, minute, second) = (rem / 3_600, rem % 3_600 / 60, rem % 60);
        write!(f, "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{micros:06}Z")
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Timestamp::parse(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Timestamp::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000000Z");
        // 2000-02-29 (a leap day in a century leap year), 12:34:56.789012
        let t = Timestamp(951_827_696_789_012);
        assert_eq!(t.to_string(), "2000-02-29T12:34:56.789012Z");
        assert_eq!(Timestamp(1_714_564_800_000_000).to_string(), "2024-05-01T12:00:00.000000Z");
    }

    #[test]
    fn parse_round_trips_every_day_for_years() {
        // One instant per day from 1970 to 2100, with a varying time of day.
        for day in 0..47_482u64 {
            let t = Timestamp(day * 86_400_000_000 + (day * 7_919_000_001) % 86_400_000_000);
            assert_eq!(Timestamp::parse(&t.to_string()), Ok(t), "{t}");
        }
    }

    #[test]
    fn parse_accepts_shorter_and_longer_fractions() {
        let base = Timestamp::parse("2024-05-01T12:00:00Z").unwrap();
        assert_eq!(Timestamp::parse("2024-05-01T12:00:00.5Z").unwrap().0, base.0 + 500_000);
        assert_eq!(Timestamp::parse("2024-05-01T12:00:00.123456789Z").unwrap().0, base.0 + 123_456);
        assert_eq!(Timestamp::parse("2024-05-01T12:00:00.123Z").unwrap().0, base.0 + 123_000);
    }

    #[test]
    fn parse_rejects_what_is_not_utc_rfc3339() {
        for bad in [
            "",
            "2024-05-01",
            "2024-05-01T12:00:00",
            "2024-05-01T12:00:00+02:00",
            "2024-02-30T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:00:60Z",
            "2024-05-01T12:00:00.Z",
            "2024-05-01T12:00:00.1234567890Z",
            "1969-12-31T23:59:59Z",
            "2024-05-01T12:00:00.12a4Z",
            "+024-05-01T12:00:00Z",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn text_order_is_time_order() {
        let a = Timestamp(999_999);
        let b = Timestamp(1_000_000);
        assert!(a < b && a.to_string() < b.to_string());
    }

    #[test]
    fn serde_uses_the_text_form() {
        let t = Timestamp(1_714_564_800_123_456);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2024-05-01T12:00:00.123456Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
    }
}
