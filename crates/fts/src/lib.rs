//! The full-text index of message contents.
//!
//! IMAP SEARCH BODY/TEXT means "contains this string, case-insensitively" — a substring, not
//! a word. So the text is indexed as overlapping character trigrams *with their positions*:
//! a document contains the substring `s` (of 3 or more characters) exactly when the trigrams
//! of `s` occur at consecutive positions, which is a phrase query. The index therefore gives
//! the exact answer for the text it was given, not an approximation; strings shorter than
//! three characters cannot be looked up and the caller scans instead.
//!
//! One document per message content (BLAKE3 hash), shared by every copy of the message.

mod trigram;

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;
use std::sync::Mutex;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::query::{BooleanQuery, Occur, PhraseQuery, Query, TermQuery};
use tantivy::schema::{FAST, Field, INDEXED, IndexRecordOption, STRING, Schema, TextFieldIndexing, TextOptions};
use tantivy::{DocId, Index, IndexReader, IndexWriter, ReloadPolicy, Score, SegmentReader, TantivyDocument, Term};

pub use trigram::TrigramTokenizer;

const TOKENIZER: &str = "tern_trigram";
/// Text indexed per message (after decoding); beyond this a message is searched by scanning.
pub const MAX_TEXT: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FtsError {
    #[error("full-text index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("full-text index: {0}")]
    Open(#[from] tantivy::directory::error::OpenDirectoryError),
    #[error("full-text index I/O: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, FtsError>;

/// Which text a search looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Body,
    /// Header and body (IMAP TEXT).
    All,
}

/// First 128 bits of a content hash: the key search results are given in.
pub type ContentKey = u128;

pub fn content_key(hash: &[u8; 32]) -> ContentKey {
    let mut k = [0u8; 16];
    k.copy_from_slice(&hash[..16]);
    u128::from_be_bytes(k)
}

/// Hashes keys that are uniformly random already (content hashes and their prefixes): their
/// leading bytes are the hash. SipHash of 100,000 keys was a third of a SEARCH BODY.
#[derive(Default, Clone, Copy)]
pub struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = self.0.rotate_left(5) ^ (n as u64) ^ ((n >> 64) as u64);
    }

    /// Length prefixes of fixed-size keys carry nothing.
    fn write_usize(&mut self, _: usize) {}
}

/// A set of content hashes or content keys.
pub type KeySet<K> = HashSet<K, BuildHasherDefault<PrehashedHasher>>;

struct Fields {
    hash: Field,
    key_hi: Field,
    key_lo: Field,
    header: Field,
    body: Field,
}

pub struct FtsIndex {
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    fields: Fields,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(TOKENIZER)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let fields = Fields {
        hash: b.add_text_field("hash", STRING),
        key_hi: b.add_u64_field("key_hi", FAST | INDEXED),
        key_lo: b.add_u64_field("key_lo", FAST),
        header: b.add_text_field("header", text.clone()),
        body: b.add_text_field("body", text),
    };
    (b.build(), fields)
}

