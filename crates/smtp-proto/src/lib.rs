//! SMTP as pure functions on bytes: a command line in, a typed [`Command`] out; message data
//! in, dot-unstuffed content out ([`DataDecoder`]); a [`Reply`] in, wire bytes out.
//!
//! Nothing here does I/O, so every piece is unit-tested and property-tested without sockets.
//! The session state machine lives in `tern-smtp`.

mod address;
pub mod client;
mod command;
mod data;
mod envelope;
mod line;
mod reply;
pub mod xtext;

pub use address::{ForwardPath, Mailbox, parse_forward_path, parse_mailbox, parse_reverse_path};
pub use command::{Body, Command, MailFrom, Notify, ParseError, RcptTo, Ret, parse_command};
pub use data::{DataDecoder, DataOutcome, LineEndingCheck};
pub use line::{LineBuffer, LineEvent};
pub use reply::{Enhanced, Reply};
