//! Data channel setup: PORT, EPRT (active; RFC 959 §4.1.2, RFC 2428 §2) and PASV, EPSV
//! (passive; RFC 2428 §3), with RFC 2577's bounce protection: no PORT to a foreign address
//! or a privileged port unless permitted.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use crate::handlers::data::DataSetup;
use crate::handlers::stream::Stream;
use crate::handlers::{Request, Session};
use crate::proto;

/// How long an active connection attempt may take (pyftpdlib `ActiveDTP.timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

fn af_hint(s: &Session) -> &'static str {
    if s.local.is_ipv4() {
        "1"
    } else {
        "2"
    }
}

pub(super) fn port(s: &mut Session, req: &Request) -> io::Result<()> {
    if s.epsv_all {
        return s.reply(501, "PORT not allowed after EPSV ALL.");
    }
    match proto::parse_port(&req.arg_str()) {
        Some(addr) => make_eport(s, addr),
        None => s.reply(501, "Invalid PORT format."),
    }
}

pub(super) fn eprt(s: &mut Session, req: &Request) -> io::Result<()> {
    if s.epsv_all {
        return s.reply(501, "EPRT not allowed after EPSV ALL.");
    }
    // pyftpdlib `ftp_EPRT`: `<d>af<d>ip<d>port<d>` split on the first character, the port
    // checked first, then the protocol against the control connection's family.
    let arg = req.arg_str();
    let Some((af, ip, port)) = proto::split_eprt(&arg) else {
        return s.reply(501, "Invalid EPRT format.");
    };
    match af {
        "1" => match ip.parse::<std::net::Ipv4Addr>() {
            Ok(v4) => make_eport(s, SocketAddr::new(v4.into(), port)),
            Err(_) => s.reply(501, "Invalid EPRT format."),
        },
        "2" if s.local.is_ipv4() => s.reply(522, "Network protocol not supported (use 1)."),
        "2" => match ip.parse::<std::net::Ipv6Addr>() {
            Ok(v6) => make_eport(s, SocketAddr::new(v6.into(), port)),
            // pyftpdlib does not parse the address: one that is not the client's is foreign.
            Err(_) => refuse_foreign(s, ip, port),
        },
        _ => {
            let msg = format!("Unknown network protocol (use {}).", af_hint(s));
            s.reply(501, &msg)
        }
    }
}

/// The RFC 2577 refusal of a data connection to another host (pyftpdlib's text).
fn refuse_foreign(s: &mut Session, ip: &str, port: u16) -> io::Result<()> {
    // The address may be whatever the client wrote after EPRT |2|: echoed only when it is
    // made of address characters (no markup, no control bytes).
    let plain = |b: u8| b.is_ascii_alphanumeric() || b".:%-".contains(&b);
    let ip = if ip.len() <= 64 && ip.bytes().all(plain) {
        ip
    } else {
        "(invalid address)"
    };
    log::warn!(
        "{} PORT/EPRT to foreign address {ip}:{port} refused",
        s.prefix
    );
    s.reply(
        501,
        &format!("Rejected data connection to foreign address {ip}:{port}."),
    )
}

/// Connects to the client's data port (pyftpdlib `_make_eport`).
fn make_eport(s: &mut Session, addr: SocketAddr) -> io::Result<()> {
    if s.peer.ip().is_unspecified() && !s.h.permit_foreign_addresses {
        // A control connection over a Unix socket (inetd "nowait" under socat) may not know
        // the client: any address could then be a bounce target (RFC 2577).
        log::warn!(
            "{} PORT/EPRT refused: the client's address is unknown",
            s.prefix
        );
        return s.reply(
            501,
            "Active mode needs the client's address, which this connection does not tell; \
             use PASV or EPSV.",
        );
    }
    let mut ip = proto::unmap(addr.ip());
    if ip.is_unspecified() {
        // lftp sends `EPRT |2|::|port|` on IPv6: "this host" can only mean the client itself,
        // so it is no bounce risk (pyftpdlib refuses it as a foreign address).
        ip = s.peer.ip();
    }
    if ip != s.peer.ip() && !s.h.permit_foreign_addresses {
        return refuse_foreign(s, &ip.to_string(), addr.port());
    }
    if addr.port() < 1024 && !s.h.permit_privileged_ports {
        log::warn!(
            "{} PORT/EPRT to privileged port {} refused",
            s.prefix,
            addr.port()
        );
        return s.reply(
            501,
            &format!(
                "PORT against the privileged port \"{}\" refused.",
                addr.port()
            ),
        );
    }
    s.data = DataSetup::None;
    match TcpStream::connect_timeout(&SocketAddr::new(ip, addr.port()), CONNECT_TIMEOUT) {
        Ok(stream) => {
            log::trace!("{} data connection to {addr} established", s.prefix);
            crate::handlers::data::limit_socket_buffers(&stream);
            s.data = DataSetup::Active(Stream::Tcp(stream));
            s.data_since = std::time::Instant::now();
            s.reply(200, "Active data connection established.")
        }
        Err(e) if crate::handlers::data::out_of_descriptors(&e) => {
            log::warn!("{} active connection to {addr} failed: {e}", s.prefix);
            let why = crate::filesystems::strerror(&e);
            s.reply(425, &format!("Can't open data connection: {why}."))
        }
        Err(e) => {
            log::info!("{} active connection to {addr} failed: {e}", s.prefix);
            s.reply(425, "Can't connect to specified address.")
        }
    }
}

