//! FTPS configuration over rustls (pyftpdlib `TLS_FTPHandler`'s attributes; RFC 4217):
//! [`TlsConfig`] (certificate, key, required TLS, session binding) and the rustls
//! configurations of one control connection, whose data connections must resume its TLS
//! session. The handshakes themselves are the session's (session/tls.rs); the encrypted
//! stream is dtp/tls_stream.rs.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
use rustls::ServerConfig;

use crate::Error;

/// FTPS settings of a handler (pyftpdlib `TLS_FTPHandler`'s attributes). Build it with
/// [`TlsConfig::from_pem_files`] or [`TlsConfig::from_server_config`], then set the flags.
///
/// # Data connections are bound to the control connection
///
/// By default every `PROT P` data connection must **resume the control connection's TLS
/// session** — vsftpd's `require_ssl_reuse`, which pyftpdlib and libunftp leave open. Without it,
/// whoever connects to the passive port first (with `permit_foreign_addresses`, from anywhere)
/// gets the file. A data connection that does a full handshake instead is refused with
/// `522 SSL connection failed: session reuse required.` and a log line saying why.
///
/// How: each control connection gets its own session store. Its TLS 1.2 session ID and its
/// TLS 1.3 tickets (stateful, 8 of them) land there and nowhere else; data connections may only
/// look sessions up in it, never add one, and send no tickets. curl (OpenSSL), lftp (GnuTLS) and
/// rustls clients (suppaftp) resume as required. One limit: rustls clients use each TLS 1.3
/// ticket once, so a rustls client gets 8 encrypted data connections per control connection
/// under TLS 1.3 (no limit with TLS 1.2). Clients that cannot resume need
/// `require_session_reuse = false` (`--disable-tls-reuse-check`).
///
/// Python's `ftplib.FTP_TLS` does a full handshake on each data connection (522), unless a
/// subclass hands it the control connection's session:
///
/// ```python
/// class ReusingFTP_TLS(ftplib.FTP_TLS):
///     """Data connections resume the control connection's TLS session."""
///     def ntransfercmd(self, cmd, rest=None):
///         conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
///         if self._prot_p:
///             conn = self.context.wrap_socket(conn, server_hostname=self.host,
///                                             session=self.sock.session)
///         return conn, size
/// ```
///
/// # What else it protects against
///
/// * **STARTTLS command injection**: anything the client sent in plaintext behind `AUTH TLS`
///   (e.g. `AUTH TLS\r\nUSER x\r\n` in one packet) is discarded, never executed.
/// * **Truncated uploads**: an upload whose TLS stream ends without close_notify (a TCP close or
///   reset) is incomplete: `426`, `on_incomplete_file_received`, never `226`.
/// * **No tickets on data connections**: a client that never reads a data connection (lftp under
///   TLS 1.3) would otherwise leave unread tickets in its socket, reset the connection when it
///   closes it, and the server's kernel would drop the end of the upload — while pyftpdlib
///   answers 226. ftpdlib sends none, and treats a reset during STOR as incomplete.
/// * sendfile(2) is not used for TLS data; the transfer loop, ABOR/STAT during a transfer and
///   throttling work the same over TLS.
///
/// With curl's default `--ftp-ssl-ccc-mode passive`, curl drops its TLS session without a
/// close_notify exchange, OpenSSL then forgets the session, and later data connections cannot
/// resume it (522); use `--ftp-ssl-ccc-mode active` or the reuse check off. curl 7.88 (Debian 12)
/// cannot do active-mode FTPS; lftp can.
#[derive(Clone)]
#[non_exhaustive]
pub struct TlsConfig {
    /// The PEM certificate file (chain: leaf first), if the config came from files.
    pub certfile: Option<PathBuf>,
    /// The PEM private-key file; `None` when the key sits in `certfile`.
    pub keyfile: Option<PathBuf>,
    /// Refuse USER/PASS before `AUTH TLS` (`550 SSL/TLS required on the control channel.`).
    /// Default: false.
    pub tls_control_required: bool,
    /// Refuse PASV/EPSV/PORT/EPRT and transfers without `PROT P`
    /// (`550 SSL/TLS required on the data channel.`, pyftpdlib's reply). Default: false.
    pub tls_data_required: bool,
    /// Each `PROT P` data connection must resume the control connection's TLS session
    /// (vsftpd's `require_ssl_reuse`); one that does not is refused with 522. This binds data
    /// connections to the client that logged in: a third party who connects to the passive
    /// port first cannot take the transfer. Turn it off only for old clients that cannot
    /// resume. Default: true.
    pub require_session_reuse: bool,
    /// How long the TLS handshake of a `PROT P` data connection may take, from the
    /// moment it starts (a passive connection accepted, or the transfer command over an
    /// active one); past it the transfer gets `425` and the log says the handshake timed
    /// out. Default: 10 s.
    pub data_handshake_timeout: Duration,
    /// The configuration new control connections start from; [`reload`](Self::reload)
    /// swaps it (every clone of this value shares the swap). A session keeps the one it
    /// started with.
    server_config: Arc<RwLock<Arc<ServerConfig>>>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("certfile", &self.certfile)
            .field("keyfile", &self.keyfile)
            .field("tls_control_required", &self.tls_control_required)
            .field("tls_data_required", &self.tls_data_required)
            .field("require_session_reuse", &self.require_session_reuse)
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Loads a PEM certificate chain and private key (TLS 1.2 and 1.3; AES-128-GCM preferred
    /// over the client's order, the cheapest suite for bulk data). `keyfile` may be `None`
    /// when `certfile` holds the key too, as pyftpdlib allows. The cryptography is the
    /// process's default rustls crypto provider: ring, unless the program installed another
    /// with `rustls::crypto::CryptoProvider::install_default`.
    ///
    /// # Errors
    /// [`Error::Tls`] naming the file when it is missing, holds no certificate or key, or the
    /// key does not fit the certificate; or no crypto provider can be chosen.
    pub fn from_pem_files(certfile: &Path, keyfile: Option<&Path>) -> Result<TlsConfig, Error> {
        let config = load_pem(certfile, keyfile)?;
        let mut t = TlsConfig::from_server_config(Arc::new(config));
        t.certfile = Some(certfile.to_path_buf());
        t.keyfile = keyfile.map(Path::to_path_buf);
        Ok(t)
    }

    /// Reads the certificate and key again from [`certfile`](Self::certfile) and
    /// [`keyfile`](Self::keyfile) (a renewed certificate): control connections made from
    /// now on use them, sessions already running keep theirs. Every clone of this value
    /// (the handler's copies in every session thread) sees the new files. Returns false
    /// for a configuration that did not come from files.
    ///
    /// # Errors
    /// As [`from_pem_files`](Self::from_pem_files); the configuration in use is then kept.
    pub fn reload(&self) -> Result<bool, Error> {
        let Some(certfile) = &self.certfile else {
            return Ok(false);
        };
        let fresh = load_pem(certfile, self.keyfile.as_deref())?;
        let mut cur = self
            .server_config
            .write()
            .map_err(|_| Error::Tls("the TLS configuration lock is poisoned".into()))?;
        let mut fresh = fresh;
        // What a program set on the old configuration beyond the certificate stays.
        fresh.alpn_protocols = cur.alpn_protocols.clone();
        *cur = Arc::new(fresh);
        Ok(true)
    }
}

/// A rustls server configuration (TLS 1.2 and 1.3, ring) from PEM files.
fn load_pem(certfile: &Path, keyfile: Option<&Path>) -> Result<ServerConfig, Error> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certfile)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| Error::Tls(format!("certfile {}: {e}", certfile.display())))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!(
            "certfile {}: no certificate found",
            certfile.display()
        )));
    }
    let keypath = keyfile.unwrap_or(certfile);
    let key = PrivateKeyDer::from_pem_file(keypath).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => Error::Tls(format!(
            "keyfile {}: no private key found",
            keypath.display()
        )),
        e => Error::Tls(format!("keyfile {}: {e}", keypath.display())),
    })?;
    let provider = Arc::new(bulk_first((*crypto_provider()?).clone()));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            Error::Tls(format!(
                "certificate {} / key {}: {e}",
                certfile.display(),
                keypath.display()
            ))
        })?;
    // The server's order (`bulk_first`), not the client's: rustls and OpenSSL clients list
    // AES-256-GCM first.
    config.ignore_client_order = true;
    Ok(config)
}

