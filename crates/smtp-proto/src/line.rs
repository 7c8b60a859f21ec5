//! Bounded command-line framing. An over-long line is discarded up to its end while the
//! buffer stays at most `max_line` bytes, so a 10 MB line costs constant memory.

#[derive(Debug, PartialEq, Eq)]
pub enum LineEvent {
    /// A line without its line ending (`CRLF`, or a bare `LF` which is tolerated in commands).
    Line(Vec<u8>),
    /// A line longer than the limit ended; its content was dropped.
    TooLong,
}

#[derive(Debug)]
pub struct LineBuffer {
    buf: Vec<u8>,
    max_line: usize,
    /// Inside an over-long line: dropping bytes until its LF.
    discarding: bool,
    /// An over-long line has ended and must be reported before the lines after it.
    too_long_ended: bool,
}

impl LineBuffer {
    pub fn new(max_line: usize) -> LineBuffer {
        LineBuffer { buf: Vec::with_capacity(1024), max_line, discarding: false, too_long_ended: false }
    }

    /// Appends bytes read from the network. While discarding an over-long line, bytes up to
    /// its LF are dropped right away.
    pub fn extend(&mut self, data: &[u8]) {
        if self.discarding {
            if let Some(i) = memchr::memchr(b'\n', data) {
                self.discarding = false;
                self.too_long_ended = true;
                self.buf.extend_from_slice(&data[i + 1..]);
            }
        } else {
            self.buf.extend_from_slice(data);
        }
    }

    /// The next complete line, if any.
    pub fn next_line(&mut self) -> Option<LineEvent> {
        if self.too_long_ended {
            self.too_long_ended = false;
            return Some(LineEvent::TooLong);
        }
        match memchr::memchr(b'\n', &self.buf) {
            Some(i) if i + 1 > self.max_line => {
                self.buf.drain(..=i);
                Some(LineEvent::TooLong)
            }
            Some(i) => {
                let mut line: Vec<u8> = self.buf.drain(..=i).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                Some(LineEvent::Line(line))
            }
            None if self.buf.len() > self.max_line => {
                // No line end within the limit: drop what we have and skip to the next LF.
                self.buf.clear();
                self.discarding = true;
                None
            }
            None => None,
        }
    }

    /// Bytes received but not yet consumed (for the DATA decoder and STARTTLS checks).
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    pub fn consume(&mut self, n: usize) {
        self.buf.drain(..n.min(self.buf.len()));
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty() && !self.discarding && !self.too_long_ended
    }

    /// Drops everything buffered (after STARTTLS: plaintext must not survive into TLS).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.discarding = false;
        self.too_long_ended = false;
    }

    /// Whether an over-long line is being skipped (the caller should keep reading).
    pub fn is_discarding(&self) -> bool {
        self.discarding
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_and_strips_endings() {
        let mut b = LineBuffer::new(100);
        b.extend(b"EHLO a\r\nNOOP\nQU");
        assert_eq!(b.next_line(), Some(LineEvent::Line(b"EHLO a".to_vec())));
        assert_eq!(b.next_line(), Some(LineEvent::Line(b"NOOP".to_vec())));
        assert_eq!(b.next_line(), None);
        b.extend(b"IT\r\n");
        assert_eq!(b.next_line(), Some(LineEvent::Line(b"QUIT".to_vec())));
        assert!(b.is_empty());
    }

    #[test]
    fn over_long_line_is_dropped_with_bounded_memory() {
        let mut b = LineBuffer::new(16);
        for _ in 0..1000 {
            b.extend(&[b'x'; 1000]);
            assert_eq!(b.next_line(), None);
            assert!(b.buffered().len() <= 1000 + 16);
        }
        b.extend(b"xx\r\nNOOP\r\n");
        assert_eq!(b.next_line(), Some(LineEvent::TooLong));
        assert_eq!(b.next_line(), Some(LineEvent::Line(b"NOOP".to_vec())));
    }

    #[test]
    fn long_line_arriving_whole() {
        let mut b = LineBuffer::new(8);
        b.extend(b"0123456789\r\nOK\r\n");
        assert_eq!(b.next_line(), Some(LineEvent::TooLong));
        assert_eq!(b.next_line(), Some(LineEvent::Line(b"OK".to_vec())));
    }
}
