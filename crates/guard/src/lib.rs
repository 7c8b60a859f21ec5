//! Protection shared by SMTP, IMAP and POP3: concurrent connection limits per address and in
//! total, and a failed-login record that slows down and then bans addresses that keep
//! guessing passwords.

pub mod auth;
pub mod limits;

pub use auth::{AuthGuard, AuthVerdict};
pub use limits::{ConnectionLimits, ConnectionSlot, LimitExceeded};
