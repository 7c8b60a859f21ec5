//! Command framing: assembles one command from its lines and literals (RFC 9051 §4.3),
//! answering when a continuation is needed, with every size bounded.
//!
//! Oversized input never grows memory: an over-long line is dropped up to its end; an
//! oversized synchronizing literal is refused before the client sends it; an oversized
//! non-synchronizing literal (LITERAL+/-, RFC 7888 §4) is read and discarded when that is
//! reasonable, else the connection must be closed.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest line between literals, CRLF included.
    pub max_line: usize,
    /// Largest literal in any command but APPEND.
    pub max_literal: usize,
    /// Largest literal in APPEND (the message).
    pub max_append_literal: usize,
    /// Most literals in one command.
    pub max_literals: usize,
    /// Largest oversized non-synchronizing literal we read and throw away rather than close
    /// the connection.
    pub max_discard: u64,
    /// Largest whole command (lines and literals), not counting an APPEND's message.
    pub max_command: usize,
}

impl Limits {
    /// Before authentication: small (Cyrus CVE-2024-34055 and Stalwart CVE-2025-61600 are
    /// what unbounded pre-authentication buffers lead to).
    /// ID at RFC 2971's own limits (30 fields of 30 octets with values of 1,024) fits.
    pub fn unauthenticated() -> Limits {
        Limits {
            max_line: 40 * 1024,
            max_literal: 4096,
            max_append_literal: 0,
            max_literals: 64,
            max_discard: 0,
            max_command: 40 * 1024,
        }
    }

