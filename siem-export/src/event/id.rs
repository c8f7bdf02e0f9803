//! Event ids: 128 bits, ULID layout (48-bit Unix milliseconds, then 80 bits
//! of entropy), written as 26 Crockford base32 characters.
//!
//! The millisecond prefix makes ids sort by time, which keeps SIEM indexes and
//! the outbox's primary key append-mostly. The 80-bit tail is either random
//! ([`EventId::generate`]) or derived from where the kernel record came from
//! ([`EventId::from_parts`]), so replaying the same record yields the same id
//! and the SIEM can de-duplicate at-least-once deliveries.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::timestamp::Timestamp;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const LEN: usize = 26;
const TAIL_BITS: u32 = 80;
const TAIL_MASK: u128 = (1 << TAIL_BITS) - 1;
const MAX_MILLIS: u64 = (1 << 48) - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId(u128);

/// Where a kernel record came from. Together these identify one record on
/// one host for ever: the boot id changes every boot, and within a boot the
/// (cpu, per-cpu sequence) pair is unique; the kernel timestamp guards
/// against a sequence counter reset (e.g. the BPF program reloaded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdParts {
    /// `/proc/sys/kernel/random/boot_id` as 16 bytes.
    pub boot_id: [u8; 16],
    /// Kernel timestamp of the record (`bpf_ktime_get_boot_ns`).
    pub kernel_ns: u64,
    pub cpu: u32,
    pub seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid event id `{input}`: {reason}")]
pub struct EventIdError {
    pub input: String,
    pub reason: &'static str,
}

impl EventId {
    /// A fresh id for `time` with a random tail.
    pub fn generate(time: Timestamp) -> Self {
        let mut tail = [0u8; 16];
        if let Err(err) = getrandom::fill(&mut tail[..10]) {
            // getrandom(2) does not fail on supported kernels; if it somehow
            // does, an id unique within this process still beats no event.
            tracing::warn!(%err, "getrandom failed, falling back to a counter-based event id");
            static FALLBACK: AtomicU64 = AtomicU64::new(0);
            let n = FALLBACK.fetch_add(1, Ordering::Relaxed);
            let h = hash_words(
                0x5eed,
                &[n, u64::from(std::process::id()), time.unix_nanos() as u64],
            );
            tail = h.to_le_bytes();
        }
        Self::from_time_and_tail(time, u128::from_le_bytes(tail))
    }

    /// The id for a kernel record, stable across replays. `time` is the
    /// record's wall-clock time (already derived from `kernel_ns`).
    ///
    /// The tail is a fixed 128-bit mix of the parts (not cryptographic, not
    /// meant to be): changing it would change the ids of replayed events, so
    /// a test pins its output.
    pub fn from_parts(time: Timestamp, parts: &IdParts) -> Self {
        let (boot_lo, boot_hi) = split_boot_id(&parts.boot_id);
        let words = [
            boot_lo,
            boot_hi,
            parts.kernel_ns,
            u64::from(parts.cpu),
            parts.seq,
        ];
        Self::from_time_and_tail(time, hash_words(0x6576_656e_742d_6964, &words))
    }

    /// Builds an id from its two halves; bits of `tail` above 80 are ignored.
    /// Times before 1970 clamp to 0, times after year 10889 to the maximum.
    pub fn from_time_and_tail(time: Timestamp, tail: u128) -> Self {
        let millis = u64::try_from(time.unix_millis())
            .unwrap_or(0)
            .min(MAX_MILLIS);
        Self((u128::from(millis) << TAIL_BITS) | (tail & TAIL_MASK))
    }

    pub const fn from_u128(v: u128) -> Self {
        Self(v)
    }

    pub const fn as_u128(self) -> u128 {
        self.0
    }

    /// Milliseconds since the epoch encoded in the id's prefix.
    pub const fn millis(self) -> u64 {
        (self.0 >> TAIL_BITS) as u64
    }

    /// Writes the 26-character form into `buf` and returns it as `&str`.
    pub fn encode<'a>(&self, buf: &'a mut [u8; LEN]) -> &'a str {
        for (i, out) in buf.iter_mut().enumerate() {
            let shift = 5 * (LEN - 1 - i);
            *out = ALPHABET[((self.0 >> shift) & 0x1f) as usize];
        }
        // Every byte comes from ALPHABET, which is ASCII.
        std::str::from_utf8(buf).unwrap_or_default()
    }
}

fn split_boot_id(b: &[u8; 16]) -> (u64, u64) {
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    lo.copy_from_slice(&b[..8]);
    hi.copy_from_slice(&b[8..]);
    (u64::from_le_bytes(lo), u64::from_le_bytes(hi))
}

/// SplitMix64's output function: a bijection on u64 with full avalanche.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Two independently seeded chains over the words, concatenated.
fn hash_words(seed: u64, words: &[u64]) -> u128 {
    let chain = |mut h: u64| {
        for w in words {
            h = mix64(h.rotate_left(23) ^ w).wrapping_add(0x9e37_79b9_7f4a_7c15);
        }
        mix64(h)
    };
    let a = chain(seed);
    let b = chain(mix64(seed ^ 0xa5a5_a5a5_a5a5_a5a5));
    (u128::from(a) << 64) | u128::from(b)
}

