//! Data channel setup: PORT, EPRT (active; RFC 959 §4.1.2, RFC 2428 §2) and PASV, EPSV
//! (passive; RFC 2428 §3), with RFC 2577's bounce protection: no PORT to a foreign address
//! or a privileged port unless permitted.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use crate::handlers::dtp::{self, Stream};
use crate::handlers::session::{ControlChannel, Setup};
use crate::handlers::{FtpHandler, Request, Session};
use crate::proto;

/// How long an active connection attempt may take (pyftpdlib `ActiveDTP.timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

fn af_hint(c: &ControlChannel) -> &'static str {
    if c.local.is_ipv4() {
        "1"
    } else {
        "2"
    }
}

pub(super) fn port(s: &mut Session, req: &Request) -> io::Result<()> {
    if s.data.epsv_all {
        return s.ctrl.reply(501, "PORT not allowed after EPSV ALL.");
    }
    match proto::parse_port(&req.arg_str()) {
        Some(addr) => make_eport(s, addr),
        None => s.ctrl.reply(501, "Invalid PORT format."),
    }
}

pub(super) fn eprt(s: &mut Session, req: &Request) -> io::Result<()> {
    if s.data.epsv_all {
        return s.ctrl.reply(501, "EPRT not allowed after EPSV ALL.");
    }
    // pyftpdlib `ftp_EPRT`: `<d>af<d>ip<d>port<d>` split on the first character, the port
    // checked first, then the protocol against the control connection's family.
    let arg = req.arg_str();
    let Some((af, ip, port)) = proto::split_eprt(&arg) else {
        return s.ctrl.reply(501, "Invalid EPRT format.");
    };
    match af {
        "1" => match ip.parse::<std::net::Ipv4Addr>() {
            Ok(v4) => make_eport(s, SocketAddr::new(v4.into(), port)),
            Err(_) => s.ctrl.reply(501, "Invalid EPRT format."),
        },
        "2" if s.ctrl.local.is_ipv4() => {
            s.ctrl.reply(522, "Network protocol not supported (use 1).")
        }
        "2" => match ip.parse::<std::net::Ipv6Addr>() {
            Ok(v6) => make_eport(s, SocketAddr::new(v6.into(), port)),
            // pyftpdlib does not parse the address: one that is not the client's is foreign.
            Err(_) => refuse_foreign(&mut s.ctrl, ip, port),
        },
        _ => {
            let msg = format!("Unknown network protocol (use {}).", af_hint(&s.ctrl));
            s.ctrl.reply(501, &msg)
        }
    }
}

/// The RFC 2577 refusal of a data connection to another host (pyftpdlib's text).
fn refuse_foreign(c: &mut ControlChannel, ip: &str, port: u16) -> io::Result<()> {
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
        c.prefix
    );
    c.reply(
        501,
        &format!("Rejected data connection to foreign address {ip}:{port}."),
    )
}

/// The address PORT/EPRT may connect to, or the reply that refuses it (RFC 2577).
fn bounce_check(
    h: &FtpHandler,
    c: &mut ControlChannel,
    addr: SocketAddr,
) -> io::Result<Option<IpAddr>> {
    let peer = c.peer.ip();
    if peer.is_unspecified() && !h.permit_foreign_addresses {
        // A control connection over a Unix socket (inetd "nowait" under socat) may not know
        // the client: any address could then be a bounce target (RFC 2577).
        log::warn!(
            "{} PORT/EPRT refused: the client's address is unknown",
            c.prefix
        );
        c.reply(
            501,
            "Active mode needs the client's address, which this connection does not tell; \
             use PASV or EPSV.",
        )?;
        return Ok(None);
    }
    let mut ip = proto::unmap(addr.ip());
    if ip.is_unspecified() {
        // lftp sends `EPRT |2|::|port|` on IPv6: "this host" can only mean the client itself,
        // so it is no bounce risk (pyftpdlib refuses it as a foreign address).
        ip = peer;
    }
    if ip != peer && !h.permit_foreign_addresses {
        refuse_foreign(c, &ip.to_string(), addr.port())?;
        return Ok(None);
    }
    if addr.port() < 1024 && !h.permit_privileged_ports {
        let port = addr.port();
        log::warn!("{} PORT/EPRT to privileged port {port} refused", c.prefix);
        c.reply(
            501,
            &format!("PORT against the privileged port \"{port}\" refused."),
        )?;
        return Ok(None);
    }
    Ok(Some(ip))
}

/// Connects to the client's data port (pyftpdlib `_make_eport`).
fn make_eport(s: &mut Session, addr: SocketAddr) -> io::Result<()> {
    let Some(ip) = bounce_check(&s.h, &mut s.ctrl, addr)? else {
        return Ok(());
    };
    s.data.setup = Setup::None;
    match TcpStream::connect_timeout(&SocketAddr::new(ip, addr.port()), CONNECT_TIMEOUT) {
        Ok(stream) => {
            log::trace!("{} data connection to {addr} established", s.ctrl.prefix);
            dtp::limit_socket_buffers(&stream);
            s.data.prepare(Setup::Active(Stream::Tcp(stream)));
            s.ctrl.reply(200, "Active data connection established.")
        }
        Err(e) if dtp::out_of_descriptors(&e) => {
            log::warn!("{} active connection to {addr} failed: {e}", s.ctrl.prefix);
            let why = crate::filesystems::strerror(&e);
            s.ctrl
                .reply(425, &format!("Can't open data connection: {why}."))
        }
        Err(e) => {
            log::info!("{} active connection to {addr} failed: {e}", s.ctrl.prefix);
            s.ctrl.reply(425, "Can't connect to specified address.")
        }
    }
}

