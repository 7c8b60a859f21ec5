//! Search text in PostgreSQL: each content's decoded, lower-cased header and body text, and
//! the set of its trigrams as integers under one GIN index.
//!
//! A trigram is three alphanumeric characters in a row; its code is a 31-bit hash of them,
//! with the top bit set for the header's. A needle's trigrams are all in any text that holds
//! the needle, so `grams @> needle's grams` finds every candidate, and `strpos` on the text
//! keeps the exact answers (a hash collision only adds a candidate). The trigrams are made
//! here, not by `pg_trgm`: its extraction cost the database 1.4 ms of CPU per 6 KB body,
//! more than the rest of a delivery; the integer index takes a third of what the two
//! `gin_trgm_ops` indexes took.

use crate::error::pg_error;
use crate::sql::Cached;
use deadpool_postgres::Transaction;
use tern_store::{BlobHash, StoreResult};

const HEADER: u32 = 1 << 31;

/// A content's search text, ready to store.
pub struct SearchText {
    pub header: String,
    pub body: String,
    pub grams: Vec<i32>,
}

/// The text of a raw message (`None`: too large to index, always scanned). CPU work: call
/// it off the async runtime.
pub fn extract(raw: &[u8]) -> Option<SearchText> {
    let (header, body) = tern_mime::text::search_texts_within(raw, tern_fts::MAX_TEXT)?;
    // PostgreSQL's text holds no NUL.
    let (header, body) = (header.replace('\0', " "), body.replace('\0', " "));
    let mut grams = Vec::new();
    push_grams(&header, HEADER, &mut grams);
    push_grams(&body, 0, &mut grams);
    grams.sort_unstable();
    grams.dedup();
    Some(SearchText { header, body, grams })
}

/// The trigram codes every body (or header) holding `needle` (lower-cased) holds; empty when
/// it has no three alphanumeric characters in a row (the index cannot help).
pub fn needle_grams(needle: &str, header: bool) -> Vec<i32> {
    let mut grams = Vec::new();
    push_grams(needle, if header { HEADER } else { 0 }, &mut grams);
    grams.sort_unstable();
    grams.dedup();
    grams
}

fn push_grams(text: &str, tag: u32, out: &mut Vec<i32>) {
    let mut window = ['\0'; 3];
    let mut run = 0usize;
    for c in text.chars() {
        if !c.is_alphanumeric() {
            run = 0;
            continue;
        }
        window = [window[1], window[2], c];
        run += 1;
        if run >= 3 {
            out.push(code(window, tag));
        }
    }
}

/// FNV-1a over the three characters, in 31 bits, tagged.
fn code(window: [char; 3], tag: u32) -> i32 {
    let mut hash: u32 = 0x811c_9dc5;
    for c in window {
        for byte in (c as u32).to_le_bytes() {
            hash ^= u32::from(byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    }
    ((hash & !HEADER) | tag) as i32
}

/// Stores the texts of contents (inside the transaction that marks them indexed). The
/// statements are sent together (pipelined), not one round trip each.
pub async fn insert(tx: &Transaction<'_>, texts: &[(BlobHash, &SearchText)]) -> StoreResult<()> {
    let sql = "INSERT INTO content_text (hash, header, body, grams) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
    let inserts = texts.iter().map(|(hash, text)| async move {
        tx.run(sql, &[&&hash.0[..], &text.header, &text.body, &text.grams]).await.map_err(pg_error)
    });
    futures::future::try_join_all(inserts).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn body_grams(text: &str) -> Vec<i32> {
        let mut grams = Vec::new();
        push_grams(text, 0, &mut grams);
        grams.sort_unstable();
        grams.dedup();
        grams
    }

    #[test]
    fn trigrams_are_runs_of_three_alphanumerics() {
        assert_eq!(needle_grams("ab", false), Vec::<i32>::new());
        assert_eq!(needle_grams("a-b-c d", false), Vec::<i32>::new());
        assert_eq!(needle_grams("abcd", false).len(), 2);
        assert_eq!(needle_grams("abc abc", false).len(), 1);
        assert_eq!(needle_grams("ñandú", false).len(), 3, "characters, not bytes");
        let body = needle_grams("abc", false);
        let header = needle_grams("abc", true);
        assert_ne!(body, header, "header trigrams are told from the body's");
        assert!(body[0] >= 0 && header[0] < 0);
    }

    proptest! {
        /// Whatever the text, a needle cut from it has only trigrams the text has: the index
        /// never loses a match.
        #[test]
        fn a_substring_has_a_subset_of_the_trigrams(text in "\\PC{0,200}", a in 0usize..200, len in 0usize..40) {
            let chars: Vec<char> = text.chars().collect();
            let start = a.min(chars.len());
            let end = (start + len).min(chars.len());
            let needle: String = chars[start..end].iter().collect();
            let all = body_grams(&text);
            for g in needle_grams(&needle, false) {
                prop_assert!(all.binary_search(&g).is_ok());
            }
        }
    }
}
