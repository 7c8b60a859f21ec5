//! Overlapping character trigrams with positions: "hello" → hel(0) ell(1) llo(2). Texts
//! shorter than three characters give one token with the whole text.

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

#[derive(Clone, Default)]
pub struct TrigramTokenizer;

/// Walks the text once, borrowing it: the start of the current trigram and the ends of its
/// first, second and third characters (no copy of the text, no table of every boundary).
pub struct TrigramStream<'a> {
    text: &'a str,
    /// Byte offsets where the next three characters end, then where the trigram starts.
    ends: [usize; 3],
    start: usize,
    position: usize,
    /// Texts of fewer than three characters give one token; set once it was given.
    done: bool,
    token: Token,
}

/// The byte offset after the character starting at `at` (`text.len()` at the end).
fn next_boundary(text: &str, at: usize) -> usize {
    match text.as_bytes().get(at) {
        None => text.len(),
        Some(&b) => {
            let width = match b {
                0x00..=0x7f => 1,
                0xc0..=0xdf => 2,
                0xe0..=0xef => 3,
                _ => 4,
            };
            (at + width).min(text.len())
        }
    }
}

impl Tokenizer for TrigramTokenizer {
    type TokenStream<'a> = TrigramStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> TrigramStream<'a> {
        let first = next_boundary(text, 0);
        let second = next_boundary(text, first);
        let third = next_boundary(text, second);
        TrigramStream {
            text,
            ends: [first, second, third],
            start: 0,
            position: 0,
            done: false,
            token: Token::default(),
        }
    }
}

impl TokenStream for TrigramStream<'_> {
    fn advance(&mut self) -> bool {
        if self.done || self.start >= self.text.len() {
            return false;
        }
        let [first, second, third] = self.ends;
        // Fewer than three characters left: only a text that short altogether gives a token.
        if third == second || second == first {
            self.done = true;
            if self.position > 0 {
                return false;
            }
        }
        let end = third;
        self.token.text.clear();
        self.token.text.push_str(&self.text[self.start..end]);
        self.token.offset_from = self.start;
        self.token.offset_to = end;
        self.token.position = self.position;
        self.position += 1;
        self.start = first;
        self.ends = [second, third, next_boundary(self.text, third)];
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(text: &str) -> Vec<(String, usize, usize, usize)> {
        let mut t = TrigramTokenizer;
        let mut stream = t.token_stream(text);
        let mut out = Vec::new();
        while stream.advance() {
            let k = stream.token();
            out.push((k.text.clone(), k.position, k.offset_from, k.offset_to));
        }
        out
    }

    /// The table of every boundary the tokenizer used before: what it must still give.
    fn reference(text: &str) -> Vec<(String, usize, usize, usize)> {
        let mut bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        bounds.push(text.len());
        let chars = bounds.len() - 1;
        if chars == 0 {
            return vec![];
        }
        if chars < 3 {
            return vec![(text.to_string(), 0, 0, text.len())];
        }
        (0..=chars - 3).map(|i| (text[bounds[i]..bounds[i + 3]].to_string(), i, bounds[i], bounds[i + 3])).collect()
    }

    #[test]
    fn trigrams_with_positions_and_offsets() {
        assert_eq!(tokens("hello"), reference("hello"));
        assert_eq!(tokens("hello")[2].0, "llo");
        for text in ["", "a", "ab", "abc", "grüße aus münchen", "日本語のテキスト", "a😀b😀c", "é", "éé", "ééé"]
        {
            assert_eq!(tokens(text), reference(text), "{text:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn same_trigrams_as_the_boundary_table(text in "\\PC{0,40}") {
            proptest::prop_assert_eq!(tokens(&text), reference(&text));
        }
    }
}
