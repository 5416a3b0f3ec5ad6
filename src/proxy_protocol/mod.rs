//! The PROXY protocol (HAProxy's `proxy-protocol.txt`, versions 1 and 2): a load balancer
//! in TCP mode opens each connection to the server with a header naming the client it
//! relays, so the server can use the client's real address where it would otherwise see the
//! balancer's (logs, per-address limits and bans, the passive data connection check, the
//! PORT bounce check). proftpd's `mod_proxy_protocol` and dovecot's
//! `haproxy_trusted_networks` do the same.
//!
//! [`ProxyProtocol`] is the configuration (which senders are trusted, how long a header may
//! take); [`parse`] is the pure parser (fuzzed: scripts/fuzz/fuzz_targets/proxy_header.rs);
//! [`read_header`] takes a header off a socket without consuming a byte behind it. The spec
//! forbids guessing whether a header is present (§2: "the receiver MUST NOT try to guess"):
//! a connection from a trusted sender must start with one, and on the control listener
//! nobody else may connect at all.
//!
//! # Deployment
//!
//!
//! Several instances behind a TCP balancer share users (`--users-db postgres://…`) and files (one
//! directory, mounted on each). With `--proxy-protocol`, the balancer opens each connection with a
//! PROXY protocol header (HAProxy's, version 1 or 2, told apart by their signatures) naming the
//! client, and that address is the session's everywhere: logs, callbacks, the authorizer,
//! `--max-cons-per-ip`, bans, the PORT bounce check, the passive connection check. One instance of
//! three, and HAProxy in front (`mode tcp` in `defaults`):
//!
//! ```sh
//! ftpdlib -i 10.0.0.11 -p 2121 -d /srv/ftp --users-db @/etc/ftpdlib/db.url \
//!     --proxy-protocol --trusted-proxy 10.0.0.5 -n 203.0.113.10 -r 50000-50099
//! ```
//!
//! ```text
//! frontend ftp
//!     bind 203.0.113.10:21
//!     default_backend ftp
//! backend ftp
//!     balance roundrobin
//!     option tcp-check
//!     tcp-check expect string 220
//!     tcp-check send-binary 515549540d0a   # QUIT
//!     tcp-check expect string 221
//!     default-server send-proxy-v2 check
//!     server ftp1 10.0.0.11:2121
//!     server ftp2 10.0.0.12:2121
//!     server ftp3 10.0.0.13:2121
//! frontend pasv1
//!     bind 203.0.113.10:50000-50099
//!     default_backend pasv1
//! backend pasv1
//!     server ftp1 10.0.0.11 send-proxy-v2     # no port: the one the client connected to
//! # pasv2 (50100-50199 → ftp2) and pasv3 likewise
//! ```
//!
//! * **Who may connect.** Only `--trusted-proxy` addresses (repeatable; `ADDR` or `ADDR/PREFIX`):
//!   anyone else is closed at accept, without a reply, and logged; the spec forbids guessing
//!   whether a header comes. The header must arrive whole within 5 s
//!   (`ProxyProtocol::timeout`); a missing, malformed or late one closes the connection (logged;
//!   a connect-only health check that sends nothing is logged at debug). HAProxy's health checks
//!   send a LOCAL header: they are served as the balancer's own sessions, logged at debug.
//! * **Admission.** A connection from the balancer takes its place under `--max-cons` at
//!   accept; the client's bans and `--max-cons-per-ip` apply once the session (in its own thread
//!   or process, never the accept path) has read the header, with the same 421 replies.
//! * **Data connections.** EPSV carries no address, so clients open data connections to the
//!   balancer: each instance has its own passive range (`-r`), advertises the balancer in PASV
//!   (`-n`), and the balancer relays each range to its instance with a PROXY header. A passive
//!   connection from a trusted balancer must carry a header naming the control connection's
//!   client; one from anywhere else is the client's own, checked by its address, so an instance
//!   reached directly for data keeps working. Active mode connects from the instance straight to
//!   the client's real address (only where instances can reach clients).
//! * **Per instance, not shared:** `--max-cons`, `--max-cons-per-ip`, bans and every rate limit
//!   count the sessions of one instance (a client spread over three instances may hold three
//!   times its per-address limit; a bandwidth cap across machines belongs to the network, not
//!   to the FTP server). Upload locks are `flock(2)`, as shared as the shared filesystem makes
//!   them.
//! * **In a program:** `handler.proxy_protocol = Some(ProxyProtocol::new(vec!["10.0.0.5".parse()?]))`
//!   (`ftpdlib::proxy_protocol`).
//!
//! `scripts/cluster.sh [--v1]` shows it all on loopback and stops by itself: a throw-away
//! PostgreSQL cluster, users added with `ftpdlib users`, three instances on 127.0.0.2–4 sharing it
//! and one directory, HAProxy on 127.0.0.1, curl (EPSV, PASV) and lftp from 127.0.0.9 uploading
//! through one instance and downloading through the others, and each instance's log showing
//! `127.0.0.9:PORT-[alice] …` (`FTP session opened (connect via 127.0.0.1:…, PROXY v2)`).
//! Tests: `tests/proxy_protocol.rs` (headers written by hand, every concurrency model) and
//! `tests/haproxy.rs` (a real HAProxy in front of two servers sharing one user table).

