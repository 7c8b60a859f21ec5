//! What the classifier looks at: a message turned into a set of hashed features.
//!
//! - words of the decoded text (text parts, and HTML parts as text), lower-cased, numbers
//!   folded to their digit count;
//! - word pairs (sparse bigrams as in CRM114 and rspamd's OSB, with the distance kept in the
//!   feature; [`OSB_WINDOW`] says how far apart), so phrases count;
//! - the same for the Subject, as features of their own;
//! - facts about the message: the From and Reply-To domains, URL domains, attachment types,
//!   the mailer, charsets, whether it is HTML only;
//! - facts about how it arrived, which the classifier learns to weigh like any word: SPF, DKIM,
//!   DMARC, ARC and iprev results, DNS blocklist listings, TLS, authenticated submission.
//!
//! Each feature counts once per message. The work is bounded: at most [`MAX_TEXT_BYTES`] of text
//! and [`MAX_WORDS`] words are read, however large the message.

use super::hash::{Fnv, feature_hash};
use crate::facts::Facts;
use mail_parser::{Address, MessageParser, MimeHeaders};

/// How far apart two words may be and still form a pair feature. Measured on the SpamAssassin
/// corpus (`bench/spam-accuracy`), adjacent pairs tell spam from ham better than pairs up to 4
/// apart (OSB), which count the same evidence several times, and make models a third the size.
pub const OSB_WINDOW: usize = 1;
/// Text read from a message (decoded); the rest is not looked at.
pub const MAX_TEXT_BYTES: usize = 256 * 1024;
/// Words taken from the text.
pub const MAX_WORDS: usize = 3_000;
/// Words shorter (in characters) are skipped; longer ones are cut to their first
/// `MAX_WORD_CHARS` and marked.
const MIN_WORD_CHARS: usize = 2;
const MAX_WORD_CHARS: usize = 24;
/// URL domains and attachments counted as features.
const MAX_URLS: usize = 64;
const MAX_ATTACHMENTS: usize = 32;

/// Where a feature came from, to name it in explanations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// A body word.
    Word(u32),
    /// Body words `.0` and `.1`, `.1 - .0` apart.
    Pair(u32, u32),
    /// A subject word (index into `subject`).
    SubjectWord(u32),
    SubjectPair(u32, u32),
    /// A fact (index into `meta`).
    Meta(u32),
}

/// A message's features: hashes (sorted, unique) and enough to name each one.
#[derive(Debug, Default)]
pub struct Features {
    items: Vec<(u64, Origin)>,
    words: Vec<String>,
    subject: Vec<String>,
    meta: Vec<String>,
}

impl Features {
    /// The message's features. `raw` is the whole message as received.
    pub fn extract(raw: &[u8], facts: &Facts) -> Features {
        let mut f = Features::default();
        match MessageParser::default().parse(raw) {
            Some(message) => f.read_message(&message),
            None => {
                let text = String::from_utf8_lossy(&raw[..raw.len().min(MAX_TEXT_BYTES)]).into_owned();
                f.words = words(&text, MAX_WORDS);
                f.add_meta("mime:unparsable");
            }
        }
        f.facts(facts);
        f.index();
        f
    }

    /// Feature hashes, sorted and unique.
    pub fn hashes(&self) -> impl ExactSizeIterator<Item = u64> + '_ {
        self.items.iter().map(|(h, _)| *h)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The message's facts (`from-domain:...`, `attachment:.exe`, `spf:fail`, ...), which the
    /// heuristic rules read too.
    pub fn meta(&self) -> &[String] {
        &self.meta
    }

    /// The readable name of the feature with this hash, if the message has it.
    pub fn name(&self, hash: u64) -> Option<String> {
        let i = self.items.binary_search_by_key(&hash, |(h, _)| *h).ok()?;
        Some(self.describe(self.items[i].1))
    }

    fn describe(&self, origin: Origin) -> String {
        let pair = |list: &[String], a: u32, b: u32| {
            let gap = (b - a - 1) as usize;
            format!("\"{}{}{}\"", list[a as usize], " *".repeat(gap) + " ", list[b as usize])
        };
        match origin {
            Origin::Word(i) => format!("\"{}\"", self.words[i as usize]),
            Origin::Pair(a, b) => pair(&self.words, a, b),
            Origin::SubjectWord(i) => format!("subject \"{}\"", self.subject[i as usize]),
            Origin::SubjectPair(a, b) => format!("subject {}", pair(&self.subject, a, b)),
            Origin::Meta(i) => self.meta[i as usize].clone(),
        }
    }

    fn add_meta(&mut self, name: impl Into<String>) {
        self.meta.push(name.into());
    }

