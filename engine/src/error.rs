//! The daemon-wide error and the one place where errors become HTTP status codes.

use crate::config::ConfigError;
use crate::db::DbError;
use crate::filter::FilterError;

/// What kind of failure an error is, which decides its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The client sent something invalid (400).
    InvalidInput,
    /// The client is not allowed to do this (403).
    Forbidden,
    /// The object does not exist (404).
    NotFound,
    /// The object exists already, or is busy (409).
    Conflict,
    /// `If-Match` does not match the current ETag (412).
    PreconditionFailed,
    /// The request body is larger than allowed (413).
    TooLarge,
    /// The endpoint exists but not with this method (501).
    NotImplemented,
    /// A driver or subsystem is not operational on this host (503).
    NotOperational,
    /// A bug or a host failure (500).
    Internal,
}

impl ErrorKind {
    /// The HTTP status code for this kind.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::InvalidInput => 400,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::PreconditionFailed => 412,
            ErrorKind::TooLarge => 413,
            ErrorKind::NotImplemented => 501,
            ErrorKind::NotOperational => 503,
            ErrorKind::Internal => 500,
        }
    }
}

/// Every error the API can return.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("ETag doesn't match: {0}")]
    PreconditionFailed(String),
    #[error("Request body too large (limit {0} bytes)")]
    TooLarge(usize),
    #[error("{0}")]
    NotOperational(String),
    #[error("not implemented")]
    NotImplemented,
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error("Database: {0}")]
    Db(#[from] DbError),
    #[error("{0}")]
    Internal(String),
    /// A denial with structured details (plugins); `metadata` goes into the error envelope.
    #[error("{message}")]
    Detailed { kind: ErrorKind, message: String, metadata: serde_json::Value },
}

impl Error {
    /// The kind, which decides the HTTP status.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::BadRequest(_) | Error::Config(_) | Error::Filter(_) => ErrorKind::InvalidInput,
            Error::Forbidden(_) => ErrorKind::Forbidden,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::PreconditionFailed(_) => ErrorKind::PreconditionFailed,
            Error::TooLarge(_) => ErrorKind::TooLarge,
            Error::NotOperational(_) => ErrorKind::NotOperational,
            Error::NotImplemented | Error::Unsupported(_) => ErrorKind::NotImplemented,
            Error::Db(_) | Error::Internal(_) => ErrorKind::Internal,
            Error::Detailed { kind, .. } => *kind,
        }
    }

    /// Extra metadata for the error envelope, if any.
    pub fn metadata(&self) -> serde_json::Value {
        match self {
            Error::Detailed { metadata, .. } => metadata.clone(),
            _ => serde_json::Value::Null,
        }
    }

    /// Shorthand for a 400.
    pub fn bad(msg: impl Into<String>) -> Self {
        Error::BadRequest(msg.into())
    }

    /// Shorthand for a 404.
    pub fn not_found(msg: impl Into<String>) -> Self {
        Error::NotFound(msg.into())
    }

    /// Shorthand for a 409.
    pub fn conflict(msg: impl Into<String>) -> Self {
        Error::Conflict(msg.into())
    }

    /// Shorthand for a 500.
    pub fn internal(msg: impl Into<String>) -> Self {
        Error::Internal(msg.into())
    }
}

/// Result with the daemon error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_mistakes_are_4xx() {
        assert_eq!(Error::bad("x").kind().status(), 400);
        assert_eq!(Error::not_found("x").kind().status(), 404);
        assert_eq!(Error::conflict("x").kind().status(), 409);
        assert_eq!(Error::PreconditionFailed("x".into()).kind().status(), 412);
        assert_eq!(Error::TooLarge(1).kind().status(), 413);
        assert_eq!(Error::from(ConfigError::UnknownKey("k".into())).kind().status(), 400);
        assert_eq!(Error::internal("x").kind().status(), 500);
    }
}
