//! ARC chain validation (RFC 8617 §5.2), Tern's own: a strict reading of the ARC header
//! fields (RFC 6376 §3.2 tag lists: a duplicated tag, a bad tag name or separator makes the
//! field invalid), the structure of the chain (one of each field per instance, instances
//! 1..N, `cv=` as §5.1.1 requires), then the cryptographic checks of the newest
//! ARC-Message-Signature and of every ARC-Seal with mail-auth's key and signature code.
//! Every fault is `fail`: RFC 8617 only knows none, pass and fail.

use crate::spf::{DnsError, SpfDns};
use mail_auth::common::crypto::{Algorithm, HashContext, HashImpl, Sha256};
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::dkim::Canonicalization;

/// RFC 8617 §5.2 results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArcResult {
    None,
    Pass,
    Fail,
}

impl ArcResult {
    pub fn word(self) -> &'static str {
        match self {
            ArcResult::None => "none",
            ArcResult::Pass => "pass",
            ArcResult::Fail => "fail",
        }
    }
}

/// The chain's result and, for a failure, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArcVerdict {
    pub result: ArcResult,
    pub reason: Option<String>,
    /// The newest instance (for ARC sealing: the next set is one more).
    pub instances: u32,
}

/// Most ARC sets a chain may have (RFC 8617 §4.2.1).
const MAX_SETS: u32 = 50;

/// A parsed tag list: tags in order with their raw values and where each value sits in the
/// field's value.
struct TagList<'a> {
    tags: Vec<(&'a str, &'a [u8], std::ops::Range<usize>)>,
}

impl<'a> TagList<'a> {
    /// RFC 6376 §3.2, strictly.
    fn parse(value: &'a [u8]) -> Result<TagList<'a>, String> {
        let mut tags: Vec<(&str, &[u8], std::ops::Range<usize>)> = Vec::new();
        let mut at = 0;
        let skip_fws = |at: &mut usize| {
            while *at < value.len() && matches!(value[*at], b' ' | b'\t' | b'\r' | b'\n') {
                *at += 1;
            }
        };
        loop {
            skip_fws(&mut at);
            if at >= value.len() {
                break;
            }
            // tag-name = ALPHA *ALNUMPUNC
            let start = at;
            if !value[at].is_ascii_alphabetic() {
                return Err(format!(
                    "bad tag name at {:?}",
                    String::from_utf8_lossy(&value[at..]).chars().take(20).collect::<String>()
                ));
            }
            while at < value.len() && (value[at].is_ascii_alphanumeric() || value[at] == b'_') {
                at += 1;
            }
            let name = std::str::from_utf8(&value[start..at]).map_err(|_| "bad tag name".to_string())?;
            skip_fws(&mut at);
            if value.get(at) != Some(&b'=') {
                return Err(format!("tag {name} is not followed by '='"));
            }
            at += 1;
            skip_fws(&mut at);
            let value_start = at;
            while at < value.len() && value[at] != b';' {
                // tag-value: VALCHAR (%x21-3A / %x3C-7E) and folding white space.
                if !matches!(value[at], 0x21..=0x3a | 0x3c..=0x7e | b' ' | b'\t' | b'\r' | b'\n') {
                    return Err(format!("bad character in the value of tag {name}"));
                }
                at += 1;
            }
            let mut value_end = at;
            while value_end > value_start && matches!(value[value_end - 1], b' ' | b'\t' | b'\r' | b'\n') {
                value_end -= 1;
            }
            if tags.iter().any(|(n, _, _)| *n == name) {
                return Err(format!("tag {name} appears twice"));
            }
            tags.push((name, &value[value_start..value_end], value_start..value_end));
            if at < value.len() {
                at += 1; // ';'
            }
        }
        Ok(TagList { tags })
    }

    fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.tags.iter().find(|(n, _, _)| *n == name).map(|(_, v, _)| *v)
    }

    fn text(&self, name: &str) -> Option<String> {
        self.get(name).map(|v| String::from_utf8_lossy(v).into_owned())
    }