    fn read_message(&mut self, message: &mail_parser::Message<'_>) {
        // Text: every text body (HTML converted to text by the parser), bounded.
        let mut text = String::new();
        for i in 0..message.text_body_count() {
            if text.len() >= MAX_TEXT_BYTES {
                break;
            }
            if let Some(t) = message.body_text(i) {
                let room = MAX_TEXT_BYTES - text.len();
                text.push_str(cut(&t, room));
                text.push('\n');
            }
        }
        self.words = words(&text, MAX_WORDS);
        if let Some(subject) = message.subject() {
            self.subject = words(cut(subject, 1024), 64);
            let letters: Vec<char> = subject.chars().filter(|c| c.is_alphabetic()).collect();
            if letters.len() >= 8 && letters.iter().all(|c| c.is_uppercase()) {
                self.add_meta("subject:all-capitals");
            }
        } else {
            self.add_meta("subject:missing");
        }

        // URL domains, from the text and from links in the HTML.
        let mut urls = Vec::new();
        url_domains(&text, &mut urls);
        for i in 0..message.html_body_count() {
            if let Some(html) = message.body_html(i) {
                url_domains(cut(&html, MAX_TEXT_BYTES), &mut urls);
            }
        }
        urls.sort();
        urls.dedup();
        self.add_meta(format!("urls:{}", bucket(urls.len())));
        for domain in urls.into_iter().take(MAX_URLS) {
            self.add_meta(format!("url:{domain}"));
        }

        let from = first_address(message.from());
        match &from {
            Some(address) => {
                let domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
                self.add_meta(format!("from-domain:{domain}"));
                if let Some(reply_to) = first_address(message.reply_to()) {
                    let reply_domain = reply_to.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
                    if !reply_domain.eq_ignore_ascii_case(domain) {
                        self.add_meta("reply-to:other-domain");
                    }
                }
            }
            None => self.add_meta("from:missing"),
        }
        if let Some(name) = message.from().and_then(|a| a.first()).and_then(|a| a.name.as_deref())
            && name.contains('@')
        {
            self.add_meta("from-name:has-address");
        }
        if message.message_id().is_none() {
            self.add_meta("message-id:missing");
        }
        if message.date().is_none() {
            self.add_meta("date:missing");
        }
        // Which header fields the message has (mailing-list, mailer and spamware fields tell a
        // lot), except those this server adds on delivery: a message learnt from a mailbox
        // must have the features it had when it arrived.
        let mut names: Vec<String> = message
            .headers()
            .iter()
            .map(|h| h.name().to_ascii_lowercase())
            .filter(|n| !ADDED_ON_DELIVERY.contains(&n.as_str()) && n.len() <= 40)
            .collect();
        names.sort();
        names.dedup();
        for name in names.into_iter().take(64) {
            self.add_meta(format!("header:{name}"));
        }
        if let Some(name) = message.from().and_then(|a| a.first()).and_then(|a| a.name.as_deref()) {
            for w in words(cut(name, 256), 8) {
                self.add_meta(format!("from-name:{w}"));
            }
        }
        if let Some(id) = message.message_id()
            && let Some((_, domain)) = id.rsplit_once('@')
        {
            self.add_meta(format!("message-id-domain:{}", domain.trim_end_matches('>').to_lowercase()));
        }
        if let Some(list) = message.header_raw("List-Id") {
            self.add_meta(format!("list-id:{}", cut(list.trim(), 100).to_lowercase()));
        }
        let to = message.to().map(|a| a.iter().count()).unwrap_or(0);
        self.add_meta(format!("to-count:{}", bucket(to)));
        if let Some(ct) = message.content_type() {
            self.add_meta(format!("content-type:{}/{}", ct.ctype(), ct.subtype().unwrap_or("")).to_lowercase());
        }
        for part in message.parts.iter().take(64) {
            if let Some(cte) = part.content_transfer_encoding() {
                self.add_meta(format!("transfer-encoding:{}", cte.to_lowercase()));
            }
        }
        // Element names of real HTML parts (the parser renders text parts as HTML too).
        let mut tags = Vec::new();
        for part in message.parts.iter().take(64) {
            if let mail_parser::PartType::Html(html) = &part.body {
                html_tags(cut(html, MAX_TEXT_BYTES), &mut tags);
            }
        }
        tags.sort();
        tags.dedup();
        for tag in tags.into_iter().take(64) {
            self.add_meta(format!("html:{tag}"));
        }
        for name in ["X-Mailer", "User-Agent"] {
            if let Some(mailer) = message.header_raw(name) {
                let product: String =
                    mailer.trim().chars().take_while(|c| c.is_alphabetic() || *c == '-' || *c == ' ').collect();
                self.add_meta(format!("mailer:{}", product.trim().to_lowercase()));
            }
        }
        if message.text_body_count() > 0
            && message.parts.iter().all(|p| !matches!(p.body, mail_parser::PartType::Text(_)))
        {
            self.add_meta("body:html-only");
        }
        for part in message.parts.iter().take(64) {
            if let Some(charset) = part.content_type().and_then(|ct| ct.attribute("charset")) {
                self.add_meta(format!("charset:{}", charset.to_lowercase()));
            }
        }
        for part in message.attachments().take(MAX_ATTACHMENTS) {
            let ctype = part
                .content_type()
                .map(|ct| format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("")).to_lowercase())
                .unwrap_or_default();
            self.add_meta(format!("attachment-type:{ctype}"));
            if let Some(name) = part.attachment_name()
                && let Some((_, ext)) = name.rsplit_once('.')
                && ext.len() <= 8
            {
                self.add_meta(format!("attachment:.{}", ext.to_lowercase()));
            }
        }
    }

    fn facts(&mut self, facts: &Facts) {
        for (method, result) in facts.results() {
            self.add_meta(format!("{method}:{result}"));
        }
        for zone in &facts.dnsbl {
            self.add_meta(format!("dnsbl:{zone}"));
        }
        self.add_meta(if facts.tls { "tls:yes" } else { "tls:no" });
        if facts.authenticated {
            self.add_meta("submission:authenticated");
        }
    }

    /// Hashes every feature, then sorts and removes repeats.
    fn index(&mut self) {
        let mut items =
            Vec::with_capacity((self.words.len() + self.subject.len()) * (OSB_WINDOW + 1) + self.meta.len());
        for (kind, list, single, pair) in [
            (b'w', &self.words, Origin::Word as fn(u32) -> Origin, Origin::Pair as fn(u32, u32) -> Origin),
            (b's', &self.subject, Origin::SubjectWord, Origin::SubjectPair),
        ] {
            let word_hashes: Vec<u64> = list.iter().map(|w| feature_hash(kind, w.as_bytes())).collect();
            for (i, h) in word_hashes.iter().enumerate() {
                items.push((*h, single(i as u32)));
                for gap in 1..=OSB_WINDOW {
                    let Some(other) = word_hashes.get(i + gap) else { break };
                    let mut fnv = Fnv::new();
                    fnv.write(&[kind.to_ascii_uppercase(), gap as u8]);
                    fnv.write(&h.to_le_bytes());
                    fnv.write(&other.to_le_bytes());
                    items.push((fnv.finish(), pair(i as u32, (i + gap) as u32)));
                }
            }
        }
        for (i, m) in self.meta.iter().enumerate() {
            items.push((feature_hash(b'm', m.as_bytes()), Origin::Meta(i as u32)));
        }
        items.sort_unstable_by_key(|(h, _)| *h);
        items.dedup_by_key(|(h, _)| *h);
        self.items = items;
    }
}

