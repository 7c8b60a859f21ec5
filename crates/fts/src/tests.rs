use super::*;

fn h(n: u8) -> [u8; 32] {
    [n; 32]
}

fn key(n: u8) -> ContentKey {
    content_key(&h(n))
}

#[test]
fn substring_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let idx = FtsIndex::open(dir.path()).unwrap();
    idx.add(&h(1), "subject: weekly report", "the password is swordfish.\nsee you").unwrap();
    idx.add(&h(2), "subject: lunch", "grüße aus münchen").unwrap();
    idx.add(&h(3), "subject: other", "sword and fish").unwrap();
    idx.commit().unwrap();
    let s = |n: &str, scope| {
        idx.search(n, scope).unwrap().map(|mut v: crate::KeySet<ContentKey>| v.drain().collect::<Vec<_>>()).map(
            |mut v| {
                v.sort();
                v
            },
        )
    };
    assert_eq!(s("swordfish", Scope::Body), Some(vec![key(1)]));
    assert_eq!(s("ORDFI", Scope::Body), Some(vec![key(1)]), "any substring, any case");
    assert_eq!(
        s("sword", Scope::Body),
        Some({
            let mut v = vec![key(1), key(3)];
            v.sort();
            v
        })
    );
    assert_eq!(s("fish.\nsee", Scope::Body), Some(vec![key(1)]));
    assert_eq!(s("GRÜSSE", Scope::Body), Some(vec![]), "no folding beyond lower-casing");
    assert_eq!(s("GRÜßE", Scope::Body), Some(vec![key(2)]));
    assert_eq!(s("weekly", Scope::Body), Some(vec![]));
    assert_eq!(s("weekly", Scope::All), Some(vec![key(1)]));
    assert_eq!(s("ab", Scope::Body), None, "too short to look up");
    assert_eq!(s("swordfisher", Scope::Body), Some(vec![]));
    // Deletion and replacement.
    idx.delete(&h(1));
    idx.add(&h(3), "", "nothing").unwrap();
    idx.commit().unwrap();
    assert_eq!(s("sword", Scope::Body), Some(vec![]));
    assert_eq!(idx.num_docs(), 2);
}

#[test]
fn survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let idx = FtsIndex::open(dir.path()).unwrap();
        idx.add(&h(9), "", "persistent text").unwrap();
        idx.commit().unwrap();
    }
    let idx = FtsIndex::open(dir.path()).unwrap();
    assert_eq!(idx.search("sistent", Scope::Body).unwrap(), Some([key(9)].into_iter().collect()));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]
    /// The index answers exactly like a substring scan.
    #[test]
    fn index_equals_scan(texts in proptest::collection::vec("[abc x]{0,40}", 1..8), needle in "[abc x]{3,11}") {
        let dir = tempfile::tempdir().unwrap();
        let idx = FtsIndex::open(dir.path()).unwrap();
        for (i, t) in texts.iter().enumerate() {
            idx.add(&h(i as u8), "", t).unwrap();
        }
        idx.commit().unwrap();
        let got: HashSet<ContentKey> = idx.search(&needle, Scope::Body).unwrap().unwrap().into_iter().collect();
        let want: HashSet<ContentKey> = texts.iter().enumerate().filter(|(_, t)| t.contains(&needle)).map(|(i, _)| key(i as u8)).collect();
        proptest::prop_assert_eq!(got, want);
    }
}

#[test]
fn trigram_cover_spans_every_character() {
    assert_eq!(crate::trigram::cover(0), Vec::<usize>::new());
    assert_eq!(crate::trigram::cover(1), vec![0]);
    assert_eq!(crate::trigram::cover(2), vec![0, 1]);
    assert_eq!(crate::trigram::cover(5), vec![0, 3, 4]);
    assert_eq!(crate::trigram::cover(7), vec![0, 3, 6]);
    for n in 1..40 {
        let c = crate::trigram::cover(n);
        // Trigram i covers characters i..i+3 of a needle of n + 2 characters.
        let covered: HashSet<usize> = c.iter().flat_map(|&i| i..i + 3).collect();
        assert_eq!(covered.len(), n + 2, "{n}: {c:?}");
    }
}

/// `cargo test --release -p tern-fts -- --ignored --nocapture indexing_cost`
#[test]
#[ignore]
fn indexing_cost() {
    let dir = tempfile::tempdir().unwrap();
    let idx = FtsIndex::open(dir.path()).unwrap();
    let words = [
        "budget",
        "meeting",
        "quarterly",
        "report",
        "project",
        "deadline",
        "review",
        "customer",
        "invoice",
        "schedule",
    ];
    let n = 5000usize;
    let started = std::time::Instant::now();
    let mut chars = 0;
    for i in 0..n {
        let body: String = (0..450).map(|j| words[(i * 7 + j * 13) % words.len()]).collect::<Vec<_>>().join(" ");
        chars += body.len();
        let mut hash = [0u8; 32];
        hash[..8].copy_from_slice(&(i as u64).to_be_bytes());
        idx.add(&hash, "subject: message about things", &body).unwrap();
    }
    idx.commit().unwrap();
    let elapsed = started.elapsed();
    eprintln!("indexed {n} docs ({} KiB text) in {elapsed:?}: {:?}/doc", chars / 1024, elapsed / n as u32);
    let t = std::time::Instant::now();
    let r = idx.search("quarterly rep", Scope::Body).unwrap().unwrap();
    eprintln!("search matched {} in {:?}", r.len(), t.elapsed());
    let t = std::time::Instant::now();
    let r = idx.search("deadline meeting budget", Scope::Body).unwrap().unwrap();
    eprintln!("search matched {} in {:?}", r.len(), t.elapsed());
}
