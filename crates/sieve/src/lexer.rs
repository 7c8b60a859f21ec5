//! Sieve's lexical level (RFC 5228 §2.2-2.4, §8.1): identifiers, tags, numbers with
//! quantifiers, quoted and multi-line strings, punctuation; comments and white space skipped.
//! Every token carries the line and column where it starts, for error messages.

use crate::error::{CompileError, Pos};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKind {
    Identifier(String),
    /// `:name` (without the colon), lower-cased: tags are case-insensitive.
    Tag(String),
    Number(u64),
    String(String),
    LeftBracket,
    RightBracket,
    LeftParen,
    RightParen,
    LeftBrace,
    RightBrace,
    Comma,
    Semicolon,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    pub pos: Pos,
}

/// Splits `script` into tokens.
pub fn tokenize(script: &str) -> Result<Vec<Token>, CompileError> {
    let mut lexer = Lexer { text: script.as_bytes(), at: 0, line: 1, line_start: 0 };
    let mut out = Vec::new();
    while let Some(token) = lexer.next()? {
        out.push(token);
    }
    Ok(out)
}

struct Lexer<'a> {
    text: &'a [u8],
    at: usize,
    line: u32,
    line_start: usize,
}

impl Lexer<'_> {
    fn pos(&self) -> Pos {
        Pos { line: self.line, column: (self.at - self.line_start + 1) as u32 }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    /// Moves past one byte, counting lines at LF (CRLF and bare LF both end a line).
    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        if b == b'\n' {
            self.line += 1;
            self.line_start = self.at;
        }
        Some(b)
    }

    fn error(&self, pos: Pos, message: impl Into<String>) -> CompileError {
        CompileError { pos, message: message.into() }
    }

    fn skip_blank(&mut self) -> Result<(), CompileError> {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\r' | b'\n') => {
                    self.bump();
                }
                Some(b'#') => {
                    while let Some(b) = self.bump() {
                        if b == b'\n' {
                            break;
                        }
                    }
                }
                Some(b'/') if self.text.get(self.at + 1) == Some(&b'*') => {
                    let start = self.pos();
                    self.bump();
                    self.bump();
                    loop {
                        match self.bump() {
                            Some(b'*') if self.peek() == Some(b'/') => {
                                self.bump();
                                break;
                            }
                            Some(_) => {}
                            None => return Err(self.error(start, "comment not closed (missing `*/`)")),
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn next(&mut self) -> Result<Option<Token>, CompileError> {
        self.skip_blank()?;
        let pos = self.pos();
        let Some(b) = self.peek() else { return Ok(None) };
        let kind = match b {
            b'[' | b']' | b'(' | b')' | b'{' | b'}' | b',' | b';' => {
                self.bump();
                match b {
                    b'[' => TokenKind::LeftBracket,
                    b']' => TokenKind::RightBracket,
                    b'(' => TokenKind::LeftParen,
                    b')' => TokenKind::RightParen,
                    b'{' => TokenKind::LeftBrace,
                    b'}' => TokenKind::RightBrace,
                    b',' => TokenKind::Comma,
                    _ => TokenKind::Semicolon,
                }
            }
            b'"' => TokenKind::String(self.quoted(pos)?),
            b':' => {
                self.bump();
                match self.peek() {
                    Some(c) if c.is_ascii_alphabetic() || c == b'_' => {}
                    _ => return Err(self.error(pos, "`:` must start a tag such as `:is`")),
                }
                TokenKind::Tag(self.word().to_ascii_lowercase())
            }
            b'0'..=b'9' => TokenKind::Number(self.number(pos)?),
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let word = self.word();
                if word.eq_ignore_ascii_case("text") && self.peek() == Some(b':') {
                    self.bump();
                    TokenKind::String(self.multiline(pos)?)
                } else {
                    TokenKind::Identifier(word)
                }
            }
            other => {
                let shown = if other.is_ascii_graphic() {
                    format!("`{}`", other as char)
                } else {
                    format!("byte 0x{other:02x}")
                };
                return Err(self.error(pos, format!("unexpected {shown}")));
            }
        };
        Ok(Some(Token { kind, pos }))
    }

    fn word(&mut self) -> String {
        let start = self.at;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == b'_') {
            self.bump();
        }
        String::from_utf8_lossy(&self.text[start..self.at]).into_owned()
    }

    /// `1*DIGIT [QUANTIFIER]` (RFC 5228 §2.4.1: K, M, G are powers of 1024).
    fn number(&mut self, pos: Pos) -> Result<u64, CompileError> {
        let mut value: u64 = 0;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            self.bump();
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d - b'0')))
                .ok_or_else(|| self.error(pos, "number too large"))?;
        }
        let scale: u64 = match self.peek() {
            Some(b'k' | b'K') => 1 << 10,
            Some(b'm' | b'M') => 1 << 20,
            Some(b'g' | b'G') => 1 << 30,
            _ => 1,
        };
        if scale > 1 {
            self.bump();
        }
        if matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == b'_') {
            return Err(self.error(pos, "a number is followed directly by letters"));
        }
        value.checked_mul(scale).ok_or_else(|| self.error(pos, "number too large"))
    }

    /// A quoted string: `\"` and `\\` stand for themselves; a backslash before any other
    /// character is dropped (RFC 5228 §2.4.2). Line breaks inside are kept as CRLF.
    fn quoted(&mut self, pos: Pos) -> Result<String, CompileError> {
        self.bump();
        let mut out = Vec::new();
        loop {
            match self.bump() {
                None => return Err(self.error(pos, "string not closed (missing `\"`)")),
                Some(b'"') => break,
                Some(b'\\') => match self.bump() {
                    None => return Err(self.error(pos, "string not closed (missing `\"`)")),
                    Some(c) => out.push(c),
                },
                Some(b'\r') if self.peek() == Some(b'\n') => {}
                Some(b'\n') => out.extend_from_slice(b"\r\n"),
                Some(c) => out.push(c),
            }
        }
        self.utf8(out, pos)
    }

    /// `text:` (already read) up to a line holding a lone `.`; a line's leading `..` stands
    /// for `.` (RFC 5228 §2.4.2). Lines end with CRLF in the value.
    fn multiline(&mut self, pos: Pos) -> Result<String, CompileError> {
        // Rest of the `text:` line: blanks and an optional `#` comment.
        loop {
            match self.bump() {
                Some(b' ' | b'\t' | b'\r') => {}
                Some(b'\n') => break,
                Some(b'#') => {
                    while let Some(b) = self.bump() {
                        if b == b'\n' {
                            break;
                        }
                    }
                    break;
                }
                _ => return Err(self.error(pos, "`text:` must be followed by the end of its line")),
            }
        }
        let mut out = Vec::new();
        loop {
            if self.at >= self.text.len() {
                return Err(self.error(pos, "multi-line string not closed (missing a line with a lone `.`)"));
            }
            let start = self.at;
            while let Some(b) = self.bump() {
                if b == b'\n' {
                    break;
                }
            }
            let mut line = &self.text[start..self.at];
            line = line.strip_suffix(b"\n").unwrap_or(line);
            line = line.strip_suffix(b"\r").unwrap_or(line);
            if line == b"." {
                break;
            }
            let line = if line.starts_with(b"..") { &line[1..] } else { line };
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
        self.utf8(out, pos)
    }

    fn utf8(&self, bytes: Vec<u8>, pos: Pos) -> Result<String, CompileError> {
        String::from_utf8(bytes).map_err(|_| self.error(pos, "string is not valid UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &str) -> Vec<TokenKind> {
        tokenize(s).unwrap().into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn tokens_of_a_small_script() {
        use TokenKind::*;
        assert_eq!(
            kinds("if size :OVER 100K { discard; } # done\r\n/* x */ keep;"),
            vec![
                Identifier("if".into()),
                Identifier("size".into()),
                Tag("over".into()),
                Number(102_400),
                LeftBrace,
                Identifier("discard".into()),
                Semicolon,
                RightBrace,
                Identifier("keep".into()),
                Semicolon
            ]
        );
    }

    #[test]
    fn strings_quoted_and_multiline() {
        assert_eq!(kinds(r#""a\"b\\c\d""#), vec![TokenKind::String(r#"a"b\cd"#.into())]);
        assert_eq!(
            kinds("text: # note\r\nline 1\r\n..dot\r\n.\r\n"),
            vec![TokenKind::String("line 1\r\n.dot\r\n".into())]
        );
        assert_eq!(kinds("text:\nbare lf\n.\n"), vec![TokenKind::String("bare lf\r\n".into())]);
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = tokenize("keep;\n  \"open").unwrap_err();
        assert_eq!((e.pos.line, e.pos.column), (2, 3));
        let e = tokenize("keep;\n/* open").unwrap_err();
        assert_eq!(e.pos.line, 2);
        assert!(tokenize("text: x\n.\n").is_err());
        assert!(tokenize("99999999999999999999").is_err());
        assert!(tokenize("17179869184G").is_err(), "overflow after the quantifier");
        assert!(tokenize("12abc").is_err());
        assert!(tokenize("@").is_err());
    }
}