    fn required(&self, name: &str, field: &str) -> Result<String, String> {
        match self.text(name) {
            Some(v) if !v.is_empty() => Ok(v),
            Some(_) => Err(format!("{field} has an empty {name}= tag")),
            None => Err(format!("{field} has no {name}= tag")),
        }
    }

    fn span(&self, name: &str) -> Option<std::ops::Range<usize>> {
        self.tags.iter().find(|(n, _, _)| *n == name).map(|(_, _, r)| r.clone())
    }
}

/// `i=` of an ARC field: 1 to 50, digits only.
fn instance(v: &str) -> Result<u32, String> {
    if v.is_empty() || !v.bytes().all(|c| c.is_ascii_digit()) || v.starts_with('0') {
        return Err(format!("invalid instance i={v}"));
    }
    match v.parse::<u32>() {
        Ok(i) if (1..=MAX_SETS).contains(&i) => Ok(i),
        _ => Err(format!("invalid instance i={v}")),
    }
}

fn algorithm(v: &str) -> Result<Algorithm, String> {
    // RFC 8617 §4.1.2 and §4.1.3: the algorithms of RFC 8301/RFC 8463; rsa-sha1 is not one.
    match v {
        "rsa-sha256" => Ok(Algorithm::RsaSha256),
        "ed25519-sha256" => Ok(Algorithm::Ed25519Sha256),
        other => Err(format!("unsupported algorithm a={other}")),
    }
}

fn base64(v: &[u8]) -> Result<Vec<u8>, String> {
    use base64::Engine;
    let clean: Vec<u8> = v.iter().copied().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(clean).map_err(|_| "invalid base64".to_string())
}

/// One header field as it is in the message: name, and value after the colon with its line
/// break.
#[derive(Clone, Copy)]
struct Field<'a> {
    name: &'a [u8],
    value: &'a [u8],
}

fn header_fields(raw: &[u8]) -> Vec<Field<'_>> {
    let end = tern_mime::text::header_len(raw);
    tern_mime::structure::header_fields(&raw[..end])
        .into_iter()
        .filter_map(|f| {
            // The name as written (before any white space and the colon).
            let start = f.name.as_ptr() as usize - raw.as_ptr() as usize;
            let name_end = start + f.name.len();
            Some(Field { name: raw.get(start..name_end)?, value: f.value })
        })
        .collect()
}

/// The value with the `b=` tag's value removed (RFC 6376 §3.5: the signature is computed
/// with b= empty).
fn without_signature(value: &[u8], tags: &TagList<'_>) -> Vec<u8> {
    match tags.span("b") {
        Some(span) => [&value[..span.start], &value[span.end..]].concat(),
        None => value.to_vec(),
    }
}

struct ArcSet<'a> {
    seal: Option<(Field<'a>, TagList<'a>)>,
    signature: Option<(Field<'a>, TagList<'a>)>,
    results: Option<Field<'a>>,
}

fn fail(reason: impl Into<String>, instances: u32) -> ArcVerdict {
    ArcVerdict { result: ArcResult::Fail, reason: Some(reason.into()), instances }
}

/// The public key of `s=`/`d=` (RFC 6376 §3.6.2.2).
async fn key<D: SpfDns>(dns: &D, selector: &str, domain: &str) -> Result<DomainKey, String> {
    let name = format!("{selector}._domainkey.{domain}");
    let records = match dns.txt(&name).await {
        Ok(r) => r,
        Err(DnsError::NotFound) => return Err(format!("no key at {name}")),
        Err(DnsError::Temporary(e)) => return Err(format!("key lookup at {name} failed: {e}")),
    };
    let [record] = records.as_slice() else { return Err(format!("{name} has more than one key record")) };
    DomainKey::parse(record).map_err(|e| format!("invalid key at {name}: {e}"))
}