impl TlsConfig {
    /// Uses a `rustls::ServerConfig` the program built. Its session storage, ticketer and
    /// ticket count are replaced per control connection (see
    /// [`require_session_reuse`](Self::require_session_reuse)); an empty `alpn_protocols`
    /// becomes `["ftp"]` (a client offering ALPN without `ftp` is refused: the ALPACA
    /// cross-protocol defence); everything else is kept.
    pub fn from_server_config(config: Arc<ServerConfig>) -> TlsConfig {
        TlsConfig {
            certfile: None,
            keyfile: None,
            tls_control_required: false,
            tls_data_required: false,
            require_session_reuse: true,
            data_handshake_timeout: Duration::from_secs(10),
            server_config: Arc::new(RwLock::new(config)),
        }
    }

    /// The rustls configuration new sessions start from (the latest after a
    /// [`reload`](Self::reload)).
    pub fn server_config(&self) -> Arc<ServerConfig> {
        match self.server_config.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The rustls configurations of one control connection. Its sessions land in a store
    /// of its own: the control side stores its TLS 1.2 session and its TLS 1.3 tickets
    /// there (stateful tickets: no ticketer), so only this connection's data connections
    /// can resume them. Each data connection looks them up without consuming them and
    /// issues one TLS 1.3 ticket of its own, kept only once its handshake proved to resume
    /// (see [`SessionConfigs::data_connection`]).
    pub(crate) fn per_session(&self) -> SessionConfigs {
        let sessions = ServerSessionMemoryCache::new(64);
        let mut ctrl = (*self.server_config()).clone();
        if ctrl.alpn_protocols.is_empty() {
            // ALPACA (RFC 7301 §3.2; vsftpd 3.0.4): a client offering ALPN without "ftp" — a
            // browser made to talk to this port, offering "http/1.1" — fails the handshake
            // with no_application_protocol. A client that offers no ALPN is served.
            ctrl.alpn_protocols = vec![b"ftp".to_vec()];
        }
        ctrl.session_storage = sessions.clone();
        ctrl.ticketer = Arc::new(NoTickets);
        ctrl.send_tls13_tickets = ctrl.send_tls13_tickets.max(CONTROL_TICKETS);
        ctrl.max_early_data_size = 0;
        let mut data = ctrl.clone();
        data.send_tls13_tickets = DATA_TICKETS;
        SessionConfigs {
            ctrl: Arc::new(ctrl),
            data: Arc::new(data),
            sessions,
            tickets: ServerSessionMemoryCache::new(ISSUED_TICKETS),
        }
    }
}

/// The rustls crypto provider FTPS uses: the process default when the program installed one
/// (`CryptoProvider::install_default`, which rustls asks libraries to honour, so a program
/// choosing aws-lc-rs or a FIPS provider gets it here too), else the one this crate's
/// rustls features name — ring — which rustls then installs as the process default.
///
/// # Errors
/// [`Error::Tls`] when none is installed and the program's rustls features name more than
/// one provider (e.g. ring and aws-lc-rs both compiled in): rustls cannot choose, and the
/// program must call `CryptoProvider::install_default` first.
pub(crate) fn crypto_provider() -> Result<Arc<CryptoProvider>, Error> {
    if let Some(p) = CryptoProvider::get_default() {
        return Ok(p.clone());
    }
    // `ServerConfig::builder` installs the provider the crate features name, and panics
    // (its documented behaviour) when they name several; that panic becomes an error here.
    std::panic::catch_unwind(|| ServerConfig::builder().crypto_provider().clone()).map_err(|_| {
        Error::Tls(
            "no rustls crypto provider: several are compiled in and none is installed; call \
             rustls::crypto::CryptoProvider::install_default() before building TlsConfig"
                .into(),
        )
    })
}

/// `provider` with AES-128-GCM ahead of the other suites of each TLS version (ring's
/// order is AES-256-GCM, AES-128-GCM, ChaCha20-Poly1305). FTPS moves files: AES-128 runs
/// 10 rounds where AES-256 runs 14, at a security margin no attack comes near (it is
/// TLS 1.3's mandatory suite, RFC 8446 §9.1). Measured on one-client FTPS transfers
/// (interleaved, 5 rounds): RETR 1.18x, server CPU per uploaded GB 0.96x.
fn bulk_first(mut provider: rustls::crypto::CryptoProvider) -> rustls::crypto::CryptoProvider {
    use rustls::CipherSuite::*;
    // A stable sort: the rest keep ring's order.
    provider.cipher_suites.sort_by_key(|s| {
        !matches!(
            s.suite(),
            TLS13_AES_128_GCM_SHA256
                | TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    provider
}

/// TLS 1.3 tickets sent on a control connection. GnuTLS (lftp) and Python's ftplib offer
/// the control connection's session again on every data connection; rustls clients use
/// each ticket once (RFC 8446 §C.4) and keep at most 8 per server.
const CONTROL_TICKETS: usize = 8;

/// TLS 1.3 tickets sent on each data connection that resumed: OpenSSL (curl) and rustls
/// clients use each ticket once, and curl keeps only the last one it got, so every data
/// connection must leave the client a fresh one for the next.
const DATA_TICKETS: usize = 1;

/// How many tickets issued on data connections a control connection keeps (the oldest go
/// first; the control connection's own sessions are kept apart and never pushed out).
const ISSUED_TICKETS: usize = 32;

/// The rustls configurations of one control connection, and the sessions its data
/// connections may resume.
#[derive(Clone)]
pub(crate) struct SessionConfigs {
    pub(crate) ctrl: Arc<ServerConfig>,
    data: Arc<ServerConfig>,
    /// The control connection's sessions (TLS 1.2 session, TLS 1.3 tickets).
    sessions: Arc<ServerSessionMemoryCache>,
    /// Tickets issued on data connections that resumed.
    tickets: Arc<ServerSessionMemoryCache>,
}

impl SessionConfigs {
    /// The configuration of one data connection, and the tickets its handshake issues:
    /// [`DataTickets::keep`] them once the handshake resumed this control connection's
    /// session. A connection that did not (a third party on the passive port, with the
    /// reuse check off) must not leave a ticket that would let it resume the next time.
    pub(crate) fn data_connection(&self) -> (Arc<ServerConfig>, DataTickets) {
        let store = Arc::new(DataStore {
            sessions: self.sessions.clone(),
            tickets: self.tickets.clone(),
            issued: Mutex::new(Vec::new()),
        });
        let mut cfg = (*self.data).clone();
        cfg.session_storage = store.clone();
        (Arc::new(cfg), DataTickets(store))
    }
}

/// The tickets one data connection's handshake issued, not yet resumable.
#[derive(Debug)]
pub(crate) struct DataTickets(Arc<DataStore>);

impl DataTickets {
    /// Makes them resumable by the next data connections of the same control connection.
    pub(crate) fn keep(&self) {
        let issued = match self.0.issued.lock() {
            Ok(mut v) => std::mem::take(&mut *v),
            Err(_) => return,
        };
        for (key, value) in issued {
            self.0.tickets.put(key, value);
        }
    }
}

/// No stateless tickets: TLS 1.3 tickets are then stateful and kept in the per-connection
/// session store, so they resume only this connection's data channels.
#[derive(Debug)]
struct NoTickets;

impl ProducesTickets for NoTickets {
    fn enabled(&self) -> bool {
        false
    }
    fn lifetime(&self) -> u32 {
        0
    }
    fn encrypt(&self, _plain: &[u8]) -> Option<Vec<u8>> {
        None
    }
    fn decrypt(&self, _cipher: &[u8]) -> Option<Vec<u8>> {
        None
    }
}

/// The session store of one data connection: looks up the control connection's sessions
/// and the tickets earlier data connections issued, without consuming them (OpenSSL and
/// GnuTLS clients offer the same session again), and holds the ticket this connection
/// issues apart until [`DataTickets::keep`]. No TLS 1.2 session IDs are handed out
/// (`can_cache`): a data connection that did a full handshake never becomes resumable.
#[derive(Debug)]
struct DataStore {
    sessions: Arc<ServerSessionMemoryCache>,
    tickets: Arc<ServerSessionMemoryCache>,
    issued: Mutex<Vec<(Vec<u8>, Vec<u8>)>>,
}

impl StoresServerSessions for DataStore {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        match self.issued.lock() {
            Ok(mut v) => {
                v.push((key, value));
                true
            }
            Err(_) => false,
        }
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.sessions.get(key).or_else(|| self.tickets.get(key))
    }
    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.get(key)
    }
    fn can_cache(&self) -> bool {
        false
    }
}
