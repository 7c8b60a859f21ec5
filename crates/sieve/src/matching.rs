//! Comparators (RFC 4790 via RFC 5228 §2.7.3), match types (`:is`, `:contains`, `:matches`,
//! `:regex`, relational `:value`/`:count` of RFC 5231) and the pieces of addresses.

use crate::program::{AddressPart, Comparator, MatchKind, Matcher, Relation};
use std::cmp::Ordering;

/// Whether `value` matches `key`; for `:matches` and `:regex`, what was captured (`${0}` the
/// whole value, then each wildcard or group).
pub fn matches(matcher: &Matcher, value: &str, key: &str, regex: Option<&regex::Regex>) -> Option<Vec<String>> {
    let c = matcher.comparator;
    match matcher.kind {
        MatchKind::Is => equal(c, value, key).then(Vec::new),
        MatchKind::Contains => contains(c, value, key).then(Vec::new),
        MatchKind::Matches => wildcard(c, value, key),
        MatchKind::Regex => {
            let compiled;
            let re = match regex {
                Some(re) => re,
                None => {
                    compiled = self::regex(key, c).ok()?;
                    &compiled
                }
            };
            let caps = re.captures(value)?;
            Some(caps.iter().map(|m| m.map(|m| m.as_str().to_string()).unwrap_or_default()).collect())
        }
        MatchKind::Value(rel) => relation(rel, compare(c, value, key)).then(Vec::new),
        // Counting is done by the caller over all values.
        MatchKind::Count(_) => None,
    }
}

/// `:count`: the number of values against `key`.
pub fn count(matcher: &Matcher, n: usize, key: &str) -> bool {
    match matcher.kind {
        MatchKind::Count(rel) => relation(rel, compare(matcher.comparator, &n.to_string(), key)),
        _ => false,
    }
}

fn relation(rel: Relation, ord: Option<Ordering>) -> bool {
    // Comparisons with an undefined order (none today) are false except `ne`.
    let Some(ord) = ord else { return rel == Relation::Ne };
    match rel {
        Relation::Gt => ord == Ordering::Greater,
        Relation::Ge => ord != Ordering::Less,
        Relation::Lt => ord == Ordering::Less,
        Relation::Le => ord != Ordering::Greater,
        Relation::Eq => ord == Ordering::Equal,
        Relation::Ne => ord != Ordering::Equal,
    }
}

fn fold(c: Comparator, b: u8) -> u8 {
    if c == Comparator::AsciiCasemap { b.to_ascii_lowercase() } else { b }
}

pub fn equal(c: Comparator, a: &str, b: &str) -> bool {
    compare(c, a, b) == Some(Ordering::Equal)
}

/// The comparator's order. `i;ascii-numeric` (RFC 4790 §9.1): the leading digits as a number;
/// a string without leading digits is positive infinity, equal only to another such.
pub fn compare(c: Comparator, a: &str, b: &str) -> Option<Ordering> {
    match c {
        Comparator::Octet => Some(a.as_bytes().cmp(b.as_bytes())),
        Comparator::AsciiCasemap => {
            Some(a.bytes().map(|x| x.to_ascii_lowercase()).cmp(b.bytes().map(|x| x.to_ascii_lowercase())))
        }
        Comparator::AsciiNumeric => {
            let number = |s: &str| -> Option<String> {
                let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
                if digits.is_empty() {
                    return None;
                }
                let trimmed = digits.trim_start_matches('0');
                Some(if trimmed.is_empty() { "0".to_string() } else { trimmed.to_string() })
            };
            Some(match (number(a), number(b)) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(x), Some(y)) => x.len().cmp(&y.len()).then_with(|| x.cmp(&y)),
            })
        }
    }
}