use std::fmt;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::str::FromStr;
use std::time::{Duration, Instant};

use nix::poll::PollFlags;
use nix::sys::socket::{recv, MsgFlags};

pub mod parse;

pub use parse::{Header, Parsed};

/// An address block (`192.0.2.0/24`, `2001:db8::/32`) or a single address (`127.0.0.1`,
/// `::1`). IPv4-mapped IPv6 addresses are matched as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The block of `net` with `prefix` leading bits (host bits are cleared).
    ///
    /// # Errors
    /// A prefix longer than the address (32 for IPv4, 128 for IPv6).
    pub fn new(net: IpAddr, prefix: u8) -> Result<Cidr, String> {
        let net = crate::proto::unmap(net);
        let bits = if net.is_ipv4() { 32 } else { 128 };
        if prefix > bits {
            return Err(format!("prefix /{prefix} is longer than {bits} bits"));
        }
        Ok(Cidr {
            net: mask(net, prefix),
            prefix,
        })
    }

    /// True when `ip` is in the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = crate::proto::unmap(ip);
        ip.is_ipv4() == self.net.is_ipv4() && mask(ip, self.prefix) == self.net
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(std::net::Ipv4Addr::from(u32::from(v4) & m))
        }
        IpAddr::V6(v6) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & m))
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (ip, prefix) = match s.trim().split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s.trim(), None),
        };
        let ip: IpAddr = ip
            .trim_matches(|c| c == '[' || c == ']')
            .parse()
            .map_err(|_| format!("{s:?} is not an address or ADDRESS/PREFIX"))?;
        let full = if crate::proto::unmap(ip).is_ipv4() {
            32
        } else {
            128
        };
        let prefix = match prefix {
            None => full,
            Some(p) => p
                .parse::<u8>()
                .map_err(|_| format!("{s:?}: bad prefix length"))?,
        };
        Cidr::new(ip, prefix).map_err(|e| format!("{s:?}: {e}"))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// PROXY protocol on a server's connections (`--proxy-protocol`): every control
/// connection must come from a [`trusted`](Self::trusted) address and start with a version
/// 1 or 2 header, read before the 220 greeting; a passive data connection from a trusted
/// address must start with one too, and the client it names must be the control
/// connection's client (a data connection from any other address is checked by its own
/// address, as without a balancer).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyProtocol {
    /// Who may send headers: the balancers (`--trusted-proxy`). At least one. Default: none.
    pub trusted: Vec<Cidr>,
    /// How long a header may take to arrive, whole, from the connection's start; then the
    /// connection is closed. Default: 5 s.
    pub timeout: Duration,
}

impl ProxyProtocol {
    /// Headers accepted from `trusted`, within the default timeout.
    pub fn new(trusted: Vec<Cidr>) -> ProxyProtocol {
        ProxyProtocol {
            trusted,
            timeout: Duration::from_secs(5),
        }
    }

    /// True when `ip` may send headers.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|c| c.contains(ip))
    }

    /// The trusted blocks as `--trusted-proxy` flags would name them, for logs.
    pub fn describe(&self) -> String {
        let v: Vec<String> = self.trusted.iter().map(|c| c.to_string()).collect();
        v.join(", ")
    }
}

/// Why no header was read.
#[derive(Debug)]
pub enum ReadError {
    /// The sender closed the connection before sending a byte (a TCP health check that
    /// only connects).
    Closed,
    /// No whole header within the timeout (`got` bytes of it arrived).
    Timeout {
        /// Bytes received before the time ran out.
        got: usize,
    },
    /// The bytes are not a valid header (or the sender closed the connection in one).
    Invalid(parse::Error),
    /// The socket failed.
    Io(io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Closed => f.write_str("closed before sending a PROXY protocol header"),
            ReadError::Timeout { got: 0 } => f.write_str("no PROXY protocol header in time"),
            ReadError::Timeout { got } => {
                write!(f, "incomplete PROXY protocol header ({got} bytes) in time")
            }
            ReadError::Invalid(e) => write!(f, "invalid PROXY protocol header: {e}"),
            ReadError::Io(e) => write!(f, "reading the PROXY protocol header: {e}"),
        }
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReadError::Invalid(e) => Some(e),
            ReadError::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// Reads a header off `stream` before `deadline`, consuming exactly its bytes: what
/// follows (a TLS handshake, an upload's data) stays in the socket for its reader. Each
/// step peeks at what has arrived, lets the parser say how much of it is header, and takes
/// only that much; at most [`parse::V2_MAX_PAYLOAD`] + 16 bytes are ever looked at.
///
/// # Errors
/// See [`ReadError`].
pub fn read_header(stream: &TcpStream, deadline: Instant) -> Result<Parsed, ReadError> {
    let mut buf = vec![0u8; 16 + parse::V2_MAX_PAYLOAD];
    let mut have = 0;
    let mut room = buf.len();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadError::Timeout { got: have });
        }
        let [readable] = crate::poll::ready([(stream.as_fd(), PollFlags::POLLIN)], Some(left))
            .map_err(ReadError::Io)?;
        if !readable {
            continue;
        }
        let end = have + room.min(buf.len() - have);
        let n = match recv(
            std::os::fd::AsRawFd::as_raw_fd(stream),
            &mut buf[have..end],
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(0) if have == 0 => return Err(ReadError::Closed),
            Ok(0) => return Err(ReadError::Invalid(parse::Error::Truncated)),
            Ok(n) => n,
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(ReadError::Io(e.into())),
        };
        let take = match parse::parse(&buf[..have + n]).map_err(ReadError::Invalid)? {
            parse::Progress::Done(p) => {
                consume(stream, &mut buf[have..p.len])?;
                return Ok(p);
            }
            parse::Progress::Need(more) => {
                room = more;
                n
            }
        };
        consume(stream, &mut buf[have..have + take])?;
        have += take;
    }
}

