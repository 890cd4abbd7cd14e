//! The error a reconciler returns.

use std::fmt;
use std::time::Duration;

/// A failed `apply` or `cleanup`: the host records the message as a Warning Event on
/// the object and retries, after [`Error::retry_after`] or with exponential backoff.
///
/// Any `std::error::Error` converts into it, so `?` works on the host imports, serde
/// and everything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
    retry_after: Option<Duration>,
}

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with this message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self {
            message: message.to_string(),
            retry_after: None,
        }
    }

    /// Asks the host to retry after `delay` instead of backing off.
    pub fn retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The requested retry delay, if any.
    pub fn retry_delay(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(error: E) -> Self {
        Self::msg(error)
    }
}
