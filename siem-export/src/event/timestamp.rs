//! Wall-clock timestamps, serialized as RFC 3339 UTC with nanoseconds.
//!
//! Hand-rolled rather than pulling in a date crate: we only ever need one
//! output shape (`2025-03-14T09:26:53.123456789Z`) and a strict parser for it
//! (plus numeric offsets, which other tools emit when re-serializing).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const NANOS_PER_SEC: i64 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;

/// Nanoseconds since the Unix epoch, UTC. The `i64` range covers
/// 1677-09-21 .. 2262-04-11, which is all a kernel clock can report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    unix_nanos: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    #[error("invalid RFC 3339 timestamp `{input}`: {reason}")]
    Syntax { input: String, reason: &'static str },
    #[error("timestamp `{input}` is outside 1677-09-21..2262-04-11")]
    OutOfRange { input: String },
}

impl Timestamp {
    pub const fn from_unix_nanos(unix_nanos: i64) -> Self {
        Self { unix_nanos }
    }

    pub const fn unix_nanos(self) -> i64 {
        self.unix_nanos
    }

    /// Milliseconds since the epoch (floor), the resolution event ids carry.
    pub const fn unix_millis(self) -> i64 {
        self.unix_nanos.div_euclid(1_000_000)
    }

    /// `None` when the time is outside the representable range.
    pub fn from_system_time(t: SystemTime) -> Option<Self> {
        let nanos: i128 = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i128::try_from(d.as_nanos()).ok()?,
            Err(e) => -i128::try_from(e.duration().as_nanos()).ok()?,
        };
        i64::try_from(nanos).ok().map(Self::from_unix_nanos)
    }

    /// The current wall-clock time. Saturates (rather than failing) in the
    /// impossible case of a clock beyond 2262.
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now()).unwrap_or(Self::from_unix_nanos(i64::MAX))
    }

    /// Always UTC, always nine fractional digits, so strings sort like times.
    pub fn to_rfc3339(self) -> String {
        self.to_string()
    }

    pub fn parse_rfc3339(input: &str) -> Result<Self, TimestampError> {
        let syntax = |reason| TimestampError::Syntax {
            input: input.to_owned(),
            reason,
        };
        let b = input.as_bytes();
        if b.len() < 20 {
            return Err(syntax(
                "too short, expected YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)",
            ));
        }
        let num = |range: std::ops::Range<usize>, what| -> Result<i64, TimestampError> {
            let digits = &b[range];
            if !digits.iter().all(u8::is_ascii_digit) {
                return Err(syntax(what));
            }
            Ok(digits
                .iter()
                .fold(0, |acc, d| acc * 10 + i64::from(d - b'0')))
        };
        let sep = |i: usize, want: &[u8], what| {
            if want.contains(&b[i]) {
                Ok(())
            } else {
                Err(syntax(what))
            }
        };
        let year = num(0..4, "bad year")?;
        sep(4, b"-", "expected `-` after year")?;
        let month = num(5..7, "bad month")?;
        sep(7, b"-", "expected `-` after month")?;
        let day = num(8..10, "bad day")?;
        sep(10, b"Tt ", "expected `T` between date and time")?;
        let hour = num(11..13, "bad hour")?;
        sep(13, b":", "expected `:` after hour")?;
        let minute = num(14..16, "bad minute")?;
        sep(16, b":", "expected `:` after minute")?;
        let second = num(17..19, "bad second")?;

        if !(1..=12).contains(&month) {
            return Err(syntax("month must be 01..12"));
        }
        if day < 1 || day > days_in_month(year, month) {
            return Err(syntax("day does not exist in that month"));
        }
        if hour > 23 || minute > 59 {
            return Err(syntax("hour must be 00..23 and minute 00..59"));
        }
        // Leap seconds (`:60`) are rejected: the kernel never produces them
        // and accepting them would make two strings map to one instant.
        if second > 59 {
            return Err(syntax("second must be 00..59"));
        }

        let mut i = 19;
        let mut nanos: i64 = 0;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let digits = i - start;
            if digits == 0 || digits > 9 {
                return Err(syntax("fraction must have 1..9 digits"));
            }
            nanos = num(start..i, "bad fraction")? * 10_i64.pow(9 - digits as u32);
        }
        let offset_secs = match &b[i..] {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let digits = [*h1, *h2, *m1, *m2];
                if !digits.iter().all(u8::is_ascii_digit) {
                    return Err(syntax("bad UTC offset"));
                }
                let oh = i64::from((h1 - b'0') * 10 + (h2 - b'0'));
                let om = i64::from((m1 - b'0') * 10 + (m2 - b'0'));
                if oh > 23 || om > 59 {
                    return Err(syntax("bad UTC offset"));
                }
                let secs = oh * 3600 + om * 60;
                if *sign == b'-' {
                    -secs
                } else {
                    secs
                }
            }
            _ => return Err(syntax("expected `Z` or a ±HH:MM offset at the end")),
        };

        let days = days_from_civil(year, month, day);
        let secs = i128::from(days) * i128::from(SECS_PER_DAY)
            + i128::from(hour * 3600 + minute * 60 + second)
            - i128::from(offset_secs);
        let total = secs * i128::from(NANOS_PER_SEC) + i128::from(nanos);
        i64::try_from(total)
            .map(Self::from_unix_nanos)
            .map_err(|_| TimestampError::OutOfRange {
                input: input.to_owned(),
            })
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.unix_nanos.div_euclid(NANOS_PER_SEC);
        let nanos = self.unix_nanos.rem_euclid(NANOS_PER_SEC);
        let days = secs.div_euclid(SECS_PER_DAY);
        let sod = secs.rem_euclid(SECS_PER_DAY);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
            sod / 3600,
            sod / 60 % 60,
            sod % 60
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

