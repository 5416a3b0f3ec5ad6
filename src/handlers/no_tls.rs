//! FTPS in a build without the `tls` cargo feature: the same names as `tls.rs` and
//! `dtp/tls_stream.rs`, holding a value of an empty type, so none can ever be made.
//! [`FtpHandler::tls`](super::FtpHandler::tls) then stays `None`, AUTH/PBSZ/PROT/CCC are
//! unknown commands (500), and the session code that would run a handshake is unreachable
//! — and compiled away — without a `cfg` of its own.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::PollFlags;

use crate::error::Error;

/// A type with no values: whatever holds one cannot exist.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Never {}

/// FTPS settings (pyftpdlib `TLS_FTPHandler`'s attributes). This build has no `tls` cargo
/// feature: there is no way to make one, and [`FtpHandler::tls`](super::FtpHandler::tls)
/// stays `None`. Enable the feature for `TlsConfig::from_pem_files` and
/// `TlsConfig::from_server_config`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TlsConfig {
    /// The PEM certificate file.
    pub certfile: Option<PathBuf>,
    /// The PEM private-key file.
    pub keyfile: Option<PathBuf>,
    /// Refuse USER/PASS before `AUTH TLS`.
    pub tls_control_required: bool,
    /// Refuse transfers without `PROT P`.
    pub tls_data_required: bool,
    /// PROT P data connections must resume the control connection's TLS session.
    pub require_session_reuse: bool,
    /// How long the TLS handshake of a `PROT P` data connection may take.
    pub data_handshake_timeout: Duration,
    never: Never,
}

impl TlsConfig {
    pub(crate) fn per_session(&self) -> SessionConfigs {
        match self.never {}
    }

    /// Reads the certificate files again (never called: no value exists).
    ///
    /// # Errors
    /// None can happen.
    pub fn reload(&self) -> Result<bool, Error> {
        match self.never {}
    }
}

/// The sessions a data connection may resume (none without TLS).
#[derive(Debug)]
pub(crate) struct DataTickets(Never);

impl DataTickets {
    pub(crate) fn keep(&self) {
        match self.0 {}
    }
}

/// The rustls configurations of one control connection (none without TLS). Its fields point
/// at nothing rather than being nothing: a value of a type the compiler sees as empty would
/// make the code after `per_session()` unreachable in its eyes.
#[derive(Clone)]
pub(crate) struct SessionConfigs {
    pub(crate) ctrl: Arc<Never>,
}

impl SessionConfigs {
    pub(crate) fn data_connection(&self) -> (Arc<Never>, DataTickets) {
        match *self.ctrl {}
    }
}

/// The TLS byte stream and the plaintext control stream after CCC, as `dtp/tls_stream.rs`
/// names them.
pub(crate) mod stream {
    use super::*;

    /// A data connection's handshake in progress (none without TLS).
    #[derive(Debug)]
    pub(crate) struct Handshake {
        never: Never,
    }

    impl Handshake {
        pub(crate) fn start(
            _sock: TcpStream,
            config: Arc<Never>,
            _deadline: Option<Instant>,
        ) -> io::Result<Handshake> {
            match *config {}
        }
        pub(crate) fn deadline(&self) -> Option<Instant> {
            match self.never {}
        }
        pub(crate) fn tcp(&self) -> &TcpStream {
            match self.never {}
        }
        pub(crate) fn interest(&self) -> PollFlags {
            match self.never {}
        }
        pub(crate) fn step(&mut self) -> io::Result<bool> {
            match self.never {}
        }
        pub(crate) fn finish(self) -> TlsStream {
            match self.never {}
        }
    }

    /// A TLS connection over a TCP socket (none without TLS).
    #[derive(Debug)]
    pub(crate) struct TlsStream {
        pub(crate) close_on_drop: bool,
        never: Never,
    }

    impl TlsStream {
        pub(crate) fn accept(
            _sock: TcpStream,
            config: Arc<Never>,
            _deadline: Option<Instant>,
        ) -> io::Result<TlsStream> {
            match *config {}
        }
        pub(crate) fn describe(&self) -> String {
            match self.never {}
        }
        pub(crate) fn tcp(&self) -> &TcpStream {
            match self.never {}
        }
        pub(crate) fn resumed(&self) -> bool {
            match self.never {}
        }
        pub(crate) fn info(&self) -> crate::handlers::stats::TlsInfo {
            match self.never {}
        }
        pub(crate) fn hold_output(&mut self) {
            match self.never {}
        }
        pub(crate) fn has_buffered_input(&self) -> bool {
            match self.never {}
        }
        pub(crate) fn finish(&mut self) -> io::Result<()> {
            match self.never {}
        }
        pub(crate) fn into_cleared(self) -> io::Result<Cleared> {
            match self.never {}
        }
    }

    impl Read for TlsStream {
        fn read(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
            match self.never {}
        }
    }

    impl Write for TlsStream {
        fn write(&mut self, _buf: &[u8]) -> io::Result<usize> {
            match self.never {}
        }
        fn flush(&mut self) -> io::Result<()> {
            match self.never {}
        }
    }

    /// The control connection after CCC (none without TLS).
    #[derive(Debug)]
    pub(crate) struct Cleared {
        never: Never,
    }

    impl Cleared {
        pub(crate) fn tcp(&self) -> &TcpStream {
            match self.never {}
        }
        pub(crate) fn has_buffered_input(&self) -> bool {
            match self.never {}
        }
    }

    impl Read for Cleared {
        fn read(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
            match self.never {}
        }
    }

    impl Write for Cleared {
        fn write(&mut self, _buf: &[u8]) -> io::Result<usize> {
            match self.never {}
        }
        fn flush(&mut self) -> io::Result<()> {
            match self.never {}
        }
    }
}
