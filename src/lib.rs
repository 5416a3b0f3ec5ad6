//! ftpdlib: a blocking, thread-per-connection FTP server library for Linux in the spirit of
//! Python's pyftpdlib — authorizers, a chroot-jailed virtual filesystem, a protocol handler
//! with callbacks and custom commands, FTPS, throttled transfers, several concurrency models
//! — plus a TFTP server framework in the spirit of fbtftp.
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
//!
//! # Logging
//!
//! The library logs through the [`log`](https://docs.rs/log) facade (one line per session
//! event, pyftpdlib's `ip:port-[user]` prefix, passwords never) and prints nothing until the
//! program installs a logger. With `env_logger`:
//!
//! ```no_run
//! env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
//! ```
//!
//! # What is public
//!
//! | module | what a program uses |
//! |---|---|
//! | [`authorizers`] | the [`Authorizer`](authorizers::Authorizer) trait, permission letters ([`Perm`](authorizers::Perm), [`PermSet`](authorizers::PermSet)), [`DummyAuthorizer`](authorizers::DummyAuthorizer) (virtual users), `UnixAuthorizer` (system accounts), `sql` (users in SQLite or PostgreSQL) |
//! | [`filesystems`] | the [`Filesystem`](filesystems::Filesystem) trait, [`OsFilesystem`](filesystems::OsFilesystem) (the disk beneath a root), [`AbstractedFs`](filesystems::AbstractedFs) (the working directory around any filesystem) |
//! | [`handlers`] | [`FtpHandler`](handlers::FtpHandler) (the configuration, pyftpdlib's names and defaults), the [`Callbacks`](handlers::Callbacks) trait, custom commands ([`Command`](handlers::Command)), `TlsConfig` (FTPS), [`Session`](handlers::Session) (one connection, for inetd-style entry points) |
//! | [`servers`] | [`FtpServer`](servers::FtpServer) with its concurrency models ([`Executor`](servers::Executor)), [`ServerHandle`](servers::ServerHandle), inetd and systemd entry points ([`servers::inetd`]) |
//! | [`beneath`] | resolution beneath a root directory descriptor (the jail, openat2), for filesystems of your own over real files |
//! | [`error`] | [`Error`], [`AuthenticationFailed`], [`AuthorizerError`] |
//! | `tftp` | the TFTP framework: `TftpServer`, the `TftpHandler` trait, `ResponseData` |
//!
//! The extension points each carry a compiled example: [`Authorizer`](authorizers::Authorizer)
//! (a database-backed authorizer), [`Filesystem`](filesystems::Filesystem) (generated
//! content), [`Callbacks`](handlers::Callbacks) (an audit trail),
//! [`Command`](handlers::Command) (a `SITE` command) and, for TFTP, `tftp::TftpHandler`
//! (files generated per machine).
//!
//! # pyftpdlib's names
//!
//! | pyftpdlib | ftpdlib |
//! |---|---|
//! | `DummyAuthorizer`, `UnixAuthorizer`, `AuthenticationFailed`, `AuthorizerError` | `authorizers::{DummyAuthorizer, UnixAuthorizer}`, trait `authorizers::Authorizer`, `ftpdlib::{AuthenticationFailed, AuthorizerError}` |
//! | `FTPHandler` attributes (`banner`, `timeout`, `passive_ports`, `masquerade_address`, …) | `handlers::FtpHandler` fields, same names and defaults |
//! | `FTPHandler.on_connect`, `on_login`, `on_file_received`, … | trait `handlers::Callbacks` (one value per connection) |
//! | `proto_cmds` (custom commands such as `SITE USAGE`) | `handlers::Command`, added with `FtpHandler::add_command` |
//! | `TLS_FTPHandler` | `FtpHandler.tls: Option<TlsConfig>` |
//! | `ThrottledDTPHandler.read_limit` / `write_limit` | `FtpHandler.read_limit` / `write_limit` (and per user, per server) |
//! | `AbstractedFS` | `filesystems::AbstractedFs` around a `filesystems::Filesystem` |
//! | `FTPServer`, `ThreadedFTPServer`, `MultiprocessFTPServer` | `servers::FtpServer` with `Executor::{Pool, Thread, Fork, PreFork}` |
//! | `serve_forever`, `close`, `close_all`, `max_cons`, `max_cons_per_ip` | the same names on `FtpServer` / `ServerHandle` |
//! | `demo/md5_ftpd.py` | `demo/hashed_ftpd.rs`, with argon2id instead of MD5 |
//!
//! Permissions are pyftpdlib's letters: read `e` (CWD), `l` (LIST, NLST, STAT, MLSx, SIZE,
//! MDTM), `r` (RETR); write `a` (APPE), `d` (DELE, RMD), `f` (RNFR/RNTO), `m` (MKD), `w`
//! (STOR, STOU), `M` (SITE CHMOD), `T` (MFMT). A `Filesystem` receives virtual paths only
//! (absolute, normalized, `/` is the session's root), never a host path, so a custom one —
//! content made on the fly, a database — cannot weaken the jail.
//!
//! # Cargo features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `tls` | yes | FTPS: `handlers::TlsConfig`, AUTH/PBSZ/PROT/CCC (rustls with ring) |
//! | `tftp` | yes | the `tftp` module |
//! | `unix-users` | yes | `authorizers::UnixAuthorizer` and `crypt`: system accounts, links libcrypt |
//! | `sqlite` | yes | `authorizers::sql` with SQLite compiled in |
//! | `postgres` | no | `authorizers::sql` over PostgreSQL |
//! | `metrics` | yes | the Prometheus endpoint (`servers::FtpServer::serve_metrics`, over tiny_http) |
//! | `cli` | yes | the `ftpdlib` and `tftpd` binaries (getopts, env_logger) |
//!
//! The defaults build everything the binaries need. A program embedding the library can
//! start from `default-features = false`: the FTP server alone, with no C code and no system
//! library beyond what std links.
//!
//! # Platform
//!
//! Linux only (openat2, epoll, setfsuid, sendfile with an offset, signalfd): other targets
//! stop at a `compile_error!`. The library and binaries build with Rust 1.85 or later (the
//! `rust-version` in Cargo.toml); the tests need 1.88, as their FTP client suppaftp does.

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
#[cfg(feature = "metrics")]
mod exposition;
pub mod filesystems;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod handlers;
#[cfg(feature = "cli")]
mod logging;
mod poll;
pub mod process;
mod properties;
pub(crate) mod proto;
pub mod proxy_protocol;
pub(crate) mod ratelimit;
pub mod servers;
mod shm;
/// TFTP server framework in the spirit of fbtftp (RFC 1350, 2347–2349, 7440).
#[cfg(feature = "tftp")]
pub mod tftp;

pub use error::{AuthenticationFailed, AuthorizerError, Error, FailureKind};

// The README's Rust examples compile as doctests, so they keep matching the API. One of them
// is the TFTP framework's, so they are compiled when the `tftp` feature is on (the default).
#[cfg(all(doctest, feature = "tftp"))]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;
