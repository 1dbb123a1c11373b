//! One error type for the whole library. Each error has a kind (which the C surface maps to a
//! status code) and a message written for the person holding the file: it names the file and
//! the part of it that is wrong.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file could not be opened or read.
    Io,
    /// The file is not a well-formed model (truncated, inconsistent, hostile).
    Format,
    /// Well-formed, but uses something tmac does not implement (a tensor type, an architecture).
    Unsupported,
    /// A caller passed a bad argument (invalid UTF-8, out-of-range value).
    InvalidArg,
    /// The context window is full.
    ContextFull,
    /// A limit set by the caller (memory budget) would be exceeded.
    Limit,
    /// The call is not valid in the session's state (generating before any prompt).
    State,
    /// The caller's abort callback stopped the work; nothing it started was kept.
    Aborted,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub msg: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(kind: ErrorKind, msg: impl Into<String>) -> Error {
        Error {
            kind,
            msg: msg.into(),
        }
    }
    pub fn format(msg: impl Into<String>) -> Error {
        Error::new(ErrorKind::Format, msg)
    }
    pub fn unsupported(msg: impl Into<String>) -> Error {
        Error::new(ErrorKind::Unsupported, msg)
    }
    pub fn invalid(msg: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidArg, msg)
    }
    /// Prefix the message with where it happened, e.g. the file path.
    pub fn context(self, what: impl fmt::Display) -> Error {
        Error {
            kind: self.kind,
            msg: format!("{what}: {}", self.msg),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::new(ErrorKind::Io, e.to_string())
    }
}

/// Shorthand for returning a format error: `bail!("bad {}", x)`.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => { return Err($crate::error::Error::format(format!($($arg)*))) };
}
