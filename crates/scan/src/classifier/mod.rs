//! Tern's own spam classifier: messages become hashed features ([`Features`]), models count
//! them per class ([`Model`]), and a judgement combines the telling ones ([`judge`]), keeping
//! them as its explanation.

mod features;
mod hash;
mod model;

pub use features::{Features, MAX_TEXT_BYTES, MAX_WORDS, OSB_WINDOW};
pub use model::{Class, Clue, Counts, EXPLAINED, FeatureHasher, FeatureMap, Judgement, MAX_CLUES, Model, judge};
