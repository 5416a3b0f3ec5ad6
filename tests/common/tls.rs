//! FTPS test helpers: throw-away certificates (made with the `openssl` CLI), servers with
//! TLS, a rustls client that accepts them, and a control connection driven by hand after
//! `AUTH TLS`.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use ftpdlib::handlers::TlsConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

use super::{builder, epsv_port, read_reply, tool, Builder, Server, IO_TIMEOUT, PASS, USER};

/// A throw-away self-signed certificate (P-256) for CN=localhost / 127.0.0.1.
pub struct Certs {
    pub _dir: tempfile::TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn certs() -> Option<Certs> {
    if !tool("openssl") {
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let st = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(st.status.success(), "openssl: {st:?}");
    Some(Certs {
        _dir: dir,
        cert,
        key,
    })
}

#[macro_export]
macro_rules! need {
    ($e:expr) => {
        match $e {
            Some(v) => v,
            None => return,
        }
    };
}

/// A server builder whose handler has TLS from `c`, adjusted by `f`.
pub fn tls_builder(c: &Certs, f: impl FnOnce(&mut TlsConfig) + 'static) -> Builder {
    let (cert, key) = (c.cert.clone(), c.key.clone());
    builder().handler(move |h| {
        let mut t = TlsConfig::from_pem_files(&cert, Some(&key)).expect("load certificate");
        f(&mut t);
        h.tls = Some(t);
    })
}

pub fn tls_server(c: &Certs) -> Server {
    tls_builder(c, |_| {}).start()
}

// ---------------------------------------------------------------- a rustls client

/// Accepts any server certificate (the tests' certificates are self-signed) but still checks
/// the handshake signatures.
#[derive(Debug)]
pub struct AcceptAny(pub Arc<CryptoProvider>);

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
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client configuration (its own session cache: connections sharing it can resume).
pub fn client_config(tls12_only: bool) -> Arc<ClientConfig> {
    // The process's provider (ring, the one rustls feature compiled in).
    let provider = ClientConfig::builder().crypto_provider().clone();
    let versions: &[&'static rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    Arc::new(
        ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth(),
    )
}

pub type TlsSock = rustls::StreamOwned<ClientConnection, TcpStream>;

/// Starts TLS on a connected socket (the handshake completes on first use).
pub fn tls_connect(cfg: &Arc<ClientConfig>, sock: TcpStream) -> TlsSock {
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = ClientConnection::new(cfg.clone(), name).expect("client connection");
    let mut sock = sock;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).expect("client handshake");
    }
    rustls::StreamOwned::new(conn, sock)
}

/// A control connection after AUTH TLS.
pub struct TlsCtl {
    pub s: TlsSock,
    pub cfg: Arc<ClientConfig>,
    pub addr: SocketAddr,
}

impl TlsCtl {
    pub fn cmd(&mut self, line: &str) -> (u32, String) {
        self.s.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        self.s.flush().unwrap();
        read_reply(&mut self.s)
    }
    pub fn login(&mut self) {
        assert_eq!(self.cmd(&format!("USER {USER}")).0, 331);
        assert_eq!(self.cmd(&format!("PASS {PASS}")).0, 230);
        assert_eq!(self.cmd("TYPE I").0, 200);
    }
    pub fn protect(&mut self) {
        assert_eq!(self.cmd("PBSZ 0").0, 200);
        assert_eq!(self.cmd("PROT P").0, 200);
    }
    /// EPSV, then `cmd` (RETR, STOR…) answered with 125 or 150: the data connection, its TLS
    /// handshake not begun.
    pub fn data_for(&mut self, cmd: &str) -> TcpStream {
        let sock = self.epsv();
        self.s.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
        let (code, text) = read_reply(&mut self.s);
        assert!(code == 125 || code == 150, "{cmd}: {text}");
        sock
    }
    /// EPSV and a plain TCP connection to the announced port.
    pub fn epsv(&mut self) -> TcpStream {
        let (code, text) = self.cmd("EPSV");
        assert_eq!(code, 229, "{text}");
        TcpStream::connect((self.addr.ip(), epsv_port(&text))).expect("data connect")
    }
}

/// AUTH TLS, login and PROT P on a fresh connection, with its own client configuration.
pub fn protected(s: &Server, tls12_only: bool) -> TlsCtl {
    let mut t = auth_tls(s, tls12_only);
    t.login();
    t.protect();
    t
}

/// AUTH TLS on a fresh connection, with its own client configuration.
pub fn auth_tls(s: &Server, tls12_only: bool) -> TlsCtl {
    let mut r = s.raw();
    let (code, text) = r.cmd("AUTH TLS");
    assert_eq!(code, 234, "{text}");
    let cfg = client_config(tls12_only);
    let sock = tls_connect(&cfg, r.stream.try_clone().unwrap());
    TlsCtl {
        s: sock,
        cfg,
        addr: s.addr,
    }
}
