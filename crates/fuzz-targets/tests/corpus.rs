//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`, seeds and every input that
//! once crashed a target) through the targets on stable Rust: what was fixed stays fixed, and
//! the targets keep building. Also a short deterministic mutation pass over each seed, so the
//! test command exercises more than the seeds without libFuzzer.

use std::path::PathBuf;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()))
        .join("../../fuzz/corpus")
        .join(target)
}

#[test]
fn every_target_has_a_corpus_and_replays_it() {
    for (name, target) in tern_fuzz_targets::TARGETS {
        let dir = corpus_dir(name);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no corpus for {name}");
        for file in files {
            let data = std::fs::read(&file).unwrap();
            let result = std::panic::catch_unwind(|| target(&data));
            assert!(result.is_ok(), "{name} fails on {}", file.display());
        }
    }
}

/// A small xorshift generator: the same mutations on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn mutated_seeds_do_not_break_the_targets() {
    let interesting: &[&[u8]] = &[
        b"\r\n",
        b"\0",
        b"{",
        b"}",
        b"(",
        b")",
        b"\"",
        b"\\",
        b"{99999999}\r\n",
        b"=?",
        b"?=",
        b"\xff",
        b".\r\n",
        b"<",
        b">",
        b":",
        b"@",
        b";",
        b",",
    ];
    let mut rng = Rng(0x7e57_c0de);
    for (name, target) in tern_fuzz_targets::TARGETS {
        let dir = corpus_dir(name);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let seed = std::fs::read(entry.unwrap().path()).unwrap();
            for _ in 0..40 {
                let mut data = seed.clone();
                for _ in 0..1 + rng.next() % 4 {
                    let at = if data.is_empty() { 0 } else { (rng.next() as usize) % (data.len() + 1) };
                    match rng.next() % 4 {
                        0 if at < data.len() => data[at] = rng.next() as u8,
                        1 => {
                            let piece = interesting[(rng.next() as usize) % interesting.len()];
                            data.splice(at..at, piece.iter().copied());
                        }
                        2 if at < data.len() => {
                            let end = (at + 1 + (rng.next() as usize) % 16).min(data.len());
                            data.drain(at..end);
                        }
                        _ => {
                            let end = (at + (rng.next() as usize) % 32).min(data.len());
                            let copy = data[at..end].to_vec();
                            data.splice(at..at, copy);
                        }
                    }
                }
                let result = std::panic::catch_unwind(|| target(&data));
                assert!(result.is_ok(), "{name} fails on {:?}", String::from_utf8_lossy(&data));
            }
        }
    }
}
