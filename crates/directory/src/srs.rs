//! The Sender Rewriting Scheme: a message forwarded to another domain leaves with a reverse
//! path in one of our domains, so that the destination's SPF check sees a domain whose
//! policy allows this server; bounces to that address are decoded and go back to the
//! original sender.
//!
//! Forms (as libsrs2 and postsrsd write them, the hash and timestamp are Tern's own):
//! - `SRS0=HHHHHH=TT=domain=local@ours` for an ordinary sender `local@domain`;
//! - `SRS1=HHHHHH=first==HHHHHH=TT=domain=local@ours` for a sender that is already an SRS0
//!   address of the forwarder `first`: a bounce goes back to `first`, which decodes its own.
//!
//! `HHHHHH` is 30 bits of a keyed BLAKE3 of the rest (lower-cased, since some servers
//! lower-case local parts), in base32; `TT` is the day number modulo 1024, also in base32,
//! so an address is honoured for [`MAX_AGE_DAYS`] and then refused (a spammer cannot use an
//! old bounce address as an open relay forever).

/// Days an SRS address is honoured after it was made.
pub const MAX_AGE_DAYS: i64 = 21;
const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const HASH_CHARS: usize = 6;

/// Why an SRS address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SrsError {
    #[error("not an SRS address")]
    NotSrs,
    #[error("malformed SRS address")]
    Malformed,
    #[error("SRS hash does not match")]
    BadHash,
    #[error("SRS address expired")]
    Expired,
}

/// Rewrites and reverses addresses with a secret key.
#[derive(Clone)]
pub struct Srs {
    key: [u8; 32],
}

impl std::fmt::Debug for Srs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Srs { .. }")
    }
}

fn day(now: i64) -> i64 {
    now.div_euclid(86_400)
}

fn timestamp(now: i64) -> String {
    let d = day(now).rem_euclid(1024) as usize;
    [ALPHABET[d >> 5] as char, ALPHABET[d & 31] as char].iter().collect()
}

fn is_srs(local: &str, tag: &str) -> bool {
    local.len() > 5
        && local.get(..4).is_some_and(|t| t.eq_ignore_ascii_case(tag))
        && matches!(local.as_bytes()[4], b'=' | b'-' | b'+')
}

impl Srs {
    /// With a key derived from the server's secret (shared by the nodes of a cluster).
    pub fn new(secret: &[u8; 32]) -> Srs {
        Srs { key: blake3::derive_key("tern 2026-12 sender rewriting scheme", secret) }
    }

    fn hash(&self, text: &str) -> String {
        let digest = blake3::keyed_hash(&self.key, text.to_ascii_lowercase().as_bytes());
        let bits = u32::from_be_bytes([
            digest.as_bytes()[0],
            digest.as_bytes()[1],
            digest.as_bytes()[2],
            digest.as_bytes()[3],
        ]);
        (0..HASH_CHARS).map(|i| ALPHABET[((bits >> (27 - 5 * i)) & 31) as usize] as char).collect()
    }

    /// The reverse path for `sender` forwarded by a domain of ours (`domain`).
    pub fn forward(&self, sender: &str, domain: &str, now: i64) -> String {
        let Some((local, sender_domain)) = sender.rsplit_once('@') else { return sender.to_string() };
        if is_srs(local, "SRS0") {
            // Already rewritten once: keep the first forwarder, so the bounce goes to it.
            let rest = &local[4..];
            let guarded = format!("{sender_domain}={rest}");
            return format!("SRS1={}={guarded}@{domain}", self.hash(&guarded));
        }
        if is_srs(local, "SRS1")
            && let Some((_, rest)) = local[5..].split_once('=')
        {
            // Rewritten twice or more: the first forwarder stays.
            return format!("SRS1={}={rest}@{domain}", self.hash(rest));
        }
        let stamp = timestamp(now);
        let body = format!("{stamp}={sender_domain}={local}");
        format!("SRS0={}={body}@{domain}", self.hash(&body))
    }

    /// The original sender of an SRS address of ours (the local part alone or the whole
    /// address), or why it is refused.
    pub fn reverse(&self, address: &str, now: i64) -> Result<String, SrsError> {
        let local = address.rsplit_once('@').map(|(l, _)| l).unwrap_or(address);
        if is_srs(local, "SRS0") {
            let mut parts = local[5..].splitn(4, '=');
            let (Some(hash), Some(stamp), Some(domain), Some(user)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(SrsError::Malformed);
            };
            if domain.is_empty() || user.is_empty() || stamp.len() != 2 {
                return Err(SrsError::Malformed);
            }
            if !hash.eq_ignore_ascii_case(&self.hash(&format!("{stamp}={domain}={user}"))) {
                return Err(SrsError::BadHash);
            }
            let value = |c: u8| ALPHABET.iter().position(|&a| a == c.to_ascii_uppercase()).map(|p| p as i64);
            let (Some(hi), Some(lo)) = (value(stamp.as_bytes()[0]), value(stamp.as_bytes()[1])) else {
                return Err(SrsError::Malformed);
            };
            let age = (day(now) - (hi * 32 + lo)).rem_euclid(1024);
            if age > MAX_AGE_DAYS {
                return Err(SrsError::Expired);
            }
            return Ok(format!("{user}@{domain}"));
        }
        if is_srs(local, "SRS1") {
            let Some((hash, rest)) = local[5..].split_once('=') else { return Err(SrsError::Malformed) };
            if !hash.eq_ignore_ascii_case(&self.hash(rest)) {
                return Err(SrsError::BadHash);
            }
            let Some((first, srs0)) = rest.split_once("==") else { return Err(SrsError::Malformed) };
            if first.is_empty() || srs0.is_empty() {
                return Err(SrsError::Malformed);
            }
            return Ok(format!("SRS0={srs0}@{first}"));
        }
        Err(SrsError::NotSrs)
    }