    pub fn authenticated(append_limit: usize) -> Limits {
        Limits {
            max_line: 64 * 1024,
            max_literal: 64 * 1024,
            max_append_literal: append_limit,
            max_literals: 1024,
            max_discard: (append_limit as u64).saturating_mul(2),
            max_command: 1024 * 1024,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete command: its lines and literals exactly as received, without the final
    /// CRLF.
    Command(Vec<u8>),
    /// A synchronizing literal was announced and accepted: send a continuation request.
    Continue,
    /// A line was longer than the limit; the command was dropped.
    TooLong { tag: Option<String> },
    /// A literal was larger than allowed. For a synchronizing literal nothing more comes;
    /// a non-synchronizing one has been read and dropped.
    LiteralTooBig { tag: Option<String>, sync: bool },
    /// A non-synchronizing literal too large to discard: say BYE and close.
    Fatal { tag: Option<String> },
    /// An APPEND literal the caller refused ([`CommandFramer::refuse_literal`]): for a
    /// synchronizing one nothing more comes; a non-synchronizing one was read and dropped.
    Refused { tag: Option<String> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a command line.
    Line,
    /// Reading literal data.
    Literal { remaining: usize },
    /// Dropping an oversized non-synchronizing literal.
    SkipLiteral { remaining: u64 },
    /// Dropping input up to the end of the line, then reporting `pending`.
    Skip,
}

#[derive(Debug)]
pub struct CommandFramer {
    cmd: Vec<u8>,
    /// Where the line being read starts in `cmd` (after the last literal).
    line_start: usize,
    state: State,
    limits: Limits,
    literals: usize,
    /// What to report when a skip ends.
    pending: Option<Frame>,
    /// The last bytes of a skipped line, to notice a literal announced at its end.
    skip_tail: Vec<u8>,
    /// Bytes of an APPEND's message held in `cmd` (not counted against `max_command`).
    append_bytes: usize,
    /// Whether the literal being read was announced synchronizing.
    literal_sync: bool,
}

fn tag_of(bytes: &[u8]) -> Option<String> {
    let end = bytes.iter().position(|&b| b == b' ' || b == b'\r' || b == b'\n').unwrap_or(bytes.len());
    let tag = &bytes[..end];
    let ok =
        !tag.is_empty() && tag.len() <= 64 && tag.iter().all(|&b| b.is_ascii_graphic() && !b"+(){%*\"\\]".contains(&b));
    if ok { String::from_utf8(tag.to_vec()).ok() } else { None }
}

/// Parses a literal announcement at the end of a line (without CRLF):
/// `{n}`, `{n+}`, `~{n}`, `~{n+}`. Returns (size, synchronizing).
pub fn literal_marker(line: &[u8]) -> Option<(u64, bool)> {
    let body = line.strip_suffix(b"}")?;
    let open = memchr::memrchr(b'{', body)?;
    let mut digits = &body[open + 1..];
    let sync = match digits.strip_suffix(b"+") {
        Some(d) => {
            digits = d;
            false
        }
        None => true,
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok().map(|n| (n, sync))
}

/// Whether the command being assembled is an APPEND or a REPLACE (RFC 8508), whose
/// literals are messages.
fn is_append(cmd: &[u8]) -> bool {
    let mut words = cmd.split(|&b| b == b' ');
    words.next();
    let mut name = words.next();
    if name.is_some_and(|w| w.eq_ignore_ascii_case(b"UID")) {
        name = words.next();
    }
    name.is_some_and(|w| w.eq_ignore_ascii_case(b"APPEND") || w.eq_ignore_ascii_case(b"REPLACE"))
}

impl CommandFramer {
    pub fn new(limits: Limits) -> CommandFramer {
        CommandFramer {
            cmd: Vec::new(),
            line_start: 0,
            state: State::Line,
            limits,
            literals: 0,
            pending: None,
            skip_tail: Vec::new(),
            append_bytes: 0,
            literal_sync: false,
        }
    }

    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether a command is partly assembled (the client owes bytes).
    pub fn in_command(&self) -> bool {
        !self.cmd.is_empty() || self.state != State::Line
    }

    /// Bytes held for the command being assembled.
    pub fn held(&self) -> usize {
        self.cmd.len()
    }

    /// Bytes of APPEND messages announced for the command being assembled (their literals
    /// may still be arriving).
    pub fn append_bytes(&self) -> usize {
        self.append_bytes
    }

    /// Refuses the literal being read (the caller has no memory for it). A synchronizing one
    /// (whose continuation request was not sent) ends the command now: the returned frame; a
    /// non-synchronizing one is read and dropped, and [`Frame::Refused`] comes at the end of
    /// the command.
    pub fn refuse_literal(&mut self) -> Option<Frame> {
        let State::Literal { remaining } = self.state else { return None };
        let tag = tag_of(&self.cmd);
        if self.literal_sync {
            self.reset();
            return Some(Frame::Refused { tag });
        }
        self.skip(Frame::Refused { tag });
        self.state = State::SkipLiteral { remaining: remaining as u64 };
        None
    }

    /// Drops a partly assembled command.
    pub fn reset(&mut self) {
        self.cmd = Vec::new();
        self.line_start = 0;
        self.state = State::Line;
        self.literals = 0;
        self.pending = None;
        self.skip_tail.clear();
        self.append_bytes = 0;
    }

    fn skip(&mut self, report: Frame) {
        self.reset();
        self.pending = Some(report);
        self.state = State::Skip;
    }

    /// Takes bytes from the front of `input` until a frame is complete; `None` means more
    /// input is needed (everything given was consumed).
    pub fn next(&mut self, input: &mut Vec<u8>) -> Option<Frame> {
        loop {
            match self.state {
                State::Line => {
                    let line_len = self.cmd.len() - self.line_start;
                    let Some(lf) = memchr::memchr(b'\n', input) else {
                        if line_len + input.len() > self.limits.max_line {
                            let tag = tag_of(if self.cmd.is_empty() { input } else { &self.cmd });
                            input.clear();
                            self.skip(Frame::TooLong { tag });
                        } else {
                            self.cmd.append(input);
                        }
                        return None;
                    };
                    if line_len + lf + 1 > self.limits.max_line {
                        let tag = tag_of(if self.cmd.is_empty() { input } else { &self.cmd });
                        input.drain(..=lf);
                        self.reset();
                        return Some(Frame::TooLong { tag });
                    }
                    self.cmd.extend(input.drain(..=lf));
                    self.cmd.pop();
                    // A CR of this line only: one that ends the literal before it is data (a
                    // literal ending in CR followed by LF panicked here; found by fuzzing).
                    if self.cmd.len() > self.line_start && self.cmd.last() == Some(&b'\r') {
                        self.cmd.pop();
                    }
                    if self.cmd.len() - self.append_bytes > self.limits.max_command {
                        let tag = tag_of(&self.cmd);
                        self.reset();
                        return Some(Frame::TooLong { tag });
                    }
                    let Some((size, sync)) = literal_marker(&self.cmd[self.line_start..]) else {
                        let cmd = std::mem::take(&mut self.cmd);
                        self.reset();
                        return Some(Frame::Command(cmd));
                    };
                    let limit = if is_append(&self.cmd) {
                        self.limits.max_append_literal.max(self.limits.max_literal)
                    } else {
                        self.limits.max_literal
                    };
                    self.literals += 1;
                    let tag = tag_of(&self.cmd);
                    let message = is_append(&self.cmd) && size > self.limits.max_literal as u64;
                    let over_command =
                        !message && (self.cmd.len() - self.append_bytes) as u64 + size > self.limits.max_command as u64;
                    if size > limit as u64 || self.literals > self.limits.max_literals || over_command {
                        if sync {
                            self.reset();
                            return Some(Frame::LiteralTooBig { tag, sync: true });
                        }
                        if size > self.limits.max_discard {
                            self.reset();
                            return Some(Frame::Fatal { tag });
                        }
                        self.skip(Frame::LiteralTooBig { tag, sync: false });
                        self.state = State::SkipLiteral { remaining: size };
                        continue;
                    }
                    if message {
                        self.append_bytes += size as usize;
                    }
                    // Keep the CRLF after the marker: the parser reads `{n}\r\n` + data.
                    self.cmd.extend_from_slice(b"\r\n");
                    self.state = State::Literal { remaining: size as usize };
                    self.literal_sync = sync;
                    if sync {
                        return Some(Frame::Continue);
                    }
                }
                State::Literal { remaining } => {
                    if remaining == 0 {
                        self.state = State::Line;
                        self.line_start = self.cmd.len();
                        continue;
                    }
                    if input.is_empty() {
                        return None;
                    }
                    let take = remaining.min(input.len());
                    self.cmd.extend(input.drain(..take));
                    self.state = State::Literal { remaining: remaining - take };
                }
                State::SkipLiteral { remaining } => {
                    let take = remaining.min(input.len() as u64) as usize;
                    input.drain(..take);
                    let left = remaining - take as u64;
                    if left > 0 {
                        self.state = State::SkipLiteral { remaining: left };
                        return None;
                    }
                    self.state = State::Skip;
                }
                State::Skip => {
                    let Some(lf) = memchr::memchr(b'\n', input) else {
                        self.remember_tail(input);
                        input.clear();
                        return None;
                    };
                    let (line, _) = input.split_at(lf);
                    self.remember_tail(line);
                    input.drain(..=lf);
                    let mut tail = std::mem::take(&mut self.skip_tail);
                    if tail.last() == Some(&b'\r') {
                        tail.pop();
                    }
                    // The skipped line announced another literal: its data is not commands.
                    if let Some((size, false)) = literal_marker(&tail) {
                        if size > self.limits.max_discard {
                            let tag = match self.pending.take() {
                                Some(Frame::LiteralTooBig { tag, .. } | Frame::TooLong { tag }) => tag,
                                _ => None,
                            };
                            self.reset();
                            return Some(Frame::Fatal { tag });
                        }
                        self.state = State::SkipLiteral { remaining: size };
                        continue;
                    }
                    let report = self.pending.take();
                    self.reset();
                    return report;
                }
            }
        }
    }

    fn remember_tail(&mut self, bytes: &[u8]) {
        self.skip_tail.extend_from_slice(&bytes[bytes.len().saturating_sub(32)..]);
        let excess = self.skip_tail.len().saturating_sub(32);
        self.skip_tail.drain(..excess);
    }
}

#[cfg(test)]
mod tests;
