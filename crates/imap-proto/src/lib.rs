//! IMAP as pure functions on bytes: framing of commands with literals ([`CommandFramer`]),
//! parsing into typed [`Command`]s, and encoding of response values. No I/O here; the
//! session state machine lives in `tern-imap`. [`render`] turns a message summary from
//! `tern-mime` into ENVELOPE and BODYSTRUCTURE (the codec depends on the summary, never the
//! other way round: the store holds summaries without knowing IMAP).

mod command_encode;
pub mod encode;
mod frame;
mod parse;
pub mod render;
mod types;
pub mod url;

pub use command_encode::encode_command;
pub use frame::{CommandFramer, Frame, Limits, literal_marker};
pub use parse::{ParseError, Tagged, days_from_civil, parse_command};
pub use types::*;
