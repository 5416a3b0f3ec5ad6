//! A data connection's byte stream: plain TCP, or TLS under `PROT P` (RFC 4217 §9), plus the
//! socket options every data connection gets and the accept that keeps foreign hosts out
//! (behind a balancer, by the client its PROXY protocol header names).

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Instant;

use super::tls_stream::TlsStream;
use crate::proto;
use crate::proxy_protocol::{read_header, Header, Parsed, ProxyProtocol};

/// A data connection, plain or (with FTPS) encrypted.
#[derive(Debug)]
pub(crate) enum Stream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS (PROT P).
    Tls(Box<TlsStream>),
}

impl Stream {
    /// The TCP socket underneath (for options and shutdown).
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Tcp(s) => s,
            Stream::Tls(t) => t.tcp(),
        }
    }

    /// The socket when bytes may be sent with sendfile(2) (plain TCP only).
    pub(crate) fn sendfile_socket(&self) -> Option<&TcpStream> {
        match self {
            Stream::Tcp(s) => Some(s),
            Stream::Tls(_) => None,
        }
    }

    /// True when decrypted bytes are already buffered, so poll(2) on the socket would not
    /// show them.
    pub(crate) fn has_buffered_input(&self) -> bool {
        match self {
            Stream::Tcp(_) => false,
            Stream::Tls(t) => t.has_buffered_input(),
        }
    }

    /// Writes nothing more until the stream ends (see [`TlsStream::hold_output`]).
    pub(crate) fn hold_output(&mut self) {
        if let Stream::Tls(t) = self {
            t.hold_output();
        }
    }

    /// Ends the stream cleanly (TLS close_notify; TCP FIN).
    pub(crate) fn finish(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Tls(t) => t.finish(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Tls(t) => t.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Tls(t) => t.flush(),
        }
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.tcp().as_fd()
    }
}

/// Send buffer of a data connection, in bytes (Linux doubles it).
///
/// Left to autotuning, every download socket grows its send buffer (and the client its
/// receive buffer) toward `tcp_wmem`/`tcp_rmem` maxima of several MiB. A thousand concurrent
/// transfers then exceed `tcp_mem`: the kernel enters memory pressure, drops segments even on
/// loopback and recovers only through retransmission timeouts, stalling transfers for tens of
/// seconds. A fixed buffer bounds each transfer's bytes in flight; 128 KiB (256 KiB once
/// doubled) still reaches the loopback sendfile limit with one client.
///
/// The receive buffer is left to autotuning: it grows only while the server keeps reading
/// as fast as the client sends (it tracks what the reader consumed per round trip), so an
/// upload's queue stays short, and a larger window lets the client send in larger pieces.
/// Capped at the same 256 KiB, 300 concurrent uploads took twice the server CPU per byte:
/// every small window opened by a read sent the client's queued data in the reader's
/// system call, and reads filled the buffer less often.
pub(crate) const DATA_SOCKET_BUFFER: usize = 128 * 1024;

/// Caps a data socket's send buffer (see [`DATA_SOCKET_BUFFER`]); failure only loses the cap.
pub(crate) fn limit_socket_buffers(s: &TcpStream) {
    use nix::sys::socket::{setsockopt, sockopt};
    let _ = setsockopt(s, sockopt::SndBuf, &DATA_SOCKET_BUFFER);
}

/// True for EMFILE and ENFILE: the process or the system is out of file descriptors.
pub(crate) fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::EMFILE) | Some(nix::libc::ENFILE)
    )
}

/// Accepts the pending connections of a non-blocking passive listener until one comes from
/// `client` (or from anywhere when `client` is `None`: FXP allowed, or the client's address
/// unknown), dropping the others (RFC 2577 §3: data connections only from the client's own
/// address; `log` names each refused one). `None` when nothing acceptable is pending.
///
/// With the PROXY protocol on (`proxy`), a connection from a trusted balancer is the
/// client's only if it starts with a header naming the client (the balancer relays the
/// passive port range too); the header is taken off before the data. A connection from
/// anywhere else is the client's own, judged by its address.
///
/// # Errors
/// accept(2) failed (EMFILE and ENFILE included: see [`out_of_descriptors`]).
pub(crate) fn accept_from(
    listener: &TcpListener,
    client: Option<IpAddr>,
    proxy: Option<&ProxyProtocol>,
    log: &str,
) -> io::Result<Option<Stream>> {
    loop {
        match listener.accept() {
            Ok((s, addr)) => {
                s.set_nonblocking(false)?;
                let Some(from) = data_client(&s, addr, proxy, log) else {
                    continue;
                };
                if client.is_some_and(|c| from != c) {
                    if from == proto::unmap(addr.ip()) {
                        log::warn!("{log} rejected data connection from foreign address {addr}");
                    } else {
                        log::warn!(
                            "{log} rejected data connection from foreign address {from} \
                             (via {addr})"
                        );
                    }
                    continue;
                }
                log::trace!("{log} data connection from {addr}");
                limit_socket_buffers(&s);
                return Ok(Some(Stream::Tcp(s)));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Whose data connection `s` (from `addr`) is: the address itself, or the client a trusted
/// balancer's PROXY header names; `None` (logged) when a trusted balancer sent no valid
/// header naming a client.
fn data_client(
    s: &TcpStream,
    addr: SocketAddr,
    proxy: Option<&ProxyProtocol>,
    log: &str,
) -> Option<IpAddr> {
    let ip = proto::unmap(addr.ip());
    let Some(pp) = proxy.filter(|pp| pp.trusts(ip)) else {
        return Some(ip);
    };
    match read_header(s, Instant::now() + pp.timeout) {
        Ok(Parsed {
            header: Header::Proxied { source, .. },
            ..
        }) => Some(proto::unmap(source.ip())),
        Ok(_) => {
            log::warn!("{log} rejected data connection from proxy {addr}: no client named");
            None
        }
        Err(e) => {
            log::warn!("{log} rejected data connection from proxy {addr}: {e}");
            None
        }
    }
}
