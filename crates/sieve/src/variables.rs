//! RFC 5229 variables: references in strings, the store with its bounds, `set` modifiers.

use crate::program::{Modifier, Piece, Str};
use std::collections::HashMap;

/// Variables a script may hold, and the characters of one value, at most (as Pigeonhole's
/// defaults); a longer value is cut (RFC 5229 §3 allows a limit).
pub const MAX_VARIABLES: usize = 256;
pub const MAX_VALUE_CHARS: usize = 4096;

/// `identifier` of RFC 5228: letter or `_`, then letters, digits, `_`.
pub fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Splits `text` into text and references; a `${` that does not start a valid reference
/// stays text (RFC 5229 §3).
pub fn template(text: &str) -> Str {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        literal.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let reference = after.find('}').map(|end| (&after[..end], end)).and_then(|(name, end)| {
            if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
                Some((Piece::Match(name.parse::<usize>().unwrap_or(usize::MAX)), end))
            } else if is_name(name) {
                Some((Piece::Variable(name.to_ascii_lowercase()), end))
            } else {
                None
            }
        });
        match reference {
            Some((piece, end)) => {
                if !literal.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut literal)));
                }
                pieces.push(piece);
                rest = &after[end + 1..];
            }
            None => {
                literal.push_str("${");
                rest = after;
            }
        }
    }
    literal.push_str(rest);
    if pieces.is_empty() {
        return Str::Literal(literal);
    }
    if !literal.is_empty() {
        pieces.push(Piece::Text(literal));
    }
    Str::Template(pieces)
}

/// A run's variables and match variables.
#[derive(Debug, Default, Clone)]
pub struct Variables {
    values: HashMap<String, String>,
    /// `${0}` (the whole matched value) to `${9}`.
    matches: Vec<String>,
}

impl Variables {
    pub fn get(&self, name: &str) -> &str {
        self.values.get(name).map(String::as_str).unwrap_or("")
    }

    /// Sets `name`; refused (false) when the script already holds its maximum of variables.
    pub fn set(&mut self, name: &str, value: String) -> bool {
        if !self.values.contains_key(name) && self.values.len() >= MAX_VARIABLES {
            return false;
        }
        self.values.insert(name.to_string(), truncate(value));
        true
    }

    pub fn set_matches(&mut self, matches: Vec<String>) {
        self.matches = matches.into_iter().take(10).map(truncate).collect();
    }

    /// [`Variables::expand`] without a copy of a literal (most keys and header names).
    pub fn expand_cow<'a>(&'a self, s: &'a Str) -> std::borrow::Cow<'a, str> {
        match s {
            Str::Literal(text) => std::borrow::Cow::Borrowed(text.as_str()),
            template => std::borrow::Cow::Owned(self.expand(template)),
        }
    }

    pub fn expand(&self, s: &Str) -> String {
        match s {
            Str::Literal(text) => text.clone(),
            Str::Template(pieces) => {
                let mut out = String::new();
                for piece in pieces {
                    match piece {
                        Piece::Text(t) => out.push_str(t),
                        Piece::Variable(name) => out.push_str(self.get(name)),
                        Piece::Match(n) => out.push_str(self.matches.get(*n).map(String::as_str).unwrap_or("")),
                    }
                    if out.len() > MAX_VALUE_CHARS * 4 {
                        break;
                    }
                }
                truncate(out)
            }
        }
    }
}

fn truncate(mut value: String) -> String {
    if let Some((cut, _)) = value.char_indices().nth(MAX_VALUE_CHARS) {
        value.truncate(cut);
    }
    value
}

/// Applies `set`'s modifiers, highest precedence first (the list is sorted so).
pub fn modify(mut value: String, modifiers: &[Modifier]) -> String {
    for m in modifiers {
        value = match m {
            Modifier::Lower => value.to_lowercase(),
            Modifier::Upper => value.to_uppercase(),
            Modifier::LowerFirst | Modifier::UpperFirst => {
                let mut chars = value.chars();
                match chars.next() {
                    Some(first) => {
                        let first: String = if *m == Modifier::LowerFirst {
                            first.to_lowercase().collect()
                        } else {
                            first.to_uppercase().collect()
                        };
                        first + chars.as_str()
                    }
                    None => value,
                }
            }
            Modifier::QuoteWildcard => quote(&value, "*?\\"),
            Modifier::QuoteRegex => quote(&value, "\\^$.[]|()?*+{}"),
            Modifier::Length => value.chars().count().to_string(),
            Modifier::EncodeUrl => {
                // RFC 5435 §4.1: everything but the unreserved characters percent-encoded.
                let mut out = String::new();
                for b in value.bytes() {
                    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                        out.push(b as char);
                    } else {
                        out.push_str(&format!("%{b:02X}"));
                    }
                }
                out
            }
        };
    }
    value
}

fn quote(value: &str, special: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if special.contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_and_non_references() {
        assert_eq!(template("plain"), Str::Literal("plain".into()));
        assert_eq!(template("${a"), Str::Literal("${a".into()));
        assert_eq!(template("${-x}"), Str::Literal("${-x}".into()));
        assert_eq!(
            template("a${Name}b${1}"),
            Str::Template(vec![
                Piece::Text("a".into()),
                Piece::Variable("name".into()),
                Piece::Text("b".into()),
                Piece::Match(1)
            ])
        );
    }

    #[test]
    fn expansion_is_bounded() {
        let mut v = Variables::default();
        assert!(v.set("x", "y".repeat(10_000)));
        assert_eq!(v.get("x").len(), MAX_VALUE_CHARS);
        let doubled = template("${x}${x}${x}");
        assert_eq!(v.expand(&doubled).chars().count(), MAX_VALUE_CHARS);
        for i in 0..MAX_VARIABLES {
            v.set(&format!("v{i}"), String::new());
        }
        assert!(!v.set("one_more", String::new()));
        assert!(v.set("x", "still settable".into()));
    }

    #[test]
    fn modifiers_as_rfc_5229_examples() {
        // RFC 5229 §4.1.
        assert_eq!(modify("juMBlEd lETteRS".into(), &[Modifier::Lower]), "jumbled letters");
        assert_eq!(modify("juMBlEd lETteRS".into(), &[Modifier::Length]), "15");
        assert_eq!(modify("juMBlEd lETteRS".into(), &[Modifier::Upper, Modifier::LowerFirst]), "jUMBLED LETTERS");
        assert_eq!(modify("juMBlEd lETteRS".into(), &[Modifier::UpperFirst]), "JuMBlEd lETteRS");
        assert_eq!(modify("j?mbled*letters".into(), &[Modifier::QuoteWildcard]), "j\\?mbled\\*letters");
        assert_eq!(modify("a b&c".into(), &[Modifier::EncodeUrl]), "a%20b%26c");
    }
}
