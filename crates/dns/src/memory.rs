//! A resolver answering from a zone held in memory, for tests (and tests as data).
//!
//! The zone is text, one record per line, `#` starts a comment:
//!
//! ```text
//! example.com        MX    10 mx.example.com.
//! mx.example.com     A     192.0.2.1
//! mx.example.com     AAAA  2001:db8::1
//! example.com        TXT   "v=spf1 mx " "-all"      ; strings are joined
//! 1.2.0.192.in-addr.arpa PTR mx.example.com
//! _25._tcp.mx.example.com TLSA 3 1 1 8f3a...        ; hex data
//! broken.example     SERVFAIL                      ; every query under it fails
//! example.com        SECURE                        ; answers at and under it are DNSSEC-secure
//! ```
//!
//! A name exists when it or a name under it has records (RFC 8020: an empty non-terminal
//! exists); any other name is NXDOMAIN.

use crate::{Answer, DnsError, Record, RecordType, Tlsa, normalize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("zone line {line}: {message}")]
pub struct ZoneError {
    pub line: usize,
    pub message: String,
}

#[derive(Default)]
struct Zone {
    records: BTreeMap<(String, RecordType), Vec<Record>>,
    failing: BTreeSet<String>,
    secure: BTreeSet<String>,
}

/// Answers from memory; counts the queries it was asked.
#[derive(Default)]
pub struct MemoryResolver {
    zone: Mutex<Zone>,
    asked: Mutex<Vec<(String, RecordType)>>,
}

/// Whether `name` is `zone` or a name under it.
fn within(name: &str, zone: &str) -> bool {
    name == zone || name.strip_suffix(zone).is_some_and(|rest| rest.ends_with('.'))
}

impl MemoryResolver {
    pub fn new() -> MemoryResolver {
        MemoryResolver::default()
    }

    /// A resolver holding the records of a zone text (the format above).
    pub fn parse(text: &str) -> Result<MemoryResolver, ZoneError> {
        let resolver = MemoryResolver::new();
        resolver.load(text)?;
        Ok(resolver)
    }

    /// Adds the records of a zone text.
    pub fn load(&self, text: &str) -> Result<(), ZoneError> {
        for (index, line) in text.lines().enumerate() {
            let fail = |message: String| ZoneError { line: index + 1, message };
            let line = strip_comment(line);
            let mut fields = line.split_whitespace();
            let Some(name) = fields.next() else { continue };
            let name = normalize(name);
            let kind = fields.next().ok_or_else(|| fail("a record type is missing".into()))?.to_ascii_uppercase();
            let rest: Vec<&str> = fields.collect();
            let number = |i: usize, what: &str| -> Result<&str, ZoneError> {
                rest.get(i).copied().ok_or_else(|| fail(format!("{kind}: {what} is missing")))
            };
            let record = match kind.as_str() {
                "SERVFAIL" => {
                    self.fail(&name);
                    continue;
                }
                "SECURE" => {
                    self.secure(&name);
                    continue;
                }
                "A" => Record::A(number(0, "the address")?.parse().map_err(|e| fail(format!("A: {e}")))?),
                "AAAA" => Record::Aaaa(number(0, "the address")?.parse().map_err(|e| fail(format!("AAAA: {e}")))?),
                "MX" => Record::Mx {
                    preference: number(0, "the preference")?.parse().map_err(|e| fail(format!("MX: {e}")))?,
                    exchange: normalize(number(1, "the exchange")?),
                },
                "PTR" => Record::Ptr(normalize(number(0, "the name")?)),
                "TXT" => {
                    let start = line.find(char::is_whitespace).unwrap_or(line.len());
                    let after_name = line[start..].trim_start();
                    let data = after_name[after_name.find(char::is_whitespace).unwrap_or(after_name.len())..].trim();
                    Record::Txt(txt_strings(data).map_err(fail)?)
                }
                "TLSA" => {
                    let field = |i: usize, what: &str| -> Result<u8, ZoneError> {
                        number(i, what)?.parse().map_err(|e| fail(format!("TLSA: {e}")))
                    };
                    Record::Tlsa(Tlsa {
                        usage: field(0, "the usage")?,
                        selector: field(1, "the selector")?,
                        matching: field(2, "the matching type")?,
                        data: hex::decode(rest.get(3..).unwrap_or_default().concat())
                            .map_err(|e| fail(format!("TLSA: {e}")))?,
                    })
                }
                other => return Err(fail(format!("unknown record type {other}"))),
            };
            self.add(&name, record);
        }
        Ok(())
    }

    pub fn add(&self, name: &str, record: Record) {
        let rtype = match &record {
            Record::A(_) => RecordType::A,
            Record::Aaaa(_) => RecordType::Aaaa,
            Record::Mx { .. } => RecordType::Mx,
            Record::Txt(_) => RecordType::Txt,
            Record::Ptr(_) => RecordType::Ptr,
            Record::Tlsa(_) => RecordType::Tlsa,
        };
        let mut zone = self.zone.lock().unwrap_or_else(|p| p.into_inner());
        zone.records.entry((normalize(name), rtype)).or_default().push(record);
    }

