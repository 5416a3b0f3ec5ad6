//! Error types, mirroring pyftpdlib's `AuthenticationFailed` and `AuthorizerError`, plus the
//! crate-wide [`Error`] returned by server setup.

use std::fmt;
use std::io;

/// A login was refused (pyftpdlib `AuthenticationFailed`). The message is sent to the client
/// after `530 `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticationFailed(pub String);

impl fmt::Display for AuthenticationFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AuthenticationFailed {}

/// An authorizer was misconfigured or asked something impossible (pyftpdlib `AuthorizerError`):
/// an unknown permission letter, a missing home directory, a duplicate user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizerError(pub String);

impl fmt::Display for AuthorizerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AuthorizerError {}

/// Errors from building or running a server.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error (bind, accept, socket options).
    Io(io::Error),
    /// The handler configuration is invalid (the message says which field).
    Config(String),
    /// An authorizer refused its configuration.
    Authorizer(AuthorizerError),
    /// TLS setup failed (certificate, key or rustls configuration).
    Tls(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::Config(m) => write!(f, "invalid configuration: {m}"),
            Error::Authorizer(e) => write!(f, "authorizer error: {e}"),
            Error::Tls(m) => write!(f, "TLS error: {m}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::Authorizer(e) => Some(e),
            Error::Config(_) | Error::Tls(_) => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<AuthorizerError> for Error {
    fn from(e: AuthorizerError) -> Self {
        Error::Authorizer(e)
    }
}
