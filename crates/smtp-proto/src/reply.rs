//! SMTP replies (RFC 5321 §4.2) with enhanced status codes (RFC 2034, RFC 3463).

/// `class.subject.detail`, e.g. `5.1.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enhanced(pub u8, pub u16, pub u16);

impl std::fmt::Display for Enhanced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: Option<Enhanced>,
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply with an enhanced status code.
    pub fn new(code: u16, enhanced: (u8, u16, u16), text: impl Into<String>) -> Reply {
        Reply { code, enhanced: Some(Enhanced(enhanced.0, enhanced.1, enhanced.2)), lines: vec![text.into()] }
    }

    /// A reply without enhanced status code (greeting, EHLO response: RFC 2034 §3).
    pub fn plain(code: u16, lines: Vec<String>) -> Reply {
        Reply { code, enhanced: None, lines }
    }

    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// The first line of text, for logs and metrics.
    pub fn text(&self) -> &str {
        self.lines.first().map(String::as_str).unwrap_or("")
    }

    /// Wire form: `250-first` ... `250 last`, each line CRLF-terminated. Line text is cleaned of
    /// CR/LF so a value that came from the network cannot inject a reply line.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.write_to(&mut out);
        out
    }

    pub fn write_to(&self, out: &mut Vec<u8>) {
        let n = self.lines.len().max(1);
        for i in 0..n {
            let text = self.lines.get(i).map(String::as_str).unwrap_or("");
            let sep = if i + 1 == n { ' ' } else { '-' };
            out.extend_from_slice(format!("{}{}", self.code, sep).as_bytes());
            if let Some(e) = self.enhanced {
                out.extend_from_slice(e.to_string().as_bytes());
                if !text.is_empty() {
                    out.push(b' ');
                }
            }
            out.extend(text.bytes().map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }));
            out.extend_from_slice(b"\r\n");
        }
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.enhanced {
            Some(e) => write!(f, "{} {} {}", self.code, e, self.text()),
            None => write!(f, "{} {}", self.code, self.text()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format() {
        assert_eq!(Reply::new(250, (2, 1, 0), "Ok").to_bytes(), b"250 2.1.0 Ok\r\n");
        let ehlo = Reply::plain(250, vec!["mx.example".into(), "PIPELINING".into(), "SIZE 10".into()]);
        assert_eq!(ehlo.to_bytes(), b"250-mx.example\r\n250-PIPELINING\r\n250 SIZE 10\r\n");
        let injected = Reply::new(550, (5, 1, 1), "no such user x\r\n250 ok");
        assert_eq!(injected.to_bytes(), b"550 5.1.1 no such user x  250 ok\r\n");
        assert_eq!(Reply::plain(354, vec![]).to_bytes(), b"354 \r\n");
    }
}
