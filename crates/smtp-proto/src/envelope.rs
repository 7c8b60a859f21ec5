//! The DSN envelope parameters (RFC 3461) and BODY (RFC 6152, RFC 3030), typed once when the
//! command is parsed and kept typed to the queue, delivery and DSNs. They are stored by their
//! keywords (`SUCCESS,DELAY`, `HDRS`, `8BITMIME`), so queue records keep the format they
//! always had.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// BODY= of MAIL FROM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    SevenBit,
    EightBitMime,
    BinaryMime,
}

/// RFC 3461 §4.3 RET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    Full,
    Hdrs,
}

/// RFC 3461 §4.1 NOTIFY: `NEVER`, or any of SUCCESS, FAILURE, DELAY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Notify {
    pub never: bool,
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
}

impl Body {
    pub fn keyword(self) -> &'static str {
        match self {
            Body::SevenBit => "7BIT",
            Body::EightBitMime => "8BITMIME",
            Body::BinaryMime => "BINARYMIME",
        }
    }

    pub fn parse(word: &str) -> Option<Body> {
        Some(match word.to_ascii_uppercase().as_str() {
            "7BIT" => Body::SevenBit,
            "8BITMIME" => Body::EightBitMime,
            "BINARYMIME" => Body::BinaryMime,
            _ => return None,
        })
    }
}

impl Ret {
    pub fn keyword(self) -> &'static str {
        match self {
            Ret::Full => "FULL",
            Ret::Hdrs => "HDRS",
        }
    }

    pub fn parse(word: &str) -> Option<Ret> {
        Some(match word.to_ascii_uppercase().as_str() {
            "FULL" => Ret::Full,
            "HDRS" => Ret::Hdrs,
            _ => return None,
        })
    }
}

impl Notify {
    /// What a recipient without NOTIFY gets: failures and delays (RFC 3461 §4.1).
    pub const UNSPECIFIED: Notify = Notify { never: false, success: false, failure: true, delay: true };

    /// `NEVER`, or the words joined with commas.
    pub fn keyword(self) -> String {
        if self.never {
            return "NEVER".into();
        }
        [(self.success, "SUCCESS"), (self.failure, "FAILURE"), (self.delay, "DELAY")]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, w)| *w)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The parameter's value; `None` when a word is unknown or NEVER is not alone.
    pub fn parse(value: &str) -> Option<Notify> {
        let mut n = Notify::default();
        for word in value.split(',') {
            match word.trim().to_ascii_uppercase().as_str() {
                "NEVER" => n.never = true,
                "SUCCESS" => n.success = true,
                "FAILURE" => n.failure = true,
                "DELAY" => n.delay = true,
                _ => return None,
            }
        }
        // RFC 3461 §4.1: NEVER must appear alone.
        if n.never && (n.success || n.failure || n.delay) {
            return None;
        }
        Some(n)
    }
}

/// Stored as keywords. A stored value that does not parse (never written by Tern) reads as
/// the safe choice, so that a queue record is never unreadable: NOTIFY as unspecified, RET
/// as FULL, BODY as 8BITMIME.
macro_rules! keyword_serde {
    ($t:ty, $write:expr, $read:expr, $fallback:expr) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&$write(*self))
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<$t, D::Error> {
                let text = String::deserialize(d)?;
                Ok($read(&text).unwrap_or($fallback))
            }
        }
    };
}

keyword_serde!(Notify, Notify::keyword, Notify::parse, Notify::UNSPECIFIED);
keyword_serde!(Ret, |r: Ret| r.keyword().to_string(), Ret::parse, Ret::Full);
keyword_serde!(Body, |b: Body| b.keyword().to_string(), Body::parse, Body::EightBitMime);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_round_trip() {
        for n in ["NEVER", "SUCCESS", "FAILURE,DELAY", "SUCCESS,FAILURE,DELAY"] {
            assert_eq!(Notify::parse(n).map(Notify::keyword).as_deref(), Some(n));
        }
        assert_eq!(Notify::parse("delay, success").map(Notify::keyword).as_deref(), Some("SUCCESS,DELAY"));
        assert_eq!(Notify::parse("NEVER,SUCCESS"), None);
        assert_eq!(Notify::parse("SOMETIMES"), None);
        for b in [Body::SevenBit, Body::EightBitMime, Body::BinaryMime] {
            assert_eq!(Body::parse(b.keyword()), Some(b));
        }
        assert_eq!(Ret::parse("hdrs"), Some(Ret::Hdrs));
    }

    /// The stored form is the keyword string, as the queue has always kept it.
    #[test]
    fn stored_as_the_strings_they_replace() {
        let typed: Option<Notify> = Notify::parse("SUCCESS,FAILURE");
        let old: Option<String> = Some("SUCCESS,FAILURE".into());
        assert_eq!(serde_json::to_string(&typed).unwrap(), serde_json::to_string(&old).unwrap());
        let read: Option<Ret> = serde_json::from_str("\"HDRS\"").unwrap();
        assert_eq!(read, Some(Ret::Hdrs));
        let odd: Notify = serde_json::from_str("\"garbage\"").unwrap();
        assert_eq!(odd, Notify::UNSPECIFIED);
    }
}
