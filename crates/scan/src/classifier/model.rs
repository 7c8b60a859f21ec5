//! The learned model and how it judges a message.
//!
//! A model counts, for each feature, how many spam and how many ham messages it was seen in,
//! and how many of each were learnt. A message is judged:
//!
//! 1. each feature's spam probability `p = (s/S) / (s/S + h/H)`, pulled towards 0.5 when it
//!    was seen rarely (Gary Robinson's correction, as in bogofilter and SpamAssassin):
//!    `f = (STRENGTH * 0.5 + n * p) / (STRENGTH + n)` with `n = s + h`;
//! 2. only features that say something (`|f - 0.5| >= MIN_DEVIATION`) take part, at most
//!    [`MAX_CLUES`] of them, the strongest first;
//! 3. their log-likelihood ratios are added, `L = Σ ln(f / (1 - f))` (naive Bayes), and the
//!    spam probability is `1 / (1 + e^(-L / CALIBRATION))`.
//!
//! Step 3 is not Robinson's Fisher combination (which bogofilter and SpamAssassin use): on the
//! SpamAssassin public corpus split by time (`bench/spam-accuracy`), Fisher's method put a
//! fifth of the newer spam at exactly 0.5, "unsure", because a message with many strong clues
//! both ways saturates both of its chi-square tests; the summed ratios ranked spam above ham
//! far better (at 0.4 % false positives: 8.6 % false negatives against 20 %).
//! `CALIBRATION` divides out that the features are not independent (a word and the pairs it is
//! in count the same evidence) and places the 5-point Junk line (`p` about 0.92) at `L` ≈ 14.
//!
//! The features used in step 2 are the explanation: each with its `f` and counts.
//!
//! A user's model and the global model judge together: their counts are added, so a user's
//! own training moves their verdicts and the global model fills in what the user never taught.

use super::features::Features;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// The models' maps are keyed by feature hashes, which are hashes already: they are used as
/// they are instead of being hashed again (SipHash cost a fifth of a judgement).
#[derive(Default, Clone, Copy)]
pub struct FeatureHasher(u64);

impl Hasher for FeatureHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed; fold anything else in anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Feature hash → counts.
pub type FeatureMap = HashMap<u64, Counts, BuildHasherDefault<FeatureHasher>>;

/// How strongly a rarely seen feature is pulled towards 0.5 (Robinson's `s`).
const STRENGTH: f64 = 0.45;
/// Features closer than this to 0.5 are left out.
const MIN_DEVIATION: f64 = 0.1;
/// At most this many features decide (the strongest), which bounds the work per message.
pub const MAX_CLUES: usize = 1000;
/// See the module documentation, step 3.
const CALIBRATION: f64 = 6.0;
/// Clues kept in a judgement as its explanation, each way.
pub const EXPLAINED: usize = 12;

/// Per feature: messages of each class it was seen in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub spam: u32,
    pub ham: u32,
}

/// A model in memory.
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub spam_learned: u64,
    pub ham_learned: u64,
    pub features: FeatureMap,
}

/// Which class a message is taught as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Spam,
    Ham,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Spam => "spam",
            Class::Ham => "ham",
        }
    }
}

impl Model {
    /// Adds (or with `forget`, removes) one message's features to the class counts.
    pub fn learn(&mut self, class: Class, hashes: impl Iterator<Item = u64>, forget: bool) {
        let step = |v: &mut u32| {
            *v = if forget { v.saturating_sub(1) } else { v.saturating_add(1) };
        };
        for h in hashes {
            let c = self.features.entry(h).or_default();
            match class {
                Class::Spam => step(&mut c.spam),
                Class::Ham => step(&mut c.ham),
            }
            if *c == Counts::default() {
                self.features.remove(&h);
            }
        }
        let total = match class {
            Class::Spam => &mut self.spam_learned,
            Class::Ham => &mut self.ham_learned,
        };
        *total = if forget { total.saturating_sub(1) } else { total.saturating_add(1) };
    }
}

/// One feature that took part in a judgement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Clue {
    pub feature: String,
    /// Its spam probability `f` (0 = ham, 1 = spam).
    pub probability: f64,
    pub spam: u32,
    pub ham: u32,
}

/// The judgement of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    /// Spam probability, 0..=1.
    pub probability: f64,
    /// Messages the judging models had learnt.
    pub spam_learned: u64,
    pub ham_learned: u64,
    /// How many features took part.
    #[serde(default)]
    pub clue_count: usize,
    /// The strongest of them towards spam and towards ham ([`EXPLAINED`] of each), the
    /// strongest first: the explanation, stored with every delivery, so kept short.
    pub clues: Vec<Clue>,
}

impl Judgement {
    /// The strongest clues towards spam and towards ham, `n` of each.
    pub fn top(&self, n: usize) -> (Vec<&Clue>, Vec<&Clue>) {
        let spam = self.clues.iter().filter(|c| c.probability > 0.5).take(n).collect();
        let ham = self.clues.iter().filter(|c| c.probability < 0.5).take(n).collect();
        (spam, ham)
    }
}

