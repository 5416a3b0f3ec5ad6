//! The byte streams a session talks over: plain TCP, TLS (RFC 4217) and a control connection
//! back in plaintext after CCC. Control and data connections both use [`Stream`].

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd};

use super::tls_stream::{Cleared, TlsStream};

/// A connection, plain or (with FTPS) encrypted.
#[derive(Debug)]
pub(crate) enum Stream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS (AUTH TLS, implicit FTPS, PROT P data connections).
    Tls(Box<TlsStream>),
    /// A control connection after CCC (RFC 4217 §6).
    Cleared(Box<Cleared>),
}

impl Stream {
    /// The TCP socket underneath (for options, addresses and shutdown).
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Tcp(s) => s,
            Stream::Tls(t) => t.tcp(),
            Stream::Cleared(c) => c.tcp(),
        }
    }

    /// The socket when bytes may be sent with sendfile(2) (plain TCP only).
    pub(crate) fn sendfile_socket(&self) -> Option<&TcpStream> {
        match self {
            Stream::Tcp(s) => Some(s),
            Stream::Tls(_) | Stream::Cleared(_) => None,
        }
    }

    /// True when decrypted bytes are already buffered, so poll(2) on the socket would not
    /// show them.
    pub(crate) fn has_buffered_input(&self) -> bool {
        match self {
            Stream::Tcp(_) => false,
            Stream::Tls(t) => t.has_buffered_input(),
            Stream::Cleared(c) => c.has_buffered_input(),
        }
    }

    /// Ends the stream cleanly (TLS close_notify; TCP FIN).
    pub(crate) fn finish(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Tls(t) => t.finish(),
            Stream::Cleared(c) => c.tcp().shutdown(std::net::Shutdown::Write),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Tls(t) => t.read(buf),
            Stream::Cleared(c) => c.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Tls(t) => t.write(buf),
            Stream::Cleared(c) => c.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Tls(t) => t.flush(),
            Stream::Cleared(c) => c.flush(),
        }
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.tcp().as_fd()
    }
}