pub(super) fn pasv(s: &mut Session, _req: &Request) -> io::Result<()> {
    if s.epsv_all {
        return s.reply(501, "PASV not allowed after EPSV ALL.");
    }
    let ip4 = match (s.h.masquerade_for(s.local.ip()), s.local.ip()) {
        (Some(m), _) => m,
        (None, IpAddr::V4(v4)) => v4,
        (None, IpAddr::V6(_)) => {
            return s.reply(425, "Can't use PASV on an IPv6 connection; use EPSV.");
        }
    };
    match open_passive(s) {
        Ok(port) => s.reply(227, &proto::format_pasv(ip4, port)),
        Err(why) => s.reply(425, &why),
    }
}

pub(super) fn epsv(s: &mut Session, req: &Request) -> io::Result<()> {
    match proto::parse_epsv(&req.arg_str()) {
        Some(proto::EpsvArg::Any) => {}
        Some(proto::EpsvArg::Protocol(1)) if !s.local.is_ipv4() => {
            return s.reply(522, "Network protocol not supported (use 2).")
        }
        Some(proto::EpsvArg::Protocol(2)) if s.local.is_ipv4() => {
            return s.reply(522, "Network protocol not supported (use 1).")
        }
        Some(proto::EpsvArg::Protocol(_)) => {}
        Some(proto::EpsvArg::All) => {
            s.epsv_all = true;
            // pyftpdlib answers 220 here; any 2xx satisfies RFC 2428 §4.
            return s.reply(220, "Other commands other than EPSV are now disabled.");
        }
        None => {
            let msg = format!("Unknown network protocol (use {}).", af_hint(s));
            return s.reply(501, &msg);
        }
    }
    match open_passive(s) {
        Ok(port) => s.reply(229, &proto::format_epsv(port)),
        Err(why) => s.reply(425, &why),
    }
}

/// The 425 text when every port of `passive_ports` is taken.
const RANGE_EXHAUSTED: &str =
    "Can't open passive connection: no free port in the configured range.";

/// Binds a passive listener on the control connection's local address, in `passive_ports`
/// when configured (starting at a random port, so sessions spread over the range). Replaces
/// any earlier data setup: PASV is per transfer. The range is never left: pyftpdlib falls
/// back to a port the kernel picks, which the firewall the range was opened in would drop;
/// here the client gets 425 and may try again once a session lets its port go. `Err` is the
/// 425 text, which says why when the process is out of descriptors.
fn open_passive(s: &mut Session) -> Result<u16, String> {
    s.data = DataSetup::None;
    let ip = s.local.ip();
    // Out of descriptors every port fails alike: say so instead of trying them all.
    let no_fds = std::cell::Cell::new(None);
    let bind = |port: u16| match TcpListener::bind(SocketAddr::new(ip, port)) {
        Ok(l) => Some(l),
        Err(e) => {
            if crate::handlers::data::out_of_descriptors(&e) {
                no_fds.set(e.raw_os_error());
            } else if port == 0 {
                log::warn!("{} no passive port available: {e}", s.prefix);
            }
            None
        }
    };
    let mut range = None;
    let listener = match &s.h.passive_ports {
        None => bind(0),
        Some(r) => {
            let (lo, hi) = (*r.start(), *r.end());
            range = Some((lo, hi));
            let n = u32::from(hi - lo) + 1;
            let start = (std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
                ^ std::process::id())
                % n;
            (0..n)
                .take_while(|_| no_fds.get().is_none())
                .find_map(|i| bind(lo + ((start + i) % n) as u16))
        }
    };
    let Some(listener) = listener else {
        return Err(passive_refused(s, no_fds.get(), range));
    };
    let port = listener
        .local_addr()
        .map_err(|_| "Can't open passive connection.".to_string())?
        .port();
    log::trace!("{} passive data channel listening on port {port}", s.prefix);
    s.data = DataSetup::Passive(listener);
    s.data_since = std::time::Instant::now();
    Ok(port)
}

/// The 425 text (and the log line) when no passive listener could be opened: out of
/// descriptors (`errno`), every port of the configured range taken, or the bind failed.
fn passive_refused(s: &Session, errno: Option<i32>, range: Option<(u16, u16)>) -> String {
    if let Some(e) = errno.map(io::Error::from_raw_os_error) {
        log::warn!("{} cannot open a passive listener: {e}", s.prefix);
        let why = crate::filesystems::strerror(&e);
        return format!("Can't open passive connection: {why}.");
    }
    match range {
        Some((lo, hi)) => {
            log::warn!(
                "{} PASV refused: no free port in the passive range {lo}-{hi}",
                s.prefix
            );
            RANGE_EXHAUSTED.to_string()
        }
        None => "Can't open passive connection.".to_string(),
    }
}