pub(crate) fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 for a proleptic Gregorian date. Works on 400-year
/// eras (146097 days) with years starting in March, so the leap day is last.
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(
            Timestamp::from_unix_nanos(0).to_rfc3339(),
            "1970-01-01T00:00:00.000000000Z"
        );
        assert_eq!(
            Timestamp::from_unix_nanos(1_700_000_000_123_456_789).to_rfc3339(),
            "2023-11-14T22:13:20.123456789Z"
        );
        // Leap day and the end of a leap year.
        assert_eq!(
            Timestamp::from_unix_nanos(951_782_400 * NANOS_PER_SEC).to_rfc3339(),
            "2000-02-29T00:00:00.000000000Z"
        );
        assert_eq!(
            Timestamp::from_unix_nanos(-1).to_rfc3339(),
            "1969-12-31T23:59:59.999999999Z"
        );
    }

    #[test]
    fn parses_what_it_formats_across_the_range() {
        let mut n = i64::MIN;
        // ~4000 instants spread across the whole range, plus the ends.
        let step = (i64::MAX / 2000) - 7;
        loop {
            let t = Timestamp::from_unix_nanos(n);
            assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Ok(t), "{t}");
            match n.checked_add(step) {
                Some(next) => n = next,
                None => break,
            }
        }
        let t = Timestamp::from_unix_nanos(i64::MAX);
        assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Ok(t));
    }

    #[test]
    fn civil_conversion_agrees_day_by_day() {
        let mut days = days_from_civil(1899, 12, 31);
        for y in 1900..2101 {
            for m in 1..=12 {
                for d in 1..=days_in_month(y, m) {
                    days += 1;
                    assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
                    assert_eq!(civil_from_days(days), (y, m, d));
                }
            }
        }
    }

    #[test]
    fn accepts_offsets_and_short_fractions() {
        let want = Timestamp::parse_rfc3339("2024-06-01T10:00:00.5Z").unwrap();
        assert_eq!(want.unix_nanos() % NANOS_PER_SEC, 500_000_000);
        for s in [
            "2024-06-01T12:30:00.500+02:30",
            "2024-06-01T07:00:00.5-03:00",
            "2024-06-01t10:00:00.500000000z",
        ] {
            assert_eq!(Timestamp::parse_rfc3339(s), Ok(want), "{s}");
        }
        assert_eq!(
            Timestamp::parse_rfc3339("2024-06-01T10:00:00Z")
                .unwrap()
                .unix_nanos()
                % NANOS_PER_SEC,
            0
        );
    }

    #[test]
    fn rejects_malformed_input() {
        for s in [
            "",
            "2024-06-01",
            "2024-06-01T10:00:00",
            "2024-13-01T10:00:00Z",
            "2023-02-29T10:00:00Z",
            "2024-06-01T24:00:00Z",
            "2024-06-01T10:00:60Z",
            "2024-06-01T10:00:00.Z",
            "2024-06-01T10:00:00.1234567890Z",
            "2024-06-01T10:00:00+0200",
            "2024-06-01T10:00:00Z trailing",
            "2024-06-0aT10:00:00Z",
            "+024-06-01T10:00:00Z",
        ] {
            assert!(
                matches!(
                    Timestamp::parse_rfc3339(s),
                    Err(TimestampError::Syntax { .. })
                ),
                "{s:?} should not parse"
            );
        }
        assert!(matches!(
            Timestamp::parse_rfc3339("9999-01-01T00:00:00Z"),
            Err(TimestampError::OutOfRange { .. })
        ));
    }

    #[test]
    fn serde_uses_the_string_form() {
        let t = Timestamp::from_unix_nanos(1_700_000_000_000_000_001);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2023-11-14T22:13:20.000000001Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        let err = serde_json::from_str::<Timestamp>("\"yesterday\"").unwrap_err();
        assert!(
            err.to_string().contains("invalid RFC 3339 timestamp"),
            "{err}"
        );
    }

    #[test]
    fn millis_floor_before_the_epoch() {
        assert_eq!(Timestamp::from_unix_nanos(-1).unix_millis(), -1);
        assert_eq!(Timestamp::from_unix_nanos(1_999_999).unix_millis(), 1);
    }
}