    /// Removes every record at `name`.
    pub fn remove(&self, name: &str) {
        let name = normalize(name);
        let mut zone = self.zone.lock().unwrap_or_else(|p| p.into_inner());
        zone.records.retain(|(n, _), _| *n != name);
    }

    /// Every query at or under `name` fails (SERVFAIL).
    pub fn fail(&self, name: &str) {
        self.zone.lock().unwrap_or_else(|p| p.into_inner()).failing.insert(normalize(name));
    }

    /// Answers at or under `name` carry the AD bit.
    pub fn secure(&self, name: &str) {
        self.zone.lock().unwrap_or_else(|p| p.into_inner()).secure.insert(normalize(name));
    }

    /// The queries asked so far, in order.
    pub fn asked(&self) -> Vec<(String, RecordType)> {
        self.asked.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[async_trait::async_trait]
impl crate::Resolver for MemoryResolver {
    async fn query(&self, name: &str, rtype: RecordType) -> Result<Answer, DnsError> {
        let name = normalize(name);
        self.asked.lock().unwrap_or_else(|p| p.into_inner()).push((name.clone(), rtype));
        let zone = self.zone.lock().unwrap_or_else(|p| p.into_inner());
        if zone.failing.iter().any(|f| within(&name, f)) {
            return Err(DnsError::Temporary(format!("{rtype} {name}: SERVFAIL")));
        }
        let authentic = zone.secure.iter().any(|s| within(&name, s));
        if let Some(records) = zone.records.get(&(name.clone(), rtype)) {
            return Ok(Answer {
                records: records.clone(),
                valid_until: Instant::now() + Duration::from_secs(300),
                authentic,
            });
        }
        if zone.records.keys().any(|(n, _)| within(n, &name)) {
            return Ok(Answer { authentic, ..Answer::empty() });
        }
        Err(DnsError::NoSuchDomain(name))
    }
}

/// The line without a `#` or `;` comment outside quotes.
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '#' | ';' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

/// `"a" "b"` → `ab`; an unquoted value is taken as it is.
fn txt_strings(data: &str) -> Result<Vec<u8>, String> {
    if !data.starts_with('"') {
        return Ok(data.as_bytes().to_vec());
    }
    let mut out = Vec::new();
    let mut chars = data.chars();
    loop {
        match chars.next() {
            None => return Ok(out),
            Some(c) if c.is_whitespace() => {}
            Some('"') => loop {
                match chars.next() {
                    None => return Err("TXT: a string is not closed".into()),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => out.extend_from_slice(c.to_string().as_bytes()),
                        None => return Err("TXT: a string is not closed".into()),
                    },
                    Some(c) => out.extend_from_slice(c.to_string().as_bytes()),
                }
            },
            Some(c) => return Err(format!("TXT: {c:?} outside a quoted string")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Resolver;

    #[tokio::test]
    async fn zone_text_is_read_with_its_comments_and_joined_strings() {
        let zone = MemoryResolver::parse(
            "# a comment\n\
             Example.COM. TXT \"v=spf1 \" \"a; -all\"  ; joined\n\
             example.com TXT \"say \\\"hi\\\"\"\n\
             \n\
             example.com MX 5 MX.example.com.\n",
        )
        .expect("zone");
        let answer = zone.query("example.com", RecordType::Txt).await.expect("answer");
        assert_eq!(answer.records, vec![Record::Txt(b"v=spf1 a; -all".to_vec()), Record::Txt(b"say \"hi\"".to_vec())]);
        let mx = zone.query("EXAMPLE.com.", RecordType::Mx).await.expect("answer");
        assert_eq!(mx.records, vec![Record::Mx { preference: 5, exchange: "mx.example.com".into() }]);
        assert_eq!(zone.asked().len(), 2);
    }

    #[test]
    fn bad_lines_are_named() {
        let e = MemoryResolver::parse("ok.example A 192.0.2.1\nbad.example A 300.1.1.1\n").err().expect("error");
        assert_eq!(e.line, 2);
        assert!(MemoryResolver::parse("x.example WHAT 1").is_err());
        assert!(MemoryResolver::parse("x.example TXT \"open").is_err());
        assert!(MemoryResolver::parse("x.example MX 10").is_err());
    }

    #[tokio::test]
    async fn servfail_covers_the_names_under_it() {
        let zone = MemoryResolver::parse("bad.example SERVFAIL\nok.example A 192.0.2.1\n").expect("zone");
        assert!(matches!(zone.query("x.bad.example", RecordType::A).await, Err(DnsError::Temporary(_))));
        // "notbad.example" is not under "bad.example".
        assert!(matches!(zone.query("notbad.example", RecordType::A).await, Err(DnsError::NoSuchDomain(_))));
    }
}
