//! The TLS side of the client: a rustls (ring provider) configuration for explicit FTPS
//! (RFC 4217: `AUTH TLS`, `PBSZ 0`, `PROT P`) and the stream type that carries either plain
//! TCP or TLS, for control and data connections alike.
//!
//! Data connections use the control connection's `ClientConfig`, hence its session cache, so
//! each one offers to resume the control connection's TLS session, as servers that check
//! session reuse (ftpdlib by default, vsftpd's `require_ssl_reuse`) demand. rustls uses a
//! TLS 1.3 ticket once (RFC 8446 §C.4); callers that run many transfers on one control
//! connection open a fresh one every [`TRANSFERS_PER_LOGIN`] transfers.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

/// Transfers run on one TLS control connection before the caller logs in again: fewer than
/// the TLS 1.3 tickets servers send (ftpdlib sends 8 per control connection; OpenSSL-based
/// servers send new ones on every resumed data connection).
pub const TRANSFERS_PER_LOGIN: usize = 6;

/// Accepts any server certificate (the benchmark's are self-signed, like `curl -k`) but
/// still checks the handshake signatures, so the server does its full private-key work.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client configuration (TLS 1.3 and 1.2, ring), with its own session cache. One per
/// control connection: its data connections then resume that connection's session and no
/// other's.
pub fn client_config() -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .expect("ring supports the default protocol versions");
    Arc::new(
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth(),
    )
}

/// A TLS client stream over TCP; the handshake runs on first read or write.
pub type TlsStream = rustls::StreamOwned<ClientConnection, TcpStream>;

/// Starts a TLS client on `sock` (the handshake itself happens lazily, on first use, so a
/// data connection is handshaken after the transfer command's 1xx reply, as ftplib does).
///
/// # Errors
/// An invalid configuration (never with [`client_config`]).
pub fn wrap(cfg: &Arc<ClientConfig>, sock: TcpStream) -> io::Result<TlsStream> {
    // The name is only the session cache's key here: the certificate is not checked.
    let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
    let conn = ClientConnection::new(Arc::clone(cfg), name).map_err(io::Error::other)?;
    Ok(rustls::StreamOwned::new(conn, sock))
}

/// Runs the handshake now (the control connection right after `AUTH TLS`).
///
/// # Errors
/// Handshake failures and timeouts.
pub fn handshake(s: &mut TlsStream) -> io::Result<()> {
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(())
}

/// A control or data connection: plain TCP, or TLS over TCP.
pub enum Stream {
    /// No TLS (FTP, or `PROT C` data).
    Plain(TcpStream),
    /// TLS (after `AUTH TLS`, or `PROT P` data).
    Tls(Box<TlsStream>),
}

impl Stream {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &t.sock,
        }
    }

    /// Ends the sending side: TLS close_notify first (RFC 8446 §6.1; RFC 4217 §12.6 asks for
    /// it at the end of a data transfer, so a server can tell a complete upload from a cut
    /// one), then a TCP half-close.
    ///
    /// # Errors
    /// Write failures.
    pub fn finish_write(&mut self) -> io::Result<()> {
        if let Stream::Tls(t) = self {
            t.conn.send_close_notify();
            while t.conn.wants_write() {
                t.conn.write_tls(&mut t.sock)?;
            }
        }
        self.tcp().shutdown(Shutdown::Write)?;
        if let Stream::Tls(t) = self {
            // What the server sent meanwhile (OpenSSL sends TLS 1.3 session tickets on every
            // data connection; an upload never reads them) must be read before the socket
            // closes: closing with unread bytes sends a reset, which can reach the server
            // before the last records and the close_notify, and the upload fails (vsftpd:
            // `426 Failure reading network stream.`). Read until the server closes.
            let mut sink = [0u8; 4096];
            loop {
                match t.sock.read(&mut sink) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
        Ok(())
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(t) => match t.read(buf) {
                // A server that closes without close_notify (TCP FIN after the last record)
                // ends the data the same way for this benchmark: the byte count is checked.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                r => r,
            },
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(t) => t.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(t) => t.flush(),
        }
    }
}
