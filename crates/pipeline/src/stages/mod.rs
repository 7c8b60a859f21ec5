//! Built-in stages.

mod trace;

pub use trace::{ReceivedHeader, ReturnPath, rfc5322_date};