fn contains(c: Comparator, value: &str, key: &str) -> bool {
    let (v, k) = (value.as_bytes(), key.as_bytes());
    if k.is_empty() {
        return true;
    }
    if c == Comparator::Octet {
        return memchr_find(v, k);
    }
    v.windows(k.len()).any(|w| w.iter().zip(k).all(|(a, b)| fold(c, *a) == fold(c, *b)))
}

fn memchr_find(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Glob {
    Char(char),
    One,
    Any,
}

/// `:matches` with `*` (any run) and `?` (one character), `\` quoting the next character.
/// Linear backtracking (only to the last `*`, O(value × pattern)): each wildcard takes as
/// little as it can, as RFC 5229 §3.2 specifies for the match variables.
fn wildcard(c: Comparator, value: &str, pattern: &str) -> Option<Vec<String>> {
    let mut glob = Vec::new();
    let mut chars = pattern.chars();
    while let Some(ch) = chars.next() {
        glob.push(match ch {
            '*' => Glob::Any,
            '?' => Glob::One,
            '\\' => Glob::Char(chars.next().unwrap_or('\\')),
            other => Glob::Char(other),
        });
    }
    let text: Vec<char> = value.chars().collect();
    // The wildcard number of each pattern position, and each wildcard's captured span.
    let mut wild_index = vec![usize::MAX; glob.len()];
    let mut wilds = 0;
    for (i, g) in glob.iter().enumerate() {
        if matches!(g, Glob::One | Glob::Any) {
            wild_index[i] = wilds;
            wilds += 1;
        }
    }
    let mut spans = vec![(0usize, 0usize); wilds];
    let same = |a: char, b: char| {
        if c == Comparator::AsciiCasemap { a.eq_ignore_ascii_case(&b) } else { a == b }
    };
    let (mut p, mut t) = (0usize, 0usize);
    // The last `*`: its pattern position, where its span starts, where it ends now.
    let mut star: Option<(usize, usize, usize)> = None;
    while t < text.len() {
        match glob.get(p) {
            Some(Glob::Char(ch)) if same(*ch, text[t]) => {
                p += 1;
                t += 1;
            }
            Some(Glob::One) => {
                spans[wild_index[p]] = (t, t + 1);
                p += 1;
                t += 1;
            }
            Some(Glob::Any) => {
                star = Some((p, t, t));
                spans[wild_index[p]] = (t, t);
                p += 1;
            }
            _ => {
                let (sp, start, end) = star?;
                star = Some((sp, start, end + 1));
                spans[wild_index[sp]] = (start, end + 1);
                p = sp + 1;
                t = end + 1;
            }
        }
    }
    while let Some(Glob::Any) = glob.get(p) {
        spans[wild_index[p]] = (t, t);
        p += 1;
    }
    if p != glob.len() {
        return None;
    }
    let mut captures = vec![value.to_string()];
    captures.extend(spans.iter().map(|(a, b)| text[*a..*b].iter().collect::<String>()));
    Some(captures)
}

/// A `:regex` key compiled: POSIX extended syntax as the `regex` crate reads it (linear
/// time, so no pattern can make a match run away), case-insensitive under `i;ascii-casemap`.
pub fn regex(pattern: &str, c: Comparator) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .case_insensitive(c == Comparator::AsciiCasemap)
        .size_limit(crate::compile::MAX_REGEX_BYTES)
        .dfa_size_limit(crate::compile::MAX_REGEX_BYTES)
        .build()
}

/// The part of `address` (`local@domain`) a test compares, `None` when it has none (e.g. no
/// `+detail`). Subaddresses use `+` as separator (RFC 5233).
pub fn address_part(address: &str, part: AddressPart) -> Option<String> {
    let (local, domain) = match address.rsplit_once('@') {
        Some((l, d)) => (l, Some(d)),
        None => (address, None),
    };
    match part {
        AddressPart::All => Some(address.to_string()),
        AddressPart::LocalPart => Some(local.to_string()),
        AddressPart::Domain => domain.map(str::to_string),
        AddressPart::User => Some(local.split_once('+').map(|(u, _)| u).unwrap_or(local).to_string()),
        AddressPart::Detail => local.split_once('+').map(|(_, d)| d.to_string()),
    }
}

