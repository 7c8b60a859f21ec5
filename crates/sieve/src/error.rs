use std::fmt;

/// Where in a script: 1-based line and column (columns count bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// A script that cannot run: what is wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pos}: {message}")]
pub struct CompileError {
    pub pos: Pos,
    pub message: String,
}

impl CompileError {
    pub fn new(pos: Pos, message: impl Into<String>) -> CompileError {
        CompileError { pos, message: message.into() }
    }
}

/// Why a run ended early (the implicit keep then applies, RFC 5228 §2.10.6).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    #[error("the script used more than its budget of {0} steps")]
    Budget(u64),
    #[error("more than {0} redirects")]
    TooManyRedirects(usize),
    #[error("more than {0} actions")]
    TooManyActions(usize),
    #[error("include of `{0}`: {1}")]
    Include(String, String),
    #[error("includes nested deeper than {0}")]
    IncludeDepth(usize),
    #[error("{0}")]
    Conflict(String),
    #[error("variable `{0}` is not global in the including script")]
    NotGlobal(String),
}