/// Header fields Tern adds when it delivers (or that a delivery agent adds): left out of the
/// features so a message has the same ones on arrival and when learnt from a mailbox.
const ADDED_ON_DELIVERY: [&str; 7] = [
    "received",
    "return-path",
    "x-tern-spam",
    "authentication-results",
    "delivered-to",
    "x-original-to",
    "arc-authentication-results",
];

/// Adds the names of the HTML elements in `html` (`<font`, `<img`, ...), lower-cased.
fn html_tags(html: &str, out: &mut Vec<String>) {
    let bytes = html.as_bytes();
    let mut i = 0;
    while let Some(at) = memchr(b'<', &bytes[i..]) {
        let start = i + at + 1;
        let name: String = html[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .take(16)
            .collect::<String>()
            .to_ascii_lowercase();
        if !name.is_empty() && out.len() < 1024 {
            out.push(name);
        }
        i = start;
    }
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Words: runs of letters and digits (with inner `'`, `-`, `.` kept), lower-cased; numbers
/// become `#N` for N digits, over-long words are cut and marked with `…`.
fn words(text: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    for raw in text.split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '-' || c == '.' || c == '$' || c == '€'))
    {
        if out.len() >= max {
            break;
        }
        let word = raw.trim_matches(|c: char| !c.is_alphanumeric() && c != '$' && c != '€');
        let chars = word.chars().count();
        if chars < MIN_WORD_CHARS {
            continue;
        }
        if word.chars().all(|c| c.is_ascii_digit() || c == '.' || c == '-') {
            let digits = word.chars().filter(char::is_ascii_digit).count();
            out.push(format!("#{digits}"));
            continue;
        }
        let w = if chars > MAX_WORD_CHARS {
            let mut w: String = word.chars().take(MAX_WORD_CHARS).flat_map(char::to_lowercase).collect();
            w.push('…');
            w
        } else {
            word.to_lowercase()
        };
        out.push(w);
    }
    out
}