    /// Whether the local part looks like SRS (then it is ours to decode, or refused).
    pub fn is_srs_local(local: &str) -> bool {
        is_srs(local, "SRS0") || is_srs(local, "SRS1")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_000_000;

    #[test]
    fn round_trip_and_case_insensitive() {
        let srs = Srs::new(&[7; 32]);
        let a = srs.forward("Dave@origin.test", "example.test", NOW);
        assert!(a.starts_with("SRS0=") && a.ends_with("=origin.test=Dave@example.test"), "{a}");
        assert_eq!(srs.reverse(&a, NOW).unwrap(), "Dave@origin.test");
        assert_eq!(srs.reverse(&a.to_ascii_lowercase(), NOW + 86_400).unwrap(), "dave@origin.test");
        // Another key does not accept it; a changed part breaks the hash.
        assert_eq!(Srs::new(&[8; 32]).reverse(&a, NOW), Err(SrsError::BadHash));
        assert_eq!(srs.reverse(&a.replace("Dave", "Mallory"), NOW), Err(SrsError::BadHash));
        assert_eq!(srs.reverse("bob@example.test", NOW), Err(SrsError::NotSrs));
        assert_eq!(srs.reverse("SRS0=x@example.test", NOW), Err(SrsError::Malformed));
    }

    #[test]
    fn any_input_is_refused_or_decoded_never_a_panic() {
        let srs = Srs::new(&[7; 32]);
        let fixed = [
            "",
            "@",
            "SRS0",
            "SRS0=",
            "SRS0==",
            "SRS0====@x",
            "SRS1=",
            "SRS1==",
            "SRS1=a=b",
            "SRS1=a==@x",
            "SRS0=ü=ü=ü=ü@x",
            "SRSü=a",
            "srs0+abc",
            "SRS0=AAAAAA=ÿÿ=d=u@x",
            "SRS0=AAAAAA=A=d=u@x",
        ];
        for input in fixed {
            let _ = srs.reverse(input, NOW);
            let _ = srs.forward(input, "example.test", NOW);
        }
        // Random strings over an alphabet rich in separators and multi-byte characters.
        let alphabet: Vec<char> = "SRS01=+-@.aZ9üé€😀".chars().collect();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let len = (state % 40) as usize;
            let text: String = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    alphabet[(state % alphabet.len() as u64) as usize]
                })
                .collect();
            if let Ok(original) = srs.reverse(&text, NOW) {
                assert!(!original.is_empty());
            }
            let forwarded = srs.forward(&text, "example.test", NOW);
            // A sender the SMTP parser lets through (a domain of letters, digits, dots and
            // hyphens) comes back; others need only not panic.
            let plain = text.rsplit_once('@').is_some_and(|(l, d)| {
                !l.is_empty()
                    && d.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && d.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
            });
            if plain && !text.starts_with("SRS") {
                assert!(srs.reverse(&forwarded, NOW).is_ok(), "{text} -> {forwarded}");
            }
        }
    }

    #[test]
    fn expires_after_max_age() {
        let srs = Srs::new(&[7; 32]);
        let a = srs.forward("dave@origin.test", "example.test", NOW);
        assert!(srs.reverse(&a, NOW + MAX_AGE_DAYS * 86_400).is_ok());
        assert_eq!(srs.reverse(&a, NOW + (MAX_AGE_DAYS + 1) * 86_400), Err(SrsError::Expired));
    }

    #[test]
    fn second_forwarder_uses_srs1_back_to_the_first() {
        let first = Srs::new(&[1; 32]);
        let second = Srs::new(&[2; 32]);
        let once = first.forward("dave@origin.test", "one.test", NOW);
        let twice = second.forward(&once, "two.test", NOW);
        assert!(twice.starts_with("SRS1=") && twice.contains("=one.test==") && twice.ends_with("@two.test"), "{twice}");
        let back = second.reverse(&twice, NOW).unwrap();
        assert_eq!(back, once);
        assert_eq!(first.reverse(&back, NOW).unwrap(), "dave@origin.test");
        // A third forwarder keeps the first one.
        let thrice = Srs::new(&[3; 32]).forward(&twice, "three.test", NOW);
        assert!(thrice.contains("=one.test==") && thrice.ends_with("@three.test"), "{thrice}");
        assert_eq!(Srs::new(&[3; 32]).reverse(&thrice, NOW).unwrap(), once);
    }
}
