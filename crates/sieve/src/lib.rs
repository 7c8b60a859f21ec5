//! Sieve mail filtering (RFC 5228 and the extensions in [`program::EXTENSIONS`]), Tern's own
//! implementation: [`compile`] checks a script and names the line and column of each error;
//! [`run`] evaluates it for one message and recipient within [`Limits`] and returns the
//! actions to take. Nothing here does I/O: mailboxes, other scripts and duplicate tracking
//! come from the caller's [`Host`].

pub mod compile;
pub mod dates;
pub mod error;
pub mod interp;
pub mod lexer;
pub mod matching;
pub mod program;
pub mod syntax;
pub mod variables;

pub use compile::compile;
pub use error::{CompileError, Pos, RuntimeError};
pub use interp::{Action, Envelope, Host, Limits, Message, NoHost, Outcome, VacationReply, run, sequence};
pub use program::{EXTENSIONS, Script};
