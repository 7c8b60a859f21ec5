//! The classifier's accuracy and cost on a split corpus, in memory (no store, no server):
//! learns SPLIT/train/{spam,ham}/*, judges SPLIT/test/{spam,ham}/*, and prints error rates at
//! several probability thresholds and the CPU time per judged message (features + judgement).
//!
//!     cargo run --release -p tern-scan --example accuracy -- SPLIT_DIR
//!
//! `bench/spam-accuracy/run.sh` makes the split (SpamAssassin's public corpus, by time) and runs
//! this beside Tern's own `tern spam train`/`classify` and SpamAssassin.

use std::path::Path;
use std::time::Instant;
use tern_scan::Facts;
use tern_scan::classifier::{Class, Features, Model, judge};

fn messages(dir: &Path) -> Vec<Vec<u8>> {
    let mut names: Vec<_> =
        std::fs::read_dir(dir).expect("split directory").filter_map(|e| e.ok()).map(|e| e.path()).collect();
    names.sort();
    names
        .into_iter()
        .map(|p| {
            let raw = std::fs::read(p).expect("message");
            // CRLF, as messages arrive over SMTP.
            let mut out = Vec::with_capacity(raw.len() + raw.len() / 40);
            for &b in &raw {
                if b == b'\n' && out.last() != Some(&b'\r') {
                    out.push(b'\r');
                }
                out.push(b);
            }
            out
        })
        .collect()
}

/// Thread CPU time in seconds.
fn cpu() -> f64 {
    let mut ts = libc_timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the struct it is given.
    unsafe { clock_gettime(3, &mut ts) }; // CLOCK_THREAD_CPUTIME_ID
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

#[repr(C)]
struct libc_timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

unsafe extern "C" {
    fn clock_gettime(clock: i32, ts: *mut libc_timespec) -> i32;
}

fn main() {
    let split = std::env::args().nth(1).expect("usage: accuracy SPLIT_DIR");
    let split = Path::new(&split);
    let mut model = Model::default();
    let started = Instant::now();
    for (class, dir) in [(Class::Spam, "train/spam"), (Class::Ham, "train/ham")] {
        for raw in messages(&split.join(dir)) {
            let f = Features::extract(&raw, &Facts::default());
            model.learn(class, f.hashes(), false);
        }
    }
    println!(
        "learnt {} spam, {} ham: {} features in {:.1} s",
        model.spam_learned,
        model.ham_learned,
        model.features.len(),
        started.elapsed().as_secs_f64()
    );
    let mut probabilities = Vec::new();
    let (mut cpu_total, mut bytes, mut n) = (0.0, 0usize, 0usize);
    // Messages of about 10 KB (8-12 KB), the size of the SMTP benchmark's.
    let (mut cpu_10k, mut n_10k) = (0.0, 0usize);
    for (label, dir) in [("spam", "test/spam"), ("ham", "test/ham")] {
        for raw in messages(&split.join(dir)) {
            let t0 = cpu();
            let f = Features::extract(&raw, &Facts::default());
            let j = judge(&f, &[&model]);
            let spent = cpu() - t0;
            cpu_total += spent;
            if (8 * 1024..12 * 1024).contains(&raw.len()) {
                cpu_10k += spent;
                n_10k += 1;
            }
            bytes += raw.len();
            n += 1;
            if (std::env::var_os("SHOW_MISSES").is_some() && label == "spam" && j.probability < 0.9)
                || (std::env::var_os("SHOW_FP").is_some() && label == "ham" && j.probability >= 0.9)
            {
                let subject =
                    String::from_utf8_lossy(&raw).lines().find(|l| l.starts_with("Subject:")).unwrap_or("").to_string();
                let (s, h) = j.top(4);
                println!(
                    "miss p={:.3} clues={} {subject}\n  spam: {:?}\n  ham: {:?}",
                    j.probability,
                    j.clues.len(),
                    s.iter()
                        .map(|c| format!("{} {:.2} {}/{}", c.feature, c.probability, c.spam, c.ham))
                        .collect::<Vec<_>>(),
                    h.iter()
                        .map(|c| format!("{} {:.2} {}/{}", c.feature, c.probability, c.spam, c.ham))
                        .collect::<Vec<_>>()
                );
            }
            probabilities.push((label, j.probability));
        }
    }
    println!(
        "judged {n} messages (mean {:.1} KB): {:.3} ms CPU per message",
        bytes as f64 / n as f64 / 1024.0,
        cpu_total * 1000.0 / n as f64
    );
    println!("of them {n_10k} of 8-12 KB: {:.3} ms CPU per message", cpu_10k * 1000.0 / n_10k.max(1) as f64);
    let spam = probabilities.iter().filter(|p| p.0 == "spam").count();
    let ham = probabilities.len() - spam;
    for t in [0.5, 0.8, 0.9, 0.95, 0.99] {
        let fneg = probabilities.iter().filter(|p| p.0 == "spam" && p.1 < t).count();
        let fpos = probabilities.iter().filter(|p| p.0 == "ham" && p.1 >= t).count();
        println!(
            "p >= {t:.2}: false negatives {:.2} % ({fneg}/{spam}), false positives {:.2} % ({fpos}/{ham})",
            100.0 * fneg as f64 / spam as f64,
            100.0 * fpos as f64 / ham as f64
        );
    }
}
