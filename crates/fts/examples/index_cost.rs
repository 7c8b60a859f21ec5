//! CPU cost of indexing, per document, merges included: `cargo run --release -p tern-fts
//! --example index_cost -- DOCS BATCH`. Documents are mail-like texts (a plain part and the
//! same words as HTML, ~10 KB together, as `bench/clients/smtp_load.py` sends); BATCH documents
//! go into each commit, as the store's indexer does. Reports CPU ms per document of the whole
//! process (tantivy's indexing and merge threads included) until every merge is done.

use std::time::Instant;

#[rustfmt::skip]
const WORDS: &[&str] = &[
    "all", "men", "too", "this", "great", "what", "budget", "day", "if", "any", "such", "good", "against", "two",
    "my", "only", "with", "since", "about", "us", "both", "is", "release", "do", "customer", "time", "when",
    "must", "but", "the", "way", "in", "even", "through", "invoice", "project", "can", "some", "still", "now",
    "little", "lunch", "back", "world", "might", "migration", "because", "to", "be", "while", "or", "that",
    "very", "more", "may", "will", "right", "people", "just", "off", "long", "from", "like", "where", "years",
    "down", "of", "update", "backup", "here", "holiday", "work", "on", "was", "were", "those", "after", "team",
    "meeting", "report", "quarter", "deadline", "server", "schedule", "thanks", "regards", "please", "review",
];

fn cpu_ms() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc_rusage>::uninit();
    // SAFETY: getrusage writes one struct rusage, which libc_rusage lays out.
    unsafe { getrusage(0, usage.as_mut_ptr()) };
    // SAFETY: initialised by getrusage.
    let u = unsafe { usage.assume_init() };
    let t = |s: i64, us: i64| s as f64 * 1000.0 + us as f64 / 1000.0;
    t(u.utime_s, u.utime_us) + t(u.stime_s, u.stime_us)
}

#[repr(C)]
struct libc_rusage {
    utime_s: i64,
    utime_us: i64,
    stime_s: i64,
    stime_us: i64,
    rest: [i64; 14],
}

unsafe extern "C" {
    fn getrusage(who: i32, usage: *mut libc_rusage) -> i32;
}

fn text(seed: u64) -> (String, String) {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut plain = String::new();
    for i in 0..700 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        plain.push_str(WORDS[(x % WORDS.len() as u64) as usize]);
        plain.push(if i % 14 == 13 { '\n' } else { ' ' });
    }
    let html = format!("<html><body><p>{}</p></body></html>", plain.replace('\n', "</p>\n<p>"));
    let header = format!(
        "subject: [invo] invoice state {seed}: other much me support\nfrom: \"bob garcia\" <sender@client.test>"
    );
    (header, format!("{plain}\n{html}\n"))
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let docs = args.first().copied().unwrap_or(20_000);
    let batch = args.get(1).copied().unwrap_or(256);
    let dir = tempfile::tempdir().expect("temporary directory");
    let index = tern_fts::FtsIndex::open(dir.path()).expect("index");
    let texts: Vec<(String, String)> = (0..docs as u64).map(text).collect();
    let started = (Instant::now(), cpu_ms());
    for (i, (header, body)) in texts.iter().enumerate() {
        let mut hash = [0u8; 32];
        hash[..8].copy_from_slice(&(i as u64).to_be_bytes());
        index.add(&hash, header, body).expect("add");
        if (i + 1) % batch == 0 {
            index.commit().expect("commit");
        }
    }
    index.commit().expect("commit");
    let segments = index.close().expect("merges");
    let (wall, cpu) = (started.0.elapsed().as_secs_f64(), cpu_ms() - started.1);
    println!(
        "{docs} docs, commit every {batch}: {:.3} CPU ms/doc, {:.1} s wall, {segments} segments at the end",
        cpu / docs as f64,
        wall
    );
}
