//! Sieve's grammar (RFC 5228 §8.2) as a generic tree: commands with their arguments, tests
//! and blocks, before any command is known. [`crate::compile`] gives the tree its meaning.

use crate::error::{CompileError, Pos};
use crate::lexer::{Token, TokenKind};

/// Blocks and test lists nested deeper than this are refused (no unbounded recursion).
pub const MAX_NESTING: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub name: String,
    pub pos: Pos,
    pub arguments: Vec<Argument>,
    pub tests: Vec<Test>,
    /// `{ ... }` after the arguments (`None`: ended by `;`).
    pub block: Option<Vec<Command>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Test {
    pub name: String,
    pub pos: Pos,
    pub arguments: Vec<Argument>,
    /// The tests of a test list (`allof (a, b)`) or the one test argument (`not a`).
    pub tests: Vec<Test>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Argument {
    Tag(String, Pos),
    Number(u64, Pos),
    /// A single string is a list of one; `strings.len() == 1 && !bracketed` tells them apart.
    Strings {
        strings: Vec<String>,
        bracketed: bool,
        pos: Pos,
    },
}

impl Argument {
    pub fn pos(&self) -> Pos {
        match self {
            Argument::Tag(_, pos) | Argument::Number(_, pos) | Argument::Strings { pos, .. } => *pos,
        }
    }
}

pub fn parse(tokens: &[Token]) -> Result<Vec<Command>, CompileError> {
    let mut parser = Parser { tokens, at: 0 };
    let commands = parser.commands(0)?;
    if let Some(t) = parser.peek() {
        return Err(CompileError::new(t.pos, "unexpected `}`"));
    }
    Ok(commands)
}

struct Parser<'a> {
    tokens: &'a [Token],
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn end_pos(&self) -> Pos {
        self.tokens.last().map(|t| t.pos).unwrap_or_default()
    }

    fn take(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    /// Commands up to a `}` (left for the caller) or the end.
    fn commands(&mut self, depth: usize) -> Result<Vec<Command>, CompileError> {
        let mut out = Vec::new();
        while let Some(token) = self.peek() {
            if token.kind == TokenKind::RightBrace {
                break;
            }
            out.push(self.command(depth)?);
        }
        Ok(out)
    }

    fn command(&mut self, depth: usize) -> Result<Command, CompileError> {
        let Some(token) = self.take() else { return Err(CompileError::new(self.end_pos(), "a command is missing")) };
        let TokenKind::Identifier(name) = token.kind else {
            return Err(CompileError::new(token.pos, "a command name was expected here"));
        };
        let name = name.to_ascii_lowercase();
        let arguments = self.arguments()?;
        let tests = self.tests(depth)?;
        let block = match self.take() {
            Some(Token { kind: TokenKind::Semicolon, .. }) => None,
            Some(Token { kind: TokenKind::LeftBrace, pos }) => {
                if depth + 1 >= MAX_NESTING {
                    return Err(CompileError::new(pos, format!("blocks nested deeper than {MAX_NESTING}")));
                }
                let block = self.commands(depth + 1)?;
                match self.take() {
                    Some(Token { kind: TokenKind::RightBrace, .. }) => Some(block),
                    _ => return Err(CompileError::new(pos, "block not closed (missing `}`)")),
                }
            }
            Some(other) => {
                return Err(CompileError::new(other.pos, format!("`;` expected after the command `{name}`")));
            }
            None => return Err(CompileError::new(token.pos, format!("`;` expected after the command `{name}`"))),
        };
        Ok(Command { name, pos: token.pos, arguments, tests, block })
    }

    fn arguments(&mut self) -> Result<Vec<Argument>, CompileError> {
        let mut out = Vec::new();
        while let Some(token) = self.peek().cloned() {
            match token.kind {
                TokenKind::Tag(tag) => {
                    self.at += 1;
                    out.push(Argument::Tag(tag, token.pos));
                }
                TokenKind::Number(n) => {
                    self.at += 1;
                    out.push(Argument::Number(n, token.pos));
                }
                TokenKind::String(s) => {
                    self.at += 1;
                    out.push(Argument::Strings { strings: vec![s], bracketed: false, pos: token.pos });
                }
                TokenKind::LeftBracket => {
                    self.at += 1;
                    out.push(Argument::Strings {
                        strings: self.string_list(token.pos)?,
                        bracketed: true,
                        pos: token.pos,
                    });
                }
                _ => break,
            }
        }
        Ok(out)
    }

    /// `[ "a", "b" ]` after its `[`.
    fn string_list(&mut self, open: Pos) -> Result<Vec<String>, CompileError> {
        let mut strings = Vec::new();
        loop {
            match self.take() {
                Some(Token { kind: TokenKind::String(s), .. }) => strings.push(s),
                Some(t) => return Err(CompileError::new(t.pos, "a string was expected in the list")),
                None => return Err(CompileError::new(open, "string list not closed (missing `]`)")),
            }
            match self.take() {
                Some(Token { kind: TokenKind::Comma, .. }) => {}
                Some(Token { kind: TokenKind::RightBracket, .. }) => return Ok(strings),
                Some(t) => return Err(CompileError::new(t.pos, "`,` or `]` expected in the string list")),
                None => return Err(CompileError::new(open, "string list not closed (missing `]`)")),
            }
        }
    }

    /// A test, a test list in parentheses, or nothing.
    fn tests(&mut self, depth: usize) -> Result<Vec<Test>, CompileError> {
        match self.peek().map(|t| (&t.kind, t.pos)) {
            Some((TokenKind::Identifier(_), _)) => Ok(vec![self.test(depth)?]),
            Some((TokenKind::LeftParen, pos)) => {
                self.at += 1;
                if depth + 1 >= MAX_NESTING {
                    return Err(CompileError::new(pos, format!("tests nested deeper than {MAX_NESTING}")));
                }
                let mut tests = Vec::new();
                loop {
                    tests.push(self.test(depth + 1)?);
                    match self.take() {
                        Some(Token { kind: TokenKind::Comma, .. }) => {}
                        Some(Token { kind: TokenKind::RightParen, .. }) => return Ok(tests),
                        Some(t) => return Err(CompileError::new(t.pos, "`,` or `)` expected in the test list")),
                        None => return Err(CompileError::new(pos, "test list not closed (missing `)`)")),
                    }
                }
            }
            _ => Ok(Vec::new()),
        }
    }

    fn test(&mut self, depth: usize) -> Result<Test, CompileError> {
        if depth + 1 >= MAX_NESTING {
            return Err(CompileError::new(
                self.peek().map(|t| t.pos).unwrap_or_default(),
                format!("tests nested deeper than {MAX_NESTING}"),
            ));
        }
        let Some(token) = self.take() else { return Err(CompileError::new(self.end_pos(), "a test is missing")) };
        let TokenKind::Identifier(name) = token.kind else {
            return Err(CompileError::new(token.pos, "a test was expected here"));
        };
        let arguments = self.arguments()?;
        let tests = self.tests(depth + 1)?;
        Ok(Test { name: name.to_ascii_lowercase(), pos: token.pos, arguments, tests })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lexer::tokenize;

    fn tree(s: &str) -> Result<Vec<Command>, CompileError> {
        parse(&tokenize(s)?)
    }

    #[test]
    fn nested_commands_and_tests() {
        let t = tree("if anyof (not exists \"x\", header :is [\"a\",\"b\"] \"c\") { fileinto \"F\"; } else { keep; }")
            .unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].name, "if");
        assert_eq!(t[0].tests[0].name, "anyof");
        assert_eq!(t[0].tests[0].tests.len(), 2);
        assert_eq!(t[0].tests[0].tests[0].tests[0].name, "exists");
        assert_eq!(t[0].block.as_ref().unwrap()[0].name, "fileinto");
        assert_eq!(t[1].name, "else");
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = tree("keep;\nstop").unwrap_err();
        assert_eq!(e.pos.line, 2, "{e}");
        assert!(tree("if true { keep;").is_err());
        assert!(tree("keep; }").is_err());
        assert!(tree("header [\"a\" \"b\"];").is_err());
        assert!(tree("if allof (true, ) { }").is_err());
        let deep = format!("{}{}", "if true {".repeat(100), "}".repeat(100));
        assert!(tree(&deep).unwrap_err().message.contains("nested"));
        let deep = format!("if {}true{} {{}}", "not ".repeat(200), "");
        assert!(tree(&deep).unwrap_err().message.contains("nested"));
    }
}
