//! Error types, mirroring pyftpdlib's `AuthenticationFailed` and `AuthorizerError`, plus the
//! crate-wide [`Error`] returned by server setup.

use std::fmt;
use std::io;

/// A login was refused (pyftpdlib `AuthenticationFailed`). The message is sent to the client
/// after `530 `, or after `421 ` when the refusal is [`Temporary`](FailureKind::Temporary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticationFailed(pub String, pub FailureKind);

/// Why a login was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailureKind {
    /// The credentials were wrong or the account may not log in: `530`.
    #[default]
    Refused,
    /// The authorizer could not decide (its user database is down or overloaded): `421`,
    /// the connection is closed and the attempt is not counted as a wrong password.
    Temporary,
}

impl AuthenticationFailed {
    /// The message of a temporary refusal (RFC 959's 421 text).
    pub const UNAVAILABLE: &'static str = "Service not available, try later.";

    /// A refusal for wrong credentials (`530 msg`).
    pub fn new(msg: impl Into<String>) -> Self {
        AuthenticationFailed(msg.into(), FailureKind::Refused)
    }

    /// A temporary refusal: the authorizer could not check the credentials
    /// (`421 Service not available, try later.`).
    pub fn unavailable() -> Self {
        AuthenticationFailed(Self::UNAVAILABLE.into(), FailureKind::Temporary)
    }

    /// True for a [`FailureKind::Temporary`] refusal.
    pub fn is_temporary(&self) -> bool {
        self.1 == FailureKind::Temporary
    }
}

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

impl AuthorizerError {
    /// An error with this message (`AuthorizerError::new("no such user")`).
    pub fn new(msg: impl Into<String>) -> Self {
        AuthorizerError(msg.into())
    }
}

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