fn decode_char(c: u8) -> Option<u8> {
    let c = c.to_ascii_uppercase();
    ALPHABET.iter().position(|&a| a == c).map(|p| p as u8)
}

impl FromStr for EventId {
    type Err = EventIdError;

    /// Case-insensitive; the canonical form (what `Display` writes) is
    /// upper case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| EventIdError {
            input: s.to_owned(),
            reason,
        };
        let b = s.as_bytes();
        if b.len() != LEN {
            return Err(err("expected 26 Crockford base32 characters"));
        }
        // 26 * 5 = 130 bits for a 128-bit value: the first digit carries 3.
        if decode_char(b[0]).is_some_and(|v| v > 7) {
            return Err(err("first character must be 0..7 (value exceeds 128 bits)"));
        }
        let mut v: u128 = 0;
        for &c in b {
            let d = decode_char(c)
                .ok_or_else(|| err("characters must be 0-9 or A-Z without I, L, O, U"))?;
            v = (v << 5) | u128::from(d);
        }
        Ok(Self(v))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; LEN];
        f.write_str(self.encode(&mut buf))
    }
}

impl Serialize for EventId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; LEN];
        s.serialize_str(self.encode(&mut buf))
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> IdParts {
        IdParts {
            boot_id: *b"0123456789abcdef",
            kernel_ns: 123_456_789_000,
            cpu: 3,
            seq: 42,
        }
    }

    #[test]
    fn text_round_trip_and_shape() {
        let t = Timestamp::from_unix_nanos(1_700_000_000_123_456_789);
        for _ in 0..100 {
            let id = EventId::generate(t);
            let s = id.to_string();
            assert_eq!(s.len(), 26);
            assert!(s.bytes().all(|c| ALPHABET.contains(&c)));
            assert_eq!(s.parse::<EventId>(), Ok(id));
            assert_eq!(s.to_lowercase().parse::<EventId>(), Ok(id));
            assert_eq!(id.millis(), 1_700_000_000_123);
        }
        assert_eq!(EventId::from_u128(0).to_string(), "0".repeat(26));
        assert_eq!(
            EventId::from_u128(u128::MAX).to_string(),
            "7ZZZZZZZZZZZZZZZZZZZZZZZZZ"
        );
    }

    #[test]
    fn generated_ids_differ_and_sort_by_time() {
        let t1 = Timestamp::from_unix_nanos(1_000_000_000);
        let t2 = Timestamp::from_unix_nanos(1_001_000_000);
        let a = EventId::generate(t1);
        let b = EventId::generate(t1);
        assert_ne!(a, b, "80 random bits should not collide");
        let c = EventId::generate(t2);
        assert!(a < c && b < c);
        assert!(a.to_string() < c.to_string(), "text order matches id order");
    }

    #[test]
    fn from_parts_is_deterministic_and_sensitive_to_every_part() {
        let t = Timestamp::from_unix_nanos(1_700_000_000_123_456_789);
        let id = EventId::from_parts(t, &parts());
        assert_eq!(id, EventId::from_parts(t, &parts()));
        // Pinned: replays from older spools must keep their ids.
        assert_eq!(id.to_string(), "01HF7YAT3VTG0KJXA5RXETVK5A");

        let variants = [
            IdParts {
                boot_id: *b"0123456789abcdeg",
                ..parts()
            },
            IdParts {
                kernel_ns: parts().kernel_ns + 1,
                ..parts()
            },
            IdParts { cpu: 4, ..parts() },
            IdParts { seq: 43, ..parts() },
        ];
        for v in variants {
            assert_ne!(EventId::from_parts(t, &v), id, "{v:?}");
        }
    }

    #[test]
    fn rejects_bad_text() {
        for s in [
            "",
            "01HF7YAT0V6W0B5YHCMPSTR7Z",
            "01HF7YAT0V6W0B5YHCMPSTR7ZDX",
            "81HF7YAT0V6W0B5YHCMPSTR7ZD",
            "01HF7YAT0V6W0B5YHCMPSTR7ZU",
            "01HF7YAT0V6W0B5YHCMPSTR7Z-",
        ] {
            let err = s.parse::<EventId>().unwrap_err();
            assert!(err.to_string().starts_with("invalid event id"), "{err}");
        }
    }

    #[test]
    fn clamps_times_outside_the_48_bit_range() {
        let before_epoch = EventId::from_time_and_tail(Timestamp::from_unix_nanos(-5), 7);
        assert_eq!(before_epoch.millis(), 0);
        assert_eq!(before_epoch.as_u128(), 7);
        let tail_only = EventId::from_time_and_tail(Timestamp::from_unix_nanos(0), u128::MAX);
        assert_eq!(tail_only.as_u128(), TAIL_MASK);
    }
}
