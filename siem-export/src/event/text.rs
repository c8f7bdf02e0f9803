//! Byte strings from the kernel (paths, argv, comm) in a JSON string.
//!
//! Linux paths and arguments are arbitrary bytes except NUL, and JSON strings
//! must be Unicode. Dropping invalid bytes (lossy U+FFFD) would make two
//! different paths look the same in the SIEM, which an attacker can use to
//! hide a file behind a look-alike name. So the encoding is reversible:
//!
//! * a byte that is not part of valid UTF-8 is written `\xNN` (two lowercase
//!   hex digits);
//! * a literal backslash is written `\\`, so the above cannot be forged;
//! * everything else is written as is (JSON escaping of quotes, newlines,
//!   control characters and NUL is then the JSON encoder's business).
//!
//! Ordinary paths contain no backslash and are valid UTF-8, so they appear
//! unchanged; searching the SIEM for `/etc/shadow` keeps working.

use std::borrow::Cow;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Exact bytes, serialized with the escaping described in the module docs.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteText(Vec<u8>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnescapeError {
    #[error("backslash at byte {at} must start `\\\\` or `\\xNN`")]
    BadEscape { at: usize },
    #[error("`\\x` at byte {at} must be followed by two hex digits")]
    BadHex { at: usize },
}

impl ByteText {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Some` when the bytes are valid UTF-8.
    pub fn to_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// For display only: invalid bytes become U+FFFD, which loses
    /// information. Use [`ByteText::escaped`] for anything stored or compared.
    pub fn to_string_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }

    pub fn as_os_str(&self) -> &OsStr {
        OsStr::from_bytes(&self.0)
    }

    pub fn as_path(&self) -> &Path {
        Path::new(self.as_os_str())
    }

    /// The wire form. Borrows when nothing needs escaping (the common case).
    pub fn escaped(&self) -> Cow<'_, str> {
        if let Ok(s) = std::str::from_utf8(&self.0) {
            if !s.contains('\\') {
                return Cow::Borrowed(s);
            }
        }
        let mut out = String::with_capacity(self.0.len() + 8);
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                if c == '\\' {
                    out.push_str("\\\\");
                } else {
                    out.push(c);
                }
            }
            for b in chunk.invalid() {
                out.push_str("\\x");
                out.push(hex_digit(b >> 4));
                out.push(hex_digit(b & 0xf));
            }
        }
        Cow::Owned(out)
    }

    /// Inverse of [`ByteText::escaped`]. Accepts upper-case hex and `\xNN`
    /// for bytes that would have been valid UTF-8, for leniency towards
    /// hand-written input; only the canonical form is ever produced.
    pub fn unescape(s: &str) -> Result<Self, UnescapeError> {
        if !s.contains('\\') {
            return Ok(Self(s.as_bytes().to_vec()));
        }
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] != b'\\' {
                out.push(b[i]);
                i += 1;
                continue;
            }
            match b.get(i + 1) {
                Some(b'\\') => {
                    out.push(b'\\');
                    i += 2;
                }
                Some(b'x') => {
                    let hi = b.get(i + 2).and_then(|&c| hex_value(c));
                    let lo = b.get(i + 3).and_then(|&c| hex_value(c));
                    match (hi, lo) {
                        (Some(hi), Some(lo)) => out.push((hi << 4) | lo),
                        _ => return Err(UnescapeError::BadHex { at: i }),
                    }
                    i += 4;
                }
                _ => return Err(UnescapeError::BadEscape { at: i }),
            }
        }
        Ok(Self(out))
    }
}

fn hex_digit(v: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(v & 0xf)])
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for ByteText {
    /// The escaped form, so logs show exactly what the SIEM will.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.escaped())
    }
}

impl fmt::Debug for ByteText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.escaped(), f)
    }
}

impl From<&str> for ByteText {
    fn from(s: &str) -> Self {
        Self(s.as_bytes().to_vec())
    }
}

impl From<String> for ByteText {
    fn from(s: String) -> Self {
        Self(s.into_bytes())
    }
}

impl From<&[u8]> for ByteText {
    fn from(b: &[u8]) -> Self {
        Self(b.to_vec())
    }
}

impl From<Vec<u8>> for ByteText {
    fn from(b: Vec<u8>) -> Self {
        Self(b)
    }
}

impl From<&OsStr> for ByteText {
    fn from(s: &OsStr) -> Self {
        Self(s.as_bytes().to_vec())
    }
}

impl From<OsString> for ByteText {
    fn from(s: OsString) -> Self {
        Self(s.into_vec())
    }
}

impl From<&Path> for ByteText {
    fn from(p: &Path) -> Self {
        p.as_os_str().into()
    }
}

impl From<PathBuf> for ByteText {
    fn from(p: PathBuf) -> Self {
        p.into_os_string().into()
    }
}

impl AsRef<[u8]> for ByteText {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartialEq<str> for ByteText {
    fn eq(&self, other: &str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<&str> for ByteText {
    fn eq(&self, other: &&str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl Serialize for ByteText {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.escaped())
    }
}

impl<'de> Deserialize<'de> for ByteText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ByteText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string (bytes that are not UTF-8 escaped as \\xNN)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteText, E> {
                ByteText::unescape(v).map_err(E::custom)
            }
        }
        d.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(bytes: &[u8]) -> String {
        let t = ByteText::from(bytes);
        let esc = t.escaped().into_owned();
        assert_eq!(ByteText::unescape(&esc).unwrap(), t, "{esc}");
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(
            serde_json::from_str::<ByteText>(&json).unwrap(),
            t,
            "{json}"
        );
        esc
    }

    #[test]
    fn plain_utf8_is_unchanged_and_borrowed() {
        let t = ByteText::from("/usr/bin/pérl");
        assert!(matches!(t.escaped(), Cow::Borrowed("/usr/bin/pérl")));
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"/usr/bin/pérl\"");
    }

    #[test]
    fn invalid_utf8_is_hex_escaped() {
        assert_eq!(round_trip(b"/tmp/\xff\xfeevil"), "/tmp/\\xff\\xfeevil");
        // A truncated multi-byte sequence: each stray byte escaped.
        assert_eq!(round_trip(b"caf\xc3"), "caf\\xc3");
        assert_eq!(round_trip(b"\xe2\x82"), "\\xe2\\x82");
        let t = ByteText::from(&b"a\x80b"[..]);
        assert_eq!(t.to_str(), None);
        assert_eq!(t.to_string_lossy(), "a\u{fffd}b");
    }

    #[test]
    fn backslashes_cannot_forge_escapes() {
        // A real file literally named `\xff` must not decode to byte 0xff.
        assert_eq!(round_trip(b"/tmp/\\xff"), "/tmp/\\\\xff");
        assert_ne!(
            ByteText::from("/tmp/\\xff").escaped(),
            ByteText::from(&b"/tmp/\xff"[..]).escaped()
        );
        assert_eq!(round_trip(b"\\"), "\\\\");
    }

    #[test]
    fn json_handles_control_characters_quotes_and_nul() {
        let t = ByteText::from("a\nb\"c\0d\te\u{1b}");
        let json = serde_json::to_string(&t).unwrap();
        assert!(!json.contains('\n') && !json.contains('\0'), "{json}");
        assert_eq!(json, r#""a\nb\"c\u0000d\te\u001b""#);
        round_trip(b"a\nb\"c\0d\x1b\xff");
    }

    #[test]
    fn every_byte_value_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        round_trip(&all);
        for b in 0..=255u8 {
            round_trip(&[b]);
            round_trip(&[b'x', b, b'\\', b]);
        }
    }

    #[test]
    fn unescape_rejects_malformed_input() {
        assert_eq!(
            ByteText::unescape("a\\n"),
            Err(UnescapeError::BadEscape { at: 1 })
        );
        assert_eq!(
            ByteText::unescape("\\"),
            Err(UnescapeError::BadEscape { at: 0 })
        );
        assert_eq!(
            ByteText::unescape("\\xf"),
            Err(UnescapeError::BadHex { at: 0 })
        );
        assert_eq!(
            ByteText::unescape("\\xzz"),
            Err(UnescapeError::BadHex { at: 0 })
        );
        assert_eq!(ByteText::unescape("\\xFF").unwrap().as_bytes(), b"\xff");
        let err = serde_json::from_str::<ByteText>(r#""bad\\q""#).unwrap_err();
        assert!(err.to_string().contains("must start"), "{err}");
    }

    #[test]
    fn converts_from_os_strings() {
        use std::os::unix::ffi::OsStrExt;
        let p = Path::new(OsStr::from_bytes(b"/x/\xff"));
        let t = ByteText::from(p);
        assert_eq!(t.as_path(), p);
        assert_eq!(t.to_string(), "/x/\\xff");
    }
}