/// Validates the ARC chain of `raw` (RFC 8617 §5.2).
pub async fn validate<D: SpfDns>(dns: &D, raw: &[u8]) -> ArcVerdict {
    let fields = header_fields(raw);
    let mut sets: std::collections::BTreeMap<u32, ArcSet<'_>> = std::collections::BTreeMap::new();
    let mut any = false;
    for f in &fields {
        let kind = if f.name.eq_ignore_ascii_case(b"ARC-Seal") {
            0
        } else if f.name.eq_ignore_ascii_case(b"ARC-Message-Signature") {
            1
        } else if f.name.eq_ignore_ascii_case(b"ARC-Authentication-Results") {
            2
        } else {
            continue;
        };
        any = true;
        let i = if kind == 2 {
            // RFC 8617 §4.1.1: `i=N;` first, then the Authentication-Results value.
            let v = String::from_utf8_lossy(f.value);
            let v = v.trim_start();
            let Some(rest) = v.strip_prefix("i") else { return fail("ARC-Authentication-Results without i=", 0) };
            let rest = rest.trim_start();
            let Some(rest) = rest.strip_prefix('=') else { return fail("ARC-Authentication-Results without i=", 0) };
            let digits: String =
                rest.trim_start().chars().take_while(|c| !matches!(c, ';' | ' ' | '\t' | '\r' | '\n')).collect();
            match instance(&digits) {
                Ok(i) => i,
                Err(e) => return fail(format!("ARC-Authentication-Results: {e}"), 0),
            }
        } else {
            let name = if kind == 0 { "ARC-Seal" } else { "ARC-Message-Signature" };
            let tags = match TagList::parse(f.value) {
                Ok(t) => t,
                Err(e) => return fail(format!("{name}: {e}"), 0),
            };
            let i = match tags.required("i", name).and_then(|v| instance(&v)) {
                Ok(i) => i,
                Err(e) => return fail(format!("{name}: {e}"), 0),
            };
            let set = sets.entry(i).or_insert(ArcSet { seal: None, signature: None, results: None });
            let slot = if kind == 0 { &mut set.seal } else { &mut set.signature };
            if slot.is_some() {
                return fail(format!("two {name} fields for instance {i}"), 0);
            }
            *slot = Some((*f, tags));
            continue;
        };
        let set = sets.entry(i).or_insert(ArcSet { seal: None, signature: None, results: None });
        if set.results.is_some() {
            return fail(format!("two ARC-Authentication-Results fields for instance {i}"), 0);
        }
        set.results = Some(*f);
    }
    if !any {
        return ArcVerdict { result: ArcResult::None, reason: None, instances: 0 };
    }
    // §5.2 step 2: complete sets 1..N.
    let n = sets.keys().next_back().copied().unwrap_or(0);
    if sets.len() as u32 != n {
        return fail(format!("ARC instances are not 1 to {n}"), n);
    }
    for (&i, set) in &sets {
        if set.seal.is_none() || set.signature.is_none() || set.results.is_none() {
            return fail(format!("ARC set {i} is incomplete"), n);
        }
    }
    // §5.1.1: cv=none for the first set, pass for the others; a chain that failed once
    // stays failed.
    for (&i, set) in &sets {
        let Some((_, tags)) = &set.seal else { continue };
        let cv = match tags.required("cv", "ARC-Seal") {
            Ok(v) => v.to_ascii_lowercase(),
            Err(e) => return fail(e, n),
        };
        match (i, cv.as_str()) {
            (_, "fail") => return fail(format!("ARC-Seal {i} says the chain failed"), n),
            (1, "none") => {}
            (1, other) => return fail(format!("ARC-Seal 1 has cv={other}, not none"), n),
            (_, "pass") => {}
            (_, other) => return fail(format!("ARC-Seal {i} has cv={other}, not pass"), n),
        }
        // §4.1.3: no h= in an ARC-Seal.
        if tags.get("h").is_some() {
            return fail(format!("ARC-Seal {i} has an h= tag"), n);
        }
    }
    // §5.2 step 3: the newest ARC-Message-Signature.
    if let Err(e) = verify_signature(dns, raw, &fields, &sets, n).await {
        return fail(e, n);
    }
    // §5.2 step 4: every ARC-Seal, newest first.
    for i in (1..=n).rev() {
        if let Err(e) = verify_seal(dns, &sets, i).await {
            return fail(e, n);
        }
    }
    ArcVerdict { result: ArcResult::Pass, reason: None, instances: n }
}

