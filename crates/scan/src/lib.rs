//! Content scanning for the message pipeline.
//!
//! - [`classifier`]: Tern's own learned spam classifier, explainable;
//! - [`verdict`]: heuristic rules, outside scanners' results and the classifier's judgement
//!   added into one score, and the action it calls for;
//! - [`scanner`]: clamd, rspamd and generic HTTP scanner clients, asked concurrently;
//! - [`facts`]: what Tern already knows about a message's arrival (SPF, DKIM, DMARC, DNSBL).

pub mod classifier;
pub mod facts;
pub mod scanner;
pub mod verdict;

pub use facts::Facts;
pub use verdict::{Action, Reason, ScannerOutcome, ScannerResult, Thresholds, Verdict};