/// Takes bytes already seen with MSG_PEEK off the socket (they are there: no wait).
fn consume(stream: &TcpStream, into: &mut [u8]) -> Result<(), ReadError> {
    let mut s = stream;
    s.read_exact(into).map_err(ReadError::Io)
}

/// The control connection's arrival through a balancer: its header is read (the sender
/// must be trusted), and the result logged when the connection cannot go on. `None`:
/// closed, as the spec asks of a missing, late or invalid header.
pub(crate) fn control_header(
    stream: &TcpStream,
    peer: SocketAddr,
    pp: &ProxyProtocol,
) -> Option<Parsed> {
    if !pp.trusts(peer.ip()) {
        log::warn!(
            "{peer} refused: not a trusted proxy (PROXY protocol is on; trusted: {})",
            pp.describe()
        );
        return None;
    }
    match read_header(stream, Instant::now() + pp.timeout) {
        Ok(p) => Some(p),
        // A balancer's connect-only health check: not worth a warning every few seconds.
        Err(ReadError::Closed) => {
            log::debug!("{peer} closed before sending a PROXY protocol header");
            None
        }
        Err(e) => {
            log::warn!("{peer} refused: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    #[test]
    fn cidrs_parse_and_match() {
        let c: Cidr = "192.0.2.77/24".parse().unwrap();
        assert_eq!(c.to_string(), "192.0.2.0/24");
        assert!(c.contains("192.0.2.1".parse().unwrap()));
        assert!(c.contains("::ffff:192.0.2.200".parse().unwrap()));
        assert!(!c.contains("192.0.3.1".parse().unwrap()));
        assert!(!c.contains("2001:db8::1".parse().unwrap()));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let v6: Cidr = "[2001:db8::]/32".parse().unwrap();
        assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
        assert!("::/0"
            .parse::<Cidr>()
            .unwrap()
            .contains("::1".parse().unwrap()));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "10.0.0.0/x",
            "host",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (c, s)
    }

    #[test]
    fn a_header_is_read_to_its_last_byte_and_no_further() {
        let src: SocketAddr = "198.51.100.9:40000".parse().unwrap();
        let dst: SocketAddr = "127.0.0.1:21".parse().unwrap();
        for header in [
            parse::encode_v1(src, dst),
            parse::encode_v2(Some((src, dst))),
        ] {
            let (mut c, s) = pair();
            // In two pieces, the second one carrying the protocol's first bytes.
            let (a, b) = header.split_at(header.len() / 2);
            c.write_all(a).unwrap();
            let writer = {
                let b = [b, b"USER x\r\n"].concat();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(20));
                    c.write_all(&b).unwrap();
                    c
                })
            };
            let p = read_header(&s, Instant::now() + Duration::from_secs(10)).unwrap();
            assert_eq!(p.len, header.len());
            assert_eq!(
                p.header,
                Header::Proxied {
                    source: src,
                    destination: dst
                }
            );
            let mut rest = [0u8; 8];
            (&s).read_exact(&mut rest).unwrap();
            assert_eq!(&rest, b"USER x\r\n");
            drop(writer.join());
        }
    }

    #[test]
    fn silence_garbage_and_a_bare_close_are_told_apart() {
        let (c, s) = pair();
        let r = read_header(&s, Instant::now() + Duration::from_millis(50));
        assert!(matches!(r, Err(ReadError::Timeout { got: 0 })), "{r:?}");
        drop(c);
        let r = read_header(&s, Instant::now() + Duration::from_secs(10));
        assert!(matches!(r, Err(ReadError::Closed)), "{r:?}");
        let (mut c, s) = pair();
        c.write_all(b"USER anonymous\r\n").unwrap();
        let r = read_header(&s, Instant::now() + Duration::from_secs(10));
        assert!(matches!(r, Err(ReadError::Invalid(_))), "{r:?}");
        let (mut c, s) = pair();
        c.write_all(b"PROXY TCP4 1.2.3.4").unwrap();
        drop(c);
        let r = read_header(&s, Instant::now() + Duration::from_secs(10));
        assert!(matches!(r, Err(ReadError::Invalid(_))), "{r:?}");
    }
}
