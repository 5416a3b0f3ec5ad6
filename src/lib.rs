//! ftpdlib: a blocking, thread-per-connection FTP server library in the spirit of Python's
//! pyftpdlib — authorizers, a chroot-jailed virtual filesystem, a protocol handler with
//! callbacks and custom commands, FTPS, throttled transfers, several concurrency models —
//! plus a TFTP server framework in the spirit of fbtftp.
//!
//! # Quick start
//!
//! ```no_run
//! use std::sync::Arc;
//! use ftpdlib::authorizers::DummyAuthorizer;
//! use ftpdlib::handlers::FtpHandler;
//! use ftpdlib::servers::FtpServer;
//!
//! let mut authorizer = DummyAuthorizer::new();
//! authorizer.add_user("user", "12345", ".", "elradfmwMT").unwrap();
//! authorizer.add_anonymous(".", "elr").unwrap();
//! let handler = FtpHandler::new(Arc::new(authorizer));
//! let server = FtpServer::new("127.0.0.1:2121", handler).unwrap();
//! server.serve_forever().unwrap();
//! ```
//!
//! Every connection ends in [`handlers::Session::run`], served by one thread (or one forked
//! child) from its first byte to its last, so authorizers, filesystems and callbacks may
//! block without stalling other sessions.

#![warn(missing_docs)]

pub mod authorizers;
pub mod beneath;
pub mod cli;
pub mod error;
pub mod filesystems;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod handlers;
mod logging;
mod poll;
pub mod process;
#[cfg(test)]
mod properties;
pub mod proto;
pub mod ratelimit;
pub mod servers;
mod shm;
/// TFTP server framework in the spirit of fbtftp (RFC 1350, 2347–2349, 7440).
pub mod tftp;

pub use error::{AuthenticationFailed, AuthorizerError, Error, FailureKind};
