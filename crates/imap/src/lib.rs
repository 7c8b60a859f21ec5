//! The IMAP service (RFC 9051 IMAP4rev2 and RFC 3501 IMAP4rev1 behaviour).

pub mod address;
mod compress;
pub mod mailbox;
pub mod notify;
pub mod render;
pub mod search;
pub mod section;