pub(super) fn pasv(s: &mut Session, _req: &Request) -> io::Result<()> {
    if s.data.epsv_all {
        return s.ctrl.reply(501, "PASV not allowed after EPSV ALL.");
    }
    let ip4 = match (s.h.masquerade_for(s.ctrl.local.ip()), s.ctrl.local.ip()) {
        (Some(m), _) => m,
        (None, IpAddr::V4(v4)) => v4,
        (None, IpAddr::V6(_)) => {
            return s
                .ctrl
                .reply(425, "Can't use PASV on an IPv6 connection; use EPSV.");
        }
    };
    match open_passive(s) {
        Ok(port) => s.ctrl.reply(227, &proto::format_pasv(ip4, port)),
        Err(why) => s.ctrl.reply(425, &why),
    }
}

pub(super) fn epsv(s: &mut Session, req: &Request) -> io::Result<()> {
    let v4 = s.ctrl.local.is_ipv4();
    match proto::parse_epsv(&req.arg_str()) {
        Some(proto::EpsvArg::Any) => {}
        Some(proto::EpsvArg::Protocol(1)) if !v4 => {
            return s.ctrl.reply(522, "Network protocol not supported (use 2).")
        }
        Some(proto::EpsvArg::Protocol(2)) if v4 => {
            return s.ctrl.reply(522, "Network protocol not supported (use 1).")
        }
        Some(proto::EpsvArg::Protocol(_)) => {}
        Some(proto::EpsvArg::All) => {
            s.data.epsv_all = true;
            // pyftpdlib answers 220 here; any 2xx satisfies RFC 2428 §4.
            return s
                .ctrl
                .reply(220, "Other commands other than EPSV are now disabled.");
        }
        None => {
            let msg = format!("Unknown network protocol (use {}).", af_hint(&s.ctrl));
            return s.ctrl.reply(501, &msg);
        }
    }
    match open_passive(s) {
        Ok(port) => s.ctrl.reply(229, &proto::format_epsv(port)),
        Err(why) => s.ctrl.reply(425, &why),
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
    s.data.setup = Setup::None;
    let ip = s.ctrl.local.ip();
    let prefix = &s.ctrl.prefix;
    // Out of descriptors every port fails alike: say so instead of trying them all.
    let no_fds = std::cell::Cell::new(None);
    // Why the kernel found no port for bind(0): named in the 425.
    let no_port = std::cell::Cell::new(None);
    let bind = |port: u16| match TcpListener::bind(SocketAddr::new(ip, port)) {
        Ok(l) => Some(l),
        Err(e) => {
            if dtp::out_of_descriptors(&e) {
                no_fds.set(e.raw_os_error());
            } else if port == 0 {
                log::warn!("{prefix} no passive port available: {e}");
                no_port.set(e.raw_os_error());
            }
            None
        }
    };
    let range = s.h.passive_ports.as_ref().map(|r| (*r.start(), *r.end()));
    let listener = match range {
        None => bind(0),
        Some((lo, hi)) => {
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
        return Err(passive_refused(prefix, no_fds.get(), range, no_port.get()));
    };
    let port = listener
        .local_addr()
        .map_err(|_| "Can't open passive connection.".to_string())?
        .port();
    log::trace!("{prefix} passive data channel listening on port {port}");
    s.data.prepare(Setup::Passive(listener));
    Ok(port)
}

/// The 425 text (and the log line) when no passive listener could be opened: out of
/// descriptors (`errno`), every port of the configured range taken, or the kernel's choice
/// of a port failed (`no_port`: EADDRINUSE when its ephemeral range is used up, by
/// connections and TIME_WAIT alike; logged where it happened).
fn passive_refused(
    prefix: &str,
    errno: Option<i32>,
    range: Option<(u16, u16)>,
    no_port: Option<i32>,
) -> String {
    if let Some(e) = errno.map(io::Error::from_raw_os_error) {
        log::warn!("{prefix} cannot open a passive listener: {e}");
        let why = crate::filesystems::strerror(&e);
        return format!("Can't open passive connection: {why}.");
    }
    match (range, no_port.map(io::Error::from_raw_os_error)) {
        (Some((lo, hi)), _) => {
            log::warn!("{prefix} PASV refused: no free port in the passive range {lo}-{hi}");
            RANGE_EXHAUSTED.to_string()
        }
        (None, Some(e)) => {
            let why = crate::filesystems::strerror(&e);
            format!("Can't open passive connection: {why}.")
        }
        (None, None) => "Can't open passive connection.".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passive_refusals_say_why() {
        let emfile = passive_refused("t", Some(nix::libc::EMFILE), None, None);
        assert_eq!(
            emfile,
            "Can't open passive connection: Too many open files."
        );
        let range = passive_refused("t", None, Some((60000, 60001)), Some(nix::libc::EADDRINUSE));
        assert_eq!(range, RANGE_EXHAUSTED);
        let picked = passive_refused("t", None, None, Some(nix::libc::EADDRINUSE));
        assert_eq!(
            picked,
            "Can't open passive connection: Address already in use."
        );
        let unknown = passive_refused("t", None, None, None);
        assert_eq!(unknown, "Can't open passive connection.");
    }
}