/// `local@domain` without display name or angle brackets, if `s` is one.
pub fn bare_address(s: &str) -> Option<&str> {
    let s = s.trim();
    let s = s.strip_prefix('<').and_then(|x| x.strip_suffix('>')).unwrap_or(s);
    let (local, domain) = s.rsplit_once('@')?;
    let ok = !local.is_empty()
        && !domain.is_empty()
        && !s.chars().any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>' || c == ',');
    ok.then_some(s)
}

/// RFC 5322 field name: printable ASCII without `:`.
pub fn is_field_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(kind: MatchKind, comparator: Comparator) -> Matcher {
        Matcher { comparator, kind }
    }

    #[test]
    fn wildcards_capture_as_little_as_they_can() {
        let matcher = m(MatchKind::Matches, Comparator::AsciiCasemap);
        // RFC 5229 §3.2's examples.
        let caps = matches(&matcher, "[acme-users] [fwd] version 1.0 is out", "[*] *", None).unwrap();
        assert_eq!(caps[1], "acme-users");
        assert_eq!(caps[2], "[fwd] version 1.0 is out");
        let caps = matches(&matcher, "coyote@example.com", "coyote@**.com", None).unwrap();
        assert_eq!((caps[1].as_str(), caps[2].as_str()), ("", "example"));
        assert!(matches(&matcher, "abc", "a?c", None).is_some());
        assert!(matches(&matcher, "ABC", "a*", None).is_some());
        assert!(matches(&matcher, "abc", "a\\*", None).is_none());
        assert!(matches(&matcher, "a*", "a\\*", None).is_some());
        assert!(matches(&matcher, "", "*", None).is_some());
        assert!(matches(&matcher, "x", "", None).is_none());
        assert!(matches(&m(MatchKind::Matches, Comparator::Octet), "ABC", "a*", None).is_none());
    }

    #[test]
    fn many_stars_stay_linear() {
        let matcher = m(MatchKind::Matches, Comparator::Octet);
        let value = "a".repeat(20_000);
        let pattern = format!("{}b", "*a".repeat(2_000));
        assert!(matches(&matcher, &value, &pattern, None).is_none());
    }

    #[test]
    fn numeric_and_relational() {
        assert_eq!(compare(Comparator::AsciiNumeric, "010", "9"), Some(Ordering::Greater));
        assert_eq!(compare(Comparator::AsciiNumeric, "abc", "99999"), Some(Ordering::Greater));
        assert_eq!(compare(Comparator::AsciiNumeric, "abc", "x"), Some(Ordering::Equal));
        let ge = m(MatchKind::Value(Relation::Ge), Comparator::AsciiNumeric);
        assert!(matches(&ge, "5", "5", None).is_some());
        assert!(matches(&ge, "4", "5", None).is_none());
        let over = m(MatchKind::Count(Relation::Gt), Comparator::AsciiNumeric);
        assert!(count(&over, 3, "2"));
        assert!(!count(&over, 2, "2"));
    }

    #[test]
    fn addresses() {
        assert_eq!(address_part("ken+sieve@example.org", AddressPart::User).as_deref(), Some("ken"));
        assert_eq!(address_part("ken+sieve@example.org", AddressPart::Detail).as_deref(), Some("sieve"));
        assert_eq!(address_part("ken@example.org", AddressPart::Detail), None);
        assert_eq!(address_part("ken+@example.org", AddressPart::Detail).as_deref(), Some(""));
        assert_eq!(address_part("ken@Example.org", AddressPart::Domain).as_deref(), Some("Example.org"));
        assert_eq!(bare_address("<a@b.c>"), Some("a@b.c"));
        assert_eq!(bare_address("a b@c"), None);
    }
}