/// Judges `features` with the counts of `models` added together.
pub fn judge(features: &Features, models: &[&Model]) -> Judgement {
    // A model that never learnt adds nothing: not looked up.
    let models: Vec<&Model> = models.iter().copied().filter(|m| !m.features.is_empty()).collect();
    let spam_learned: u64 = models.iter().map(|m| m.spam_learned).sum();
    let ham_learned: u64 = models.iter().map(|m| m.ham_learned).sum();
    let mut clues: Vec<(f64, u64, Counts)> = Vec::new();
    if spam_learned > 0 && ham_learned > 0 {
        for h in features.hashes() {
            let mut c = Counts::default();
            for m in &models {
                if let Some(x) = m.features.get(&h) {
                    c.spam = c.spam.saturating_add(x.spam);
                    c.ham = c.ham.saturating_add(x.ham);
                }
            }
            let n = f64::from(c.spam) + f64::from(c.ham);
            if n == 0.0 {
                continue;
            }
            let spam_ratio = f64::from(c.spam) / spam_learned as f64;
            let ham_ratio = f64::from(c.ham) / ham_learned as f64;
            let p = spam_ratio / (spam_ratio + ham_ratio);
            let f = (STRENGTH * 0.5 + n * p) / (STRENGTH + n);
            if (f - 0.5).abs() >= MIN_DEVIATION {
                clues.push((f, h, c));
            }
        }
    }
    clues.sort_by(|a, b| (b.0 - 0.5).abs().total_cmp(&(a.0 - 0.5).abs()).then(a.1.cmp(&b.1)));
    clues.truncate(MAX_CLUES);
    // Clamped so that one feature seen only in spam does not make an infinite ratio.
    let llr: f64 = clues
        .iter()
        .map(|(f, _, _)| {
            let f = f.clamp(1e-4, 1.0 - 1e-4);
            (f / (1.0 - f)).ln()
        })
        .sum();
    let probability = 1.0 / (1.0 + (-llr / CALIBRATION).exp());
    let clue_count = clues.len();
    // The explanation: the strongest each way, named (naming all of them costs more than
    // judging).
    let (mut towards_spam, mut towards_ham) = (0, 0);
    clues.retain(|(f, _, _)| {
        let count = if *f > 0.5 { &mut towards_spam } else { &mut towards_ham };
        *count += 1;
        *count <= EXPLAINED
    });
    Judgement {
        probability,
        spam_learned,
        ham_learned,
        clue_count,
        clues: clues
            .into_iter()
            .map(|(f, h, c)| Clue {
                feature: features.name(h).unwrap_or_else(|| format!("#{h:016x}")),
                probability: (f * 1000.0).round() / 1000.0,
                spam: c.spam,
                ham: c.ham,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::Facts;

    fn features(text: &str) -> Features {
        Features::extract(format!("Subject: t\r\n\r\n{text}\r\n").as_bytes(), &Facts::default())
    }

    fn trained() -> Model {
        let mut m = Model::default();
        for i in 0..30 {
            m.learn(Class::Spam, features(&format!("cheap pills viagra offer winner {i}")).hashes(), false);
            m.learn(Class::Ham, features(&format!("meeting agenda tomorrow project review {i}")).hashes(), false);
        }
        m
    }

    #[test]
    fn learnt_classes_are_told_apart_and_explained() {
        let m = trained();
        let spam = judge(&features("a cheap offer for the winner"), &[&m]);
        let ham = judge(&features("the project meeting is tomorrow"), &[&m]);
        assert!(spam.probability > 0.9, "{spam:?}");
        assert!(ham.probability < 0.1, "{ham:?}");
        let (towards_spam, _) = spam.top(3);
        assert!(towards_spam.iter().any(|c| c.feature == "\"cheap\""), "{towards_spam:?}");
        let unknown = judge(&features("completely different words"), &[&m]);
        assert!((unknown.probability - 0.5).abs() < 0.2, "{unknown:?}");
    }

    #[test]
    fn forgetting_undoes_learning() {
        let mut m = trained();
        let before = m.features.len();
        let f = features("entirely novel sentence");
        m.learn(Class::Spam, f.hashes(), false);
        m.learn(Class::Spam, f.hashes(), true);
        assert_eq!(before, m.features.len());
        assert_eq!(30, m.spam_learned);
    }

    #[test]
    fn an_empty_model_abstains() {
        let j = judge(&features("anything"), &[&Model::default()]);
        assert_eq!(0.5, j.probability);
        assert!(j.clues.is_empty());
    }

    #[test]
    fn a_users_counts_move_the_judgement() {
        let global = trained();
        let mut user = Model::default();
        // This user gets the "offers" as wanted mail.
        for i in 0..40 {
            user.learn(Class::Ham, features(&format!("cheap offer winner {i}")).hashes(), false);
        }
        let f = features("cheap offer winner");
        let alone = judge(&f, &[&global]);
        let with_user = judge(&f, &[&global, &user]);
        assert!(alone.probability > 0.9, "{alone:?}");
        assert!(with_user.probability < 0.5, "{with_user:?}");
    }
}