/// Adds the host of every `http://` and `https://` URL in `text` (lower-cased, `www.` removed).
fn url_domains(text: &str, out: &mut Vec<String>) {
    let lower = text.to_ascii_lowercase();
    let mut rest = lower.as_str();
    while let Some(at) = rest.find("http") {
        rest = &rest[at + 4..];
        let after = rest.strip_prefix("s://").or_else(|| rest.strip_prefix("://"));
        let Some(after) = after else { continue };
        let host: String =
            after.chars().take_while(|c| c.is_alphanumeric() || *c == '.' || *c == '-').take(253).collect();
        let host = host.trim_end_matches('.');
        if host.contains('.') && out.len() < MAX_URLS * 4 {
            out.push(host.strip_prefix("www.").unwrap_or(host).to_string());
        }
    }
}

/// The first address of an address header, lower-cased.
fn first_address(address: Option<&Address<'_>>) -> Option<String> {
    address?.first()?.address.as_deref().map(str::to_lowercase)
}

/// A count as a coarse bucket: 0, 1, 2-3, 4-7, 8+.
fn bucket(n: usize) -> &'static str {
    match n {
        0 => "0",
        1 => "1",
        2..=3 => "2-3",
        4..=7 => "4-7",
        _ => "8+",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(f: &Features) -> Vec<String> {
        f.hashes().filter_map(|h| f.name(h)).collect()
    }

    #[test]
    fn words_and_pairs_from_decoded_text() {
        let raw = b"From: Shop <offers@shop.example>\r\nSubject: Cheap watches\r\nMessage-ID: <a@b>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nBuy cheap R=C3=A9plica watches now for 1234 dollars at https://www.shop.example/x\r\n";
        let f = Features::extract(raw, &Facts::default());
        let n = names(&f);
        for expected in [
            "\"buy\"",
            "\"réplica\"",
            "\"#4\"",
            "\"cheap réplica\"",
            "\"buy cheap\"",
            "subject \"cheap\"",
            "subject \"cheap watches\"",
            "url:shop.example",
            "from-domain:shop.example",
            "charset:utf-8",
            "tls:no",
        ] {
            assert!(n.iter().any(|x| x == expected), "{expected} missing from {n:?}");
        }
        assert!(!n.iter().any(|x| x == "message-id:missing"));
        assert!(!n.iter().any(|x| x.starts_with("html:")), "a text part has no HTML elements: {n:?}");
        // Sorted and unique.
        let hashes: Vec<u64> = f.hashes().collect();
        assert!(hashes.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn html_is_read_as_text_and_links_count() {
        let raw = b"From: a@b.example\r\nContent-Type: text/html\r\n\r\n<html><body><p>Claim your <b>prize</b></p><a href=\"http://win.example/claim\">here</a></body></html>\r\n";
        let f = Features::extract(raw, &Facts::default());
        let n = names(&f);
        assert!(n.contains(&"\"claim your\"".to_string()), "{n:?}");
        assert!(n.contains(&"url:win.example".to_string()), "{n:?}");
        assert!(n.contains(&"body:html-only".to_string()), "{n:?}");
        assert!(n.contains(&"html:b".to_string()) && n.contains(&"html:a".to_string()), "{n:?}");
        assert!(n.contains(&"message-id:missing".to_string()), "{n:?}");
    }

    #[test]
    fn arrival_facts_are_features() {
        let facts = Facts::from_authentication_results(
            "mx.example; spf=fail smtp.mailfrom=x@y.example; dkim=none; dmarc=fail header.from=y.example",
        )
        .with_dnsbl(vec!["zen.example".into()]);
        let f = Features::extract(b"Subject: hi\r\n\r\nhello there\r\n", &facts);
        let n = names(&f);
        for expected in ["spf:fail", "dkim:none", "dmarc:fail", "dnsbl:zen.example"] {
            assert!(n.contains(&expected.to_string()), "{expected} missing from {n:?}");
        }
    }

    #[test]
    fn work_is_bounded_for_huge_text() {
        let mut raw = b"Subject: x\r\n\r\n".to_vec();
        for i in 0..200_000 {
            raw.extend_from_slice(format!("word{} ", i % 5000).as_bytes());
        }
        let f = Features::extract(&raw, &Facts::default());
        assert!(f.len() <= MAX_WORDS * (OSB_WINDOW + 1) + 64, "{}", f.len());
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_give_features_without_panic(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096)) {
            let f = Features::extract(&raw, &Facts::default());
            for h in f.hashes() {
                proptest::prop_assert!(f.name(h).is_some());
            }
        }
    }
}
