//! Built-in stages.

mod inbound_auth;
mod submission;

pub use inbound_auth::{InboundAuthentication, InboundPolicy, remove_results_for};
mod trace;

pub use submission::{DkimSign, SenderOwnership, SevenBitBody, SubmissionFixups};

pub use trace::{ReceivedHeader, ReturnPath, rfc5322_date};

mod scan;
pub use scan::{ContentScan, HEADER as SPAM_HEADER, arrival_facts, features_of};

mod sieve;
pub use sieve::SieveFilter;

mod forward;
pub use forward::SenderRewriting;
