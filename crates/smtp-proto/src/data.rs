//! Message data after DATA (RFC 5321 §4.1.1.4, §4.5.2) and after BDAT (RFC 3030).
//!
//! Only `<CRLF>.<CRLF>` ends DATA. A bare CR or a bare LF anywhere in the data is recorded and
//! makes the message refused once the real end arrives; it never ends the data, so the
//! `<LF>.<LF>` and `<LF>.<CRLF>` tricks of SMTP smuggling (CVE-2023-51764 and siblings) cannot
//! make Tern see a different end of message than the sender's MTA did.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the first byte of a line (after CRLF, or at the start of the data).
    LineStart,
    /// Inside a line.
    Text,
    /// After a CR inside a line.
    Cr,
    /// A line began with '.'.
    Dot,
    /// A line began with ".\r".
    DotCr,
    /// `<CRLF>.<CRLF>` seen.
    Done,
}

/// What a finished DATA amounted to.
#[derive(Debug, PartialEq, Eq)]
pub enum DataOutcome {
    /// The unstuffed message; it ends with CRLF unless it is empty.
    Message(Vec<u8>),
    /// More than the limit arrived (`size` counts every unstuffed byte received).
    TooLarge { size: u64 },
    /// A bare CR or LF was found.
    BareLineEnding,
}

#[derive(Debug)]
pub struct DataDecoder {
    state: State,
    out: Vec<u8>,
    limit: usize,
    size: u64,
    bare: bool,
    storing: bool,
}

impl DataDecoder {
    /// `limit` is the largest message kept; bytes beyond it are counted and dropped.
    pub fn new(limit: usize) -> DataDecoder {
        DataDecoder { state: State::LineStart, out: Vec::new(), limit, size: 0, bare: false, storing: true }
    }

    /// Consumes input up to and including the terminating `.CRLF`; returns how many bytes were
    /// consumed. Bytes after the terminator belong to the next command and are not consumed.
    pub fn feed(&mut self, input: &[u8]) -> usize {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Done => return i,
                State::Text => {
                    // Fast path: copy up to the next CR or LF.
                    let rest = &input[i..];
                    let n = memchr::memchr2(b'\r', b'\n', rest).unwrap_or(rest.len());
                    self.emit(&rest[..n]);
                    i += n;
                    if let Some(&b) = input.get(i) {
                        i += 1;
                        if b == b'\r' {
                            self.state = State::Cr;
                        } else {
                            self.bare = true; // bare LF
                            self.emit(b"\n");
                        }
                    }
                }
                state => {
                    let b = input[i];
                    i += 1;
                    self.state = match (state, b) {
                        (State::LineStart, b'.') => State::Dot,
                        (State::LineStart | State::Cr, b'\r') => {
                            if state == State::Cr {
                                self.bare = true; // the first CR was not followed by LF
                                self.emit(b"\r");
                            }
                            State::Cr
                        }
                        (State::Cr, b'\n') => {
                            self.emit(b"\r\n");
                            State::LineStart
                        }
                        (State::Cr, other) => {
                            self.bare = true;
                            self.emit(&[b'\r', other]);
                            if other == b'\n' { State::LineStart } else { State::Text }
                        }
                        (State::LineStart, b'\n') => {
                            self.bare = true;
                            self.emit(b"\n");
                            State::Text
                        }
                        // RFC 5321 §4.5.2: a leading dot is removed ("transparency").
                        (State::Dot, b'\r') => State::DotCr,
                        (State::Dot, b'\n') => {
                            self.bare = true;
                            State::Text
                        }
                        (State::Dot, other) => {
                            self.emit(&[other]);
                            State::Text
                        }
                        (State::DotCr, b'\n') => State::Done,
                        (State::DotCr, _) => {
                            self.bare = true;
                            self.emit(b"\r");
                            i -= 1; // reprocess this byte as ordinary text
                            State::Text
                        }
                        (State::LineStart, other) => {
                            self.emit(&[other]);
                            State::Text
                        }
                        (State::Text | State::Done, _) => unreachable_state(state),
                    };
                }
            }
        }
        i
    }

    fn emit(&mut self, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        if self.storing && self.size <= self.limit as u64 {
            self.out.extend_from_slice(bytes);
        } else {
            self.storing = false;
            self.out = Vec::new();
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Unstuffed bytes received so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes currently held.
    pub fn stored(&self) -> usize {
        self.out.len()
    }

    /// The bytes decoded since the last call, for a caller that keeps the message elsewhere
    /// (the limit still counts every byte).
    pub fn take_stored(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    pub fn finish(self) -> DataOutcome {
        if self.size > self.limit as u64 {
            DataOutcome::TooLarge { size: self.size }
        } else if self.bare {
            DataOutcome::BareLineEnding
        } else {
            DataOutcome::Message(self.out)
        }
    }
}

/// The two states that are handled before the `match` never reach it.
fn unreachable_state(state: State) -> State {
    debug_assert!(false, "state {state:?} handled by the fast path");
    State::Text
}

/// Checks that chunked (BDAT) content uses only CRLF line endings, across chunk boundaries.
#[derive(Debug, Default)]
pub struct LineEndingCheck {
    after_cr: bool,
    bare: bool,
}

impl LineEndingCheck {
    pub fn feed(&mut self, data: &[u8]) {
        let mut rest = data;
        while let Some(i) = memchr::memchr2(b'\r', b'\n', rest) {
            if i > 0 && self.after_cr {
                self.bare = true;
            }
            let b = rest[i];
            if b == b'\n' {
                if !(i == 0 && self.after_cr) {
                    self.bare = true;
                }
                self.after_cr = false;
            } else {
                if i == 0 && self.after_cr {
                    self.bare = true;
                }
                self.after_cr = true;
            }
            rest = &rest[i + 1..];
        }
        if !rest.is_empty() && self.after_cr {
            self.bare = true;
            self.after_cr = false;
        }
    }

    /// Whether a bare CR or LF was seen (a trailing CR at the very end counts as bare).
    pub fn has_bare(&self) -> bool {
        self.bare || self.after_cr
    }
}

#[cfg(test)]
mod tests;
