//! Built-in stages.

mod submission;
mod trace;

pub use submission::{DkimSign, SenderOwnership, SubmissionFixups};

pub use trace::{ReceivedHeader, ReturnPath, rfc5322_date};