impl FtsIndex {
    /// Opens or creates the index in `path`.
    pub fn open(path: &Path) -> Result<FtsIndex> {
        std::fs::create_dir_all(path)?;
        let (schema, fields) = schema();
        let dir = tantivy::directory::MmapDirectory::open(path)?;
        let index = Index::open_or_create(dir, schema)?;
        index.tokenizers().register(TOKENIZER, TrigramTokenizer);
        let writer = index.writer_with_num_threads(1, 32 * 1024 * 1024)?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        Ok(FtsIndex { reader, writer: Mutex::new(writer), fields })
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, IndexWriter> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds (or replaces) the text of one content. Texts must already be lower-cased the
    /// way searches are.
    pub fn add(&self, hash: &[u8; 32], header: &str, body: &str) -> Result<()> {
        let key = content_key(hash);
        let f = &self.fields;
        let mut doc = TantivyDocument::default();
        doc.add_text(f.hash, hex::encode(hash));
        doc.add_u64(f.key_hi, (key >> 64) as u64);
        doc.add_u64(f.key_lo, key as u64);
        doc.add_text(f.header, truncate(header));
        doc.add_text(f.body, truncate(body));
        let writer = self.writer();
        writer.delete_term(Term::from_field_text(f.hash, &hex::encode(hash)));
        writer.add_document(doc)?;
        Ok(())
    }

    pub fn delete(&self, hash: &[u8; 32]) {
        self.writer().delete_term(Term::from_field_text(self.fields.hash, &hex::encode(hash)));
    }

    /// Makes everything added or deleted so far durable and visible.
    pub fn commit(&self) -> Result<()> {
        self.writer().commit()?;
        self.reader.reload()?;
        Ok(())
    }

    /// Waits for the merges under way (at shutdown, and for measurements); returns how many
    /// segments the index has then.
    pub fn close(self) -> Result<usize> {
        let writer = self.writer.into_inner().unwrap_or_else(|p| p.into_inner());
        writer.wait_merging_threads()?;
        self.reader.reload()?;
        Ok(self.reader.searcher().segment_readers().len())
    }

    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Contents whose text contains `needle` (case-insensitive); `None` when the needle is
    /// shorter than three characters and the index cannot tell.
    pub fn search(&self, needle: &str, scope: Scope) -> Result<Option<KeySet<ContentKey>>> {
        let needle = needle.to_lowercase();
        let grams = trigram::grams(&needle);
        if grams.is_empty() {
            return Ok(None);
        }
        // Trigrams that cover every character at its offset are enough: `invoice` is
        // inv@0 oic@3 ice@4. Fewer position lists to read than all five.
        let cover = trigram::cover(grams.len());
        let phrase = |field: Field| -> Box<dyn Query> {
            let terms: Vec<(usize, Term)> =
                cover.iter().map(|&i| (i, Term::from_field_text(field, &grams[i]))).collect();
            if terms.len() == 1 {
                Box::new(TermQuery::new(terms[0].1.clone(), IndexRecordOption::Basic))
            } else {
                Box::new(PhraseQuery::new_with_offset(terms))
            }
        };
        let query: Box<dyn Query> = match scope {
            Scope::Body => phrase(self.fields.body),
            Scope::All => Box::new(BooleanQuery::new(vec![
                (Occur::Should, phrase(self.fields.body)),
                (Occur::Should, phrase(self.fields.header)),
            ])),
        };
        let searcher = self.reader.searcher();
        let keys = searcher.search(&query, &KeyCollector)?;
        Ok(Some(keys))
    }
}

fn truncate(s: &str) -> &str {
    if s.len() <= MAX_TEXT {
        return s;
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Collects the content keys of all matching documents from the fast columns.
struct KeyCollector;

struct KeySegment {
    hi: tantivy::columnar::Column<u64>,
    lo: tantivy::columnar::Column<u64>,
    keys: Vec<ContentKey>,
}

impl Collector for KeyCollector {
    type Fruit = KeySet<ContentKey>;
    type Child = KeySegment;

    fn for_segment(&self, _: u32, segment: &SegmentReader) -> tantivy::Result<KeySegment> {
        let ff = segment.fast_fields();
        Ok(KeySegment { hi: ff.u64("key_hi")?, lo: ff.u64("key_lo")?, keys: Vec::new() })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    /// One set sized once: growing it while inserting 100,000 keys cost a tenth of a search.
    fn merge_fruits(&self, fruits: Vec<Vec<ContentKey>>) -> tantivy::Result<KeySet<ContentKey>> {
        let total = fruits.iter().map(Vec::len).sum();
        let mut all = KeySet::with_capacity_and_hasher(total, Default::default());
        for keys in fruits {
            all.extend(keys);
        }
        Ok(all)
    }
}

impl SegmentCollector for KeySegment {
    type Fruit = Vec<ContentKey>;

    fn collect(&mut self, doc: DocId, _: Score) {
        if let (Some(hi), Some(lo)) = (self.hi.first(doc), self.lo.first(doc)) {
            self.keys.push((u128::from(hi) << 64) | u128::from(lo));
        }
    }

    fn harvest(self) -> Vec<ContentKey> {
        self.keys
    }
}

#[cfg(test)]
mod tests;