fn canonicalization(c: Option<String>) -> Result<(Canonicalization, Canonicalization), String> {
    let parse = |s: &str| match s {
        "simple" => Ok(Canonicalization::Simple),
        "relaxed" => Ok(Canonicalization::Relaxed),
        other => Err(format!("unknown canonicalization {other}")),
    };
    // RFC 6376 §3.5 c=: default simple/simple; one word is the header's, body simple.
    match c {
        None => Ok((Canonicalization::Simple, Canonicalization::Simple)),
        Some(c) => match c.split_once('/') {
            Some((h, b)) => Ok((parse(h)?, parse(b)?)),
            None => Ok((parse(&c)?, Canonicalization::Simple)),
        },
    }
}

async fn verify_signature<D: SpfDns>(
    dns: &D,
    raw: &[u8],
    fields: &[Field<'_>],
    sets: &std::collections::BTreeMap<u32, ArcSet<'_>>,
    n: u32,
) -> Result<(), String> {
    let Some((field, tags)) = sets.get(&n).and_then(|s| s.signature.as_ref()) else {
        return Err("no ARC-Message-Signature".into());
    };
    let what = format!("ARC-Message-Signature {n}");
    let a = algorithm(&tags.required("a", &what)?).map_err(|e| format!("{what}: {e}"))?;
    let d = tags.required("d", &what)?;
    let s = tags.required("s", &what)?;
    let h = tags.required("h", &what)?;
    let bh = base64(tags.get("bh").ok_or_else(|| format!("{what} has no bh= tag"))?)
        .map_err(|e| format!("{what} bh=: {e}"))?;
    let b =
        base64(tags.get("b").ok_or_else(|| format!("{what} has no b= tag"))?).map_err(|e| format!("{what} b=: {e}"))?;
    let names: Vec<String> = h.split(':').map(|x| x.trim().to_ascii_lowercase()).collect();
    // §4.1.2: the ARC-Seal is never signed by an ARC-Message-Signature.
    if names.iter().any(|x| x == "arc-seal") {
        return Err(format!("{what} signs ARC-Seal"));
    }
    let limit = match tags.text("l") {
        Some(l) => l.trim().parse::<u64>().map_err(|_| format!("{what}: bad l="))?,
        None => 0,
    };
    // Without c=, DKIM's default is simple/simple (RFC 6376 §3.5); ARC signers (OpenARC,
    // dkimpy) mean relaxed/relaxed. Both are tried: either needs the signer's key.
    let choices = match tags.text("c") {
        Some(c) => vec![canonicalization(Some(c)).map_err(|e| format!("{what}: {e}"))?],
        None => vec![
            (Canonicalization::Simple, Canonicalization::Simple),
            (Canonicalization::Relaxed, Canonicalization::Relaxed),
        ],
    };
    // Signed fields: for each name in h=, the last instance not used yet (RFC 6376 §5.4.2).
    let mut used = vec![false; fields.len()];
    let mut signed: Vec<(&[u8], &[u8])> = Vec::new();
    for name in &names {
        if let Some(k) =
            (0..fields.len()).rev().find(|&k| !used[k] && fields[k].name.eq_ignore_ascii_case(name.as_bytes()))
        {
            used[k] = true;
            signed.push((fields[k].name, fields[k].value));
        }
    }
    let own = without_signature(field.value, tags);
    // The signature field itself goes in without its final line break (RFC 6376 §3.7).
    let own_trimmed = own.strip_suffix(b"\r\n").or_else(|| own.strip_suffix(b"\n")).unwrap_or(&own).to_vec();
    signed.push((field.name, &own_trimmed));
    let key = key(dns, &s, &d).await.map_err(|e| format!("{what}: {e}"))?;
    let mut last_error = String::new();
    for (ch, cb) in choices {
        if body_hash(raw, cb, limit) != bh {
            last_error = format!("{what}: body hash mismatch");
            continue;
        }
        match key.p.verify(&mut signed.iter().copied(), &b, ch, a) {
            Ok(()) => return Ok(()),
            Err(e) => last_error = format!("{what}: signature does not verify ({e})"),
        }
    }
    Err(last_error)
}

/// The body hash (RFC 6376 §3.7) with `l=` when given.
fn body_hash(raw: &[u8], cb: Canonicalization, limit: u64) -> Vec<u8> {
    // mail-auth's relaxed body canonicalization keeps whitespace-only trailing lines (see
    // crate::dkim): empty them first.
    let normalized = match cb {
        Canonicalization::Relaxed => crate::dkim::normalize_trailing_blank_lines(raw),
        Canonicalization::Simple => std::borrow::Cow::Borrowed(raw),
    };
    let body = &normalized[tern_mime::text::header_len(&normalized)..];
    let mut hasher = mail_auth::dkim::canonicalize::BodyHasher::new(Sha256::hasher(), cb, limit);
    hasher.write(body);
    let (ctx, _) = hasher.finish();
    ctx.complete().as_ref().to_vec()
}

async fn verify_seal<D: SpfDns>(
    dns: &D,
    sets: &std::collections::BTreeMap<u32, ArcSet<'_>>,
    i: u32,
) -> Result<(), String> {
    let what = format!("ARC-Seal {i}");
    let Some((seal, tags)) = sets.get(&i).and_then(|s| s.seal.as_ref()) else { return Err(format!("no {what}")) };
    let a = algorithm(&tags.required("a", &what)?).map_err(|e| format!("{what}: {e}"))?;
    let d = tags.required("d", &what)?;
    let s = tags.required("s", &what)?;
    let b =
        base64(tags.get("b").ok_or_else(|| format!("{what} has no b= tag"))?).map_err(|e| format!("{what} b=: {e}"))?;
    // §5.1.1: the fields of sets 1..i in order (AAR, AMS, AS), this seal without b=,
    // relaxed canonicalization.
    let own = without_signature(seal.value, tags);
    let own_trimmed = own.strip_suffix(b"\r\n").or_else(|| own.strip_suffix(b"\n")).unwrap_or(&own).to_vec();
    let mut headers: Vec<(&[u8], &[u8])> = Vec::new();
    for j in 1..=i {
        let Some(set) = sets.get(&j) else { return Err(format!("ARC set {j} is missing")) };
        let (Some(results), Some((ams, _)), Some((seal_j, _))) = (&set.results, &set.signature, &set.seal) else {
            return Err(format!("ARC set {j} is incomplete"));
        };
        headers.push((results.name, results.value));
        headers.push((ams.name, ams.value));
        if j == i {
            headers.push((seal.name, &own_trimmed));
        } else {
            headers.push((seal_j.name, seal_j.value));
        }
    }
    let key = key(dns, &s, &d).await.map_err(|e| format!("{what}: {e}"))?;
    key.p
        .verify(&mut headers.into_iter(), &b, Canonicalization::Relaxed, a)
        .map_err(|e| format!("{what}: signature does not verify ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_lists_are_read_strictly() {
        let t = TagList::parse(b" i=1; cv=none; a=rsa-sha256;\r\n d=example.org; s=x; b=AB\r\n CD=;").unwrap();
        assert_eq!(t.text("cv").as_deref(), Some("none"));
        assert_eq!(t.get("b"), Some(&b"AB\r\n CD="[..]));
        for bad in [&b"i=1; i=2"[..], b"1x=2", b"i:1", b"i=1; c#v=none", b"i=1; cv=n\x01"] {
            assert!(TagList::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(instance("1"), Ok(1));
        // A comma is a value character: `i=1, cv=none` is one tag whose value is no number.
        for bad in ["", "0", "01", "51", "x", "1.0", "1, cv=none"] {
            assert!(instance(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_signature_is_removed_in_place() {
        let v = b" i=1; a=rsa-sha256; b=ABC\r\n DEF; bh=XYZ=\r\n";
        let t = TagList::parse(v).unwrap();
        assert_eq!(without_signature(v, &t), b" i=1; a=rsa-sha256; b=; bh=XYZ=\r\n");
    }
}
