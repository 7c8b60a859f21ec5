//! Overlapping character trigrams with positions: "hello" → hel(0) ell(1) llo(2). Texts
//! shorter than three characters give one token with the whole text.

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

#[derive(Clone, Default)]
pub struct TrigramTokenizer;

pub struct TrigramStream {
    /// Byte offsets of every character, plus the end.
    bounds: Vec<usize>,
    text: String,
    next: usize,
    token: Token,
}

impl Tokenizer for TrigramTokenizer {
    type TokenStream<'a> = TrigramStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> TrigramStream {
        let mut bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        bounds.push(text.len());
        TrigramStream { bounds, text: text.to_string(), next: 0, token: Token::default() }
    }
}

impl TokenStream for TrigramStream {
    fn advance(&mut self) -> bool {
        let chars = self.bounds.len() - 1;
        let i = self.next;
        if chars < 3 {
            if i > 0 || chars == 0 {
                return false;
            }
        } else if i + 3 > chars {
            return false;
        }
        let end = self.bounds[(i + 3).min(chars)];
        let start = self.bounds[i];
        self.token.text.clear();
        self.token.text.push_str(&self.text[start..end]);
        self.token.offset_from = start;
        self.token.offset_to = end;
        self.token.position = i;
        self.next += 1;
        true
    }

    fn token(&self) -> &Token {
        &self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.token
    }
}

/// The trigrams of a search string (empty if it is shorter than three characters).
pub fn grams(s: &str) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() < 3 {
        return vec![];
    }
    chars.windows(3).map(|w| w.iter().collect()).collect()
}

/// Offsets of trigrams, out of `n` consecutive ones, that together cover every character:
/// every third one, and the last.
pub fn cover(n: usize) -> Vec<usize> {
    if n == 0 {
        return vec![];
    }
    let mut offsets: Vec<usize> = (0..n).step_by(3).collect();
    if offsets.last() != Some(&(n - 1)) {
        offsets.push(n - 1);
    }
    offsets
}
