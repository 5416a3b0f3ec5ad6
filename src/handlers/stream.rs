//! The byte streams a session talks over: plain TCP today, with room for a TLS variant
//! (RFC 4217). Control and data connections both use [`Stream`].

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd};

/// A connection, plain or (with FTPS) encrypted.
#[derive(Debug)]
pub(crate) enum Stream {
    /// Plain TCP.
    Tcp(TcpStream),
}

impl Stream {
    /// The TCP socket underneath (for options, addresses and shutdown).
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Tcp(s) => s,
        }
    }

    /// The socket when bytes may be sent with sendfile(2) (plain TCP only).
    pub(crate) fn sendfile_socket(&self) -> Option<&TcpStream> {
        match self {
            Stream::Tcp(s) => Some(s),
        }
    }

    /// True when decrypted bytes are already buffered, so poll(2) on the socket would not
    /// show them.
    pub(crate) fn has_buffered_input(&self) -> bool {
        false
    }

    /// Ends the stream cleanly (TLS close_notify; TCP FIN).
    pub(crate) fn finish(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
        }
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.tcp().as_fd()
    }
}
