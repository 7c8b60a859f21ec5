//! Protection shared by SMTP, IMAP and POP3: concurrent connection limits per address and in
//! total, a failed-login record that slows down and then bans addresses that keep guessing
//! passwords (or harvesting addresses), rate limits, the greylist, the pool that runs sessions' CPU-heavy commands, and the memory budget of
//! message data (with its spool).

pub mod accept;
pub mod auth;
pub mod clock;
pub mod compute;
pub mod deadline;
pub mod limits;
pub mod memory;
pub mod proxy;
pub mod rate;
pub mod session_io;
pub mod shared;

pub use accept::{Admitted, Gate, NoScreen, Protocol, Refusals, Screen, Ticket, accept_until_shutdown, admit};
pub use auth::{AuthGuard, AuthVerdict};
pub use clock::{Clock, ManualClock, SystemClock};
pub use compute::{Budget, ComputeError, ComputePool, OverBudget};
pub use deadline::{Deadlines, Expired};
pub use limits::{ConnectionLimits, ConnectionSlot, LimitExceeded};
pub use memory::{Incoming, IncomingError, MessageMemory, Reservation};
pub use rate::{Greylist, RateLimiter, greylist_network};
pub use session_io::{InputEnd, LineTooLong, SessionIo};
pub use shared::{GuardEvent, Outbox};
