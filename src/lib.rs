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

// ftpdlib is built on Linux interfaces with no portable stand-in: openat2(2) and the *at()
// calls of the jail, epoll and eventfd (the pool), setfsuid(2) (per-thread impersonation),
// sendfile(2) with an offset, signalfd, Linux socket options (IP_MTU, UDP_SEGMENT). Say so at once rather than in a hundred errors.
#[cfg(not(target_os = "linux"))]
compile_error!("ftpdlib runs on Linux only (openat2, epoll, setfsuid, sendfile)");

pub mod authorizers;
pub mod beneath;
/// The command line of the `ftpdlib` binary (and `ftpdlib users`): the binary's internals,
/// public only so `src/main.rs` can reach it; not part of the library's API.
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod cli;
pub mod error;
pub mod filesystems;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod handlers;
#[cfg(feature = "cli")]
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
#[cfg(feature = "tftp")]
pub mod tftp;

pub use error::{AuthenticationFailed, AuthorizerError, Error, FailureKind};
