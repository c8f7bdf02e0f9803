//! When to try again: capped exponential backoff with full jitter, and the
//! server's `Retry-After`.
//!
//! The delay before retry `n` (1-based) is drawn uniformly from
//! `[0, min(cap, base * 2^(n-1))]` ("full jitter": many enforcers retrying
//! against one recovering SIEM spread out instead of arriving in waves).
//! When the destination said how long to wait (`Retry-After` on a 429 or
//! 503), the delay is at least that, up to [`RetryPolicy::max_retry_after`]
//! so a misbehaving server cannot park a sink for days.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::event::timestamp::{days_from_civil, days_in_month};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Upper bound of the first retry's delay, ms (default 500).
    pub base_ms: u64,
    /// The backoff never exceeds this, ms (default 300000, 5 minutes).
    pub cap_ms: u64,
    /// `Retry-After` is honoured up to this, ms (default 3600000, 1 hour).
    pub max_retry_after_ms: u64,
    /// Dead-letter an event after this many failed attempts (`None`, the
    /// default: retry for ever; the outbox's disk bound is the limit).
    pub max_attempts: Option<u32>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base_ms: 500,
            cap_ms: 300_000,
            max_retry_after_ms: 3_600_000,
            max_attempts: None,
        }
    }
}

impl RetryPolicy {
    /// The backoff ceiling for retry `attempt` (1-based), before jitter.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(62);
        let ms = self.base_ms.saturating_mul(1u64 << exp).min(self.cap_ms);
        Duration::from_millis(ms)
    }

    /// The delay before retry `attempt` (1-based), honouring the server's
    /// `retry_after` hint.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>, rng: &mut Jitter) -> Duration {
        let ceiling = self.ceiling(attempt).as_millis() as u64;
        let jittered = Duration::from_millis(rng.below(ceiling.saturating_add(1)));
        match retry_after {
            Some(hint) => jittered.max(hint.min(Duration::from_millis(self.max_retry_after_ms))),
            None => jittered,
        }
    }

    /// Whether an event that has failed `attempts` times should be given up.
    pub fn exhausted(&self, attempts: u32) -> bool {
        self.max_attempts.is_some_and(|max| attempts >= max)
    }
}

/// A small seedable pseudo-random generator (SplitMix64) for jitter: not
/// cryptographic, does not need to be. Seed it in tests for repeatable
/// delays.
#[derive(Debug, Clone)]
pub struct Jitter {
    state: u64,
}

impl Jitter {
    pub fn seeded(seed: u64) -> Self {
        Self { state: seed }
    }

    /// Seeded from the OS (falls back to the clock).
    pub fn from_entropy() -> Self {
        let mut b = [0u8; 8];
        if getrandom::fill(&mut b).is_err() {
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            b = t.to_le_bytes();
        }
        Self::seeded(u64::from_le_bytes(b))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n)`; 0 when `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Multiply-shift: bias below 2^-64 * n, irrelevant for delays.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// Parses a `Retry-After` value: delay-seconds, or an HTTP date in any of
/// the three formats RFC 9110 requires recipients to accept (IMF-fixdate,
/// RFC 850, asctime). A date in the past means "now" (zero).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(v.parse::<u64>().unwrap_or(u64::MAX)));
    }
    let at = parse_http_date(v)?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs() as i64;
    Some(Duration::from_secs(at.saturating_sub(now).max(0) as u64))
}

/// Seconds since the epoch of an HTTP date.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let (day, month, year, time) = match parts.as_slice() {
        // Sun, 06 Nov 1994 08:49:37 GMT
        [wd, d, m, y, t, "GMT"] if wd.ends_with(',') && wd.len() == 4 => {
            (d.parse().ok()?, month(m)?, y.parse().ok()?, *t)
        }
        // Sunday, 06-Nov-94 08:49:37 GMT
        [wd, date, t, "GMT"] if wd.ends_with(',') => {
            let mut it = date.split('-');
            let d = it.next()?.parse().ok()?;
            let m = month(it.next()?)?;
            let y: i64 = it.next()?.parse().ok()?;
            if it.next().is_some() {
                return None;
            }
            // RFC 9110: a two-digit year more than 50 years in the future
            // is the most recent past year with those digits.
            let y = if y < 70 { 2000 + y } else { 1900 + y };
            (d, m, y, *t)
        }
        // Sun Nov  6 08:49:37 1994
        [_, m, d, t, y] => (d.parse().ok()?, month(m)?, y.parse().ok()?, *t),
        _ => return None,
    };
    if !(1..=days_in_month(year, month)).contains(&day) {
        return None;
    }
    let mut hms = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, mi, se) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some() || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + mi * 60 + se)
}

fn month(m: &str) -> Option<i64> {
    const NAMES: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    NAMES.iter().position(|n| *n == m).map(|i| i as i64 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            base_ms: 100,
            cap_ms: 1000,
            ..RetryPolicy::default()
        };
        let ceilings: Vec<u64> = (1..=6).map(|a| p.ceiling(a).as_millis() as u64).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.ceiling(u32::MAX), Duration::from_millis(1000));
    }

    #[test]
    fn full_jitter_stays_in_range_and_is_repeatable() {
        let p = RetryPolicy::default();
        let mut a = Jitter::seeded(7);
        let mut b = Jitter::seeded(7);
        let mut seen_low = false;
        let mut seen_high = false;
        for attempt in 1..2000 {
            let attempt = attempt % 12 + 1;
            let d = p.delay(attempt, None, &mut a);
            assert_eq!(d, p.delay(attempt, None, &mut b));
            assert!(d <= p.ceiling(attempt));
            seen_low |= d < p.ceiling(attempt) / 4;
            seen_high |= d > p.ceiling(attempt) * 3 / 4;
        }
        assert!(seen_low && seen_high, "jitter spans the range");
    }

    #[test]
    fn retry_after_is_a_floor_up_to_the_limit() {
        let p = RetryPolicy {
            base_ms: 10,
            cap_ms: 20,
            max_retry_after_ms: 60_000,
            max_attempts: Some(3),
        };
        let mut j = Jitter::seeded(1);
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(5)), &mut j),
            Duration::from_secs(5)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(86_400)), &mut j),
            Duration::from_secs(60)
        );
        assert!(!p.exhausted(2));
        assert!(p.exhausted(3));
        assert!(!RetryPolicy::default().exhausted(u32::MAX));
    }

    #[test]
    fn parses_retry_after() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // 1994-11-06 08:49:37
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        for date in [
            "Sun, 06 Nov 1994 08:50:37 GMT",
            "Sunday, 06-Nov-94 08:50:37 GMT",
            "Sun Nov  6 08:50:37 1994",
        ] {
            assert_eq!(
                parse_retry_after(date, now),
                Some(Duration::from_secs(60)),
                "{date}"
            );
        }
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO),
            "past dates mean now"
        );
        for bad in [
            "",
            "-1",
            "1.5",
            "soon",
            "Sun, 31 Feb 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 25:00:00 GMT",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad}");
        }
    }

    #[test]
    fn http_date_matches_the_epoch() {
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Sat, 29 Feb 2020 12:00:00 GMT"),
            Some(1_582_977_600)
        );
    }
}
