//! The PROXY protocol header, versions 1 (text) and 2 (binary), as HAProxy's
//! `proxy-protocol.txt` defines them: a pure parser over the bytes received so far (it
//! never panics and never asks for more than the header itself, so the bytes behind it are
//! left to the protocol it carries), and the encoders a sender (a test, a proxy written
//! with this crate) uses.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The 12 bytes every version 2 header starts with (proxy-protocol.txt §2.2). They hold
/// `\r\n\r\n`, a NUL and `QUIT\n`, so a server that does not expect the header ends the
/// connection instead of running what follows.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The longest version 1 header, CRLF included (proxy-protocol.txt §2.1: "a receiver
/// may reject an incomplete line which does not contain the CRLF sequence in the first 107
/// characters").
pub const V1_MAX: usize = 107;

/// The most address and TLV bytes accepted after the 16 fixed bytes of a version 2 header.
/// The addresses take at most 216 (AF_UNIX); HAProxy adds TLVs (ALPN, SNI, TLS details, a
/// unique id) only when told to, and they stay well under this. A larger length is refused
/// before anything is read, so a sender cannot make the server wait for 64 KiB.
pub const V2_MAX_PAYLOAD: usize = 1024;

/// What a header says about the connection it precedes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// A relayed connection: `source` is the client, `destination` the address it
    /// connected to (the proxy's).
    Proxied {
        /// The client's address and port.
        source: SocketAddr,
        /// The address and port the client connected to.
        destination: SocketAddr,
    },
    /// No client to name: version 2's `LOCAL` command (the proxy's own connection, e.g. a
    /// health check), version 1's `UNKNOWN`, or an address family this receiver does not
    /// use (UNIX sockets, datagrams, `AF_UNSPEC`). The spec says to use the connection's
    /// own addresses then.
    Local,
}

/// A complete header: what it says, its version (1 or 2) and how many bytes it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    /// What the header says.
    pub header: Header,
    /// 1 (text) or 2 (binary).
    pub version: u8,
    /// Bytes of the header; the connection's own data starts after them.
    pub len: usize,
}

/// Why bytes are not a PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Neither signature: the peer did not start with a PROXY header.
    NotProxy,
    /// A version 1 line without its CRLF within [`V1_MAX`] bytes.
    TooLong,
    /// A version 1 line that does not follow the grammar (its field).
    BadV1(&'static str),
    /// A version 2 header with a version other than 2 or a command other than LOCAL/PROXY.
    BadVersion,
    /// A version 2 header with an address family/protocol byte the spec does not define.
    BadFamily,
    /// A version 2 length shorter than its addresses, or longer than [`V2_MAX_PAYLOAD`].
    BadLength,
    /// The connection ended inside the header.
    Truncated,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotProxy => f.write_str("not a PROXY protocol header"),
            Error::TooLong => write!(f, "version 1 header without CRLF in {V1_MAX} bytes"),
            Error::BadV1(what) => write!(f, "malformed version 1 header ({what})"),
            Error::BadVersion => f.write_str("version 2 header with a bad version or command"),
            Error::BadFamily => f.write_str("version 2 header with a bad address family"),
            Error::BadLength => f.write_str("version 2 header with a bad length"),
            Error::Truncated => f.write_str("connection closed inside the header"),
        }
    }
}

impl std::error::Error for Error {}

/// What the bytes received so far make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A whole header.
    Done(Parsed),
    /// A valid beginning, and every byte so far belongs to the header: at most this many
    /// more do (the most a reader should look at, never a count to wait for).
    Need(usize),
}

/// Parses the start of a connection. `Need(n)`: what was given is all header, and up to
/// `n` more bytes may be: call again with more; `Done`: the header and its length (the
/// connection's own bytes start there); `Err`: not a valid header (the connection must be
/// closed: proxy-protocol.txt §2 forbids guessing).
///
/// # Errors
/// See [`Error`].
pub fn parse(buf: &[u8]) -> Result<Progress, Error> {
    const V1_PREFIX: &[u8] = b"PROXY ";
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        return parse_v2(buf);
    }
    let n = buf.len().min(V1_PREFIX.len());
    if buf[..n] == V1_PREFIX[..n] {
        return parse_v1(buf);
    }
    Err(Error::NotProxy)
}

/// Version 1: `PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n` or `PROXY UNKNOWN…\r\n`, one space
/// between fields (proxy-protocol.txt §2.1).
fn parse_v1(buf: &[u8]) -> Result<Progress, Error> {
    let Some(lf) = buf.iter().take(V1_MAX).position(|&b| b == b'\n') else {
        if buf.len() >= V1_MAX {
            return Err(Error::TooLong);
        }
        return Ok(Progress::Need(V1_MAX - buf.len()));
    };
    if lf == 0 || buf[lf - 1] != b'\r' {
        return Err(Error::BadV1("line not ended by CRLF"));
    }
    let line = std::str::from_utf8(&buf[..lf - 1]).map_err(|_| Error::BadV1("not ASCII"))?;
    let mut f = line.split(' ');
    f.next(); // "PROXY"
    let header = match f.next() {
        // The rest of an UNKNOWN line is to be ignored (§2.1).
        Some("UNKNOWN") => Header::Local,
        Some(proto @ ("TCP4" | "TCP6")) => {
            let v6 = proto == "TCP6";
            let src = v1_ip(f.next(), v6)?;
            let dst = v1_ip(f.next(), v6)?;
            let sport = v1_port(f.next())?;
            let dport = v1_port(f.next())?;
            if f.next().is_some() {
                return Err(Error::BadV1("extra fields"));
            }
            Header::Proxied {
                source: SocketAddr::new(src, sport),
                destination: SocketAddr::new(dst, dport),
            }
        }
        _ => return Err(Error::BadV1("protocol")),
    };
    Ok(Progress::Done(Parsed {
        header,
        version: 1,
        len: lf + 1,
    }))
}

fn v1_ip(field: Option<&str>, v6: bool) -> Result<IpAddr, Error> {
    let s = field.ok_or(Error::BadV1("missing address"))?;
    let ip = if v6 {
        s.parse::<Ipv6Addr>().map(IpAddr::V6)
    } else {
        s.parse::<Ipv4Addr>().map(IpAddr::V4)
    };
    ip.map_err(|_| Error::BadV1("address"))
}

/// A port: 1 to 5 decimal digits without a leading zero (or `0` itself), up to 65535.
fn v1_port(field: Option<&str>) -> Result<u16, Error> {
    let s = field.ok_or(Error::BadV1("missing port"))?;
    let digits = !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits || (s.len() > 1 && s.starts_with('0')) {
        return Err(Error::BadV1("port"));
    }
    s.parse().map_err(|_| Error::BadV1("port"))
}

/// Version 2: the signature, version/command, family/protocol, a big-endian length, then
/// the addresses and TLVs (proxy-protocol.txt §2.2). TLVs are skipped: ftpdlib uses none.
fn parse_v2(buf: &[u8]) -> Result<Progress, Error> {
    let Some(fixed) = buf.get(12..16) else {
        return Ok(Progress::Need(16 + V2_MAX_PAYLOAD - buf.len()));
    };
    let (ver_cmd, fam) = (fixed[0], fixed[1]);
    let len = usize::from(u16::from_be_bytes([fixed[2], fixed[3]]));
    // Version 2 (high nibble); command LOCAL (0) or PROXY (1): others must be refused.
    if ver_cmd >> 4 != 2 || ver_cmd & 0x0f > 1 {
        return Err(Error::BadVersion);
    }
    let addr_len = match fam {
        0x00 => 0,          // UNSPEC
        0x11 | 0x12 => 12,  // TCP or UDP over IPv4
        0x21 | 0x22 => 36,  // TCP or UDP over IPv6
        0x31 | 0x32 => 216, // UNIX stream or datagram
        _ => return Err(Error::BadFamily),
    };
    if len < addr_len || len > V2_MAX_PAYLOAD {
        return Err(Error::BadLength);
    }
    let total = 16 + len;
    if buf.len() < total {
        return Ok(Progress::Need(total - buf.len()));
    }
    let a = &buf[16..16 + addr_len];
    // LOCAL: the addresses are to be ignored; UDP and UNIX sockets fall back to the
    // connection's own addresses, as the spec allows a receiver that does not use them.
    let header = match (ver_cmd & 0x0f, fam) {
        (1, 0x11) => {
            let ip = |o: usize| IpAddr::from([a[o], a[o + 1], a[o + 2], a[o + 3]]);
            proxied(ip(0), ip(4), &a[8..12])
        }
        (1, 0x21) => {
            let ip = |o: usize| {
                let mut b = [0u8; 16];
                b.copy_from_slice(&a[o..o + 16]);
                IpAddr::from(b)
            };
            proxied(ip(0), ip(16), &a[32..36])
        }
        _ => Header::Local,
    };
    Ok(Progress::Done(Parsed {
        header,
        version: 2,
        len: total,
    }))
}

fn proxied(src: IpAddr, dst: IpAddr, ports: &[u8]) -> Header {
    Header::Proxied {
        source: SocketAddr::new(src, u16::from_be_bytes([ports[0], ports[1]])),
        destination: SocketAddr::new(dst, u16::from_be_bytes([ports[2], ports[3]])),
    }
}

/// The version 1 line for a connection from `source` to `destination`: `TCP4` when both
/// are IPv4, `TCP6` when both are IPv6, `UNKNOWN` when they differ.
pub fn encode_v1(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let proto = match (source.ip(), destination.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => "TCP4",
        (IpAddr::V6(_), IpAddr::V6(_)) => "TCP6",
        _ => return b"PROXY UNKNOWN\r\n".to_vec(),
    };
    format!(
        "PROXY {proto} {} {} {} {}\r\n",
        source.ip(),
        destination.ip(),
        source.port(),
        destination.port()
    )
    .into_bytes()
}

/// The version 2 header for a connection from `source` to `destination` (PROXY command,
/// TCP), or the LOCAL command with no addresses for `None` (what HAProxy sends on its
/// health checks). Addresses of different families are sent as IPv6 (IPv4-mapped).
pub fn encode_v2(addrs: Option<(SocketAddr, SocketAddr)>) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    let Some((src, dst)) = addrs else {
        out.extend_from_slice(&[0x20, 0x00, 0, 0]);
        return out;
    };
    let body: Vec<u8> = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(0x21);
            out.push(0x11);
            [s.octets().as_slice(), d.octets().as_slice()].concat()
        }
        (s, d) => {
            out.push(0x21);
            out.push(0x21);
            [v6(s).octets().as_slice(), v6(d).octets().as_slice()].concat()
        }
    };
    let len = body.len() + 4;
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Feeds `bytes` in chunks of every size from 1 to 7, as a socket might deliver them:
    /// the header (the same every time), which never claims bytes it was not given.
    fn feed(bytes: &[u8]) -> Result<Parsed, Error> {
        let mut first = None;
        for chunk in 1..=7 {
            let mut have = 0;
            let r = loop {
                match parse(&bytes[..have]) {
                    Ok(Progress::Done(p)) => {
                        assert!(p.len <= have);
                        break Ok(p);
                    }
                    Ok(Progress::Need(n)) => {
                        assert!(n > 0);
                        assert!(have < bytes.len(), "incomplete: {bytes:?}");
                        have = (have + chunk.min(n)).min(bytes.len());
                    }
                    Err(e) => break Err(e),
                }
            };
            assert!(first.is_none_or(|f| f == r), "chunking changed the result");
            first = Some(r);
        }
        first.unwrap()
    }

    #[test]
    fn v1_tcp4_tcp6_and_unknown() {
        let line = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 21\r\nUSER x\r\n";
        let p = feed(line).unwrap();
        assert_eq!(p.len, line.len() - 8);
        assert_eq!(p.version, 1);
        assert_eq!(
            p.header,
            Header::Proxied {
                source: sa("192.0.2.7:56324"),
                destination: sa("198.51.100.1:21")
            }
        );
        let p = feed(b"PROXY TCP6 2001:db8::7 ::1 65535 0\r\n").unwrap();
        assert_eq!(
            p.header,
            Header::Proxied {
                source: sa("[2001:db8::7]:65535"),
                destination: sa("[::1]:0")
            }
        );
        // proxy-protocol.txt §2.1: everything after UNKNOWN up to the CRLF is ignored.
        let p = feed(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n").unwrap();
        assert_eq!(p.header, Header::Local);
        assert_eq!(feed(b"PROXY UNKNOWN\r\n").unwrap().len, 15);
    }

    #[test]
    fn v1_refusals() {
        let bad: &[&[u8]] = &[
            b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 21\n", // no CR
            b"PROXY TCP4 192.0.2.7 198.51.100.1 56324\r\n",  // missing port
            b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 21 9\r\n",
            b"PROXY TCP4 192.0.2.7  198.51.100.1 56324 21\r\n", // two spaces
            b"PROXY TCP4 2001:db8::7 198.51.100.1 1 2\r\n",     // family mismatch
            b"PROXY TCP6 192.0.2.7 198.51.100.1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 65536 21\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 0021 21\r\n", // leading zero
            b"PROXY TCP4 192.0.2.7 198.51.100.1 +1 21\r\n",
            b"PROXY TCP4 300.0.2.7 198.51.100.1 1 21\r\n",
            b"PROXY UDP4 192.0.2.7 198.51.100.1 1 21\r\n",
            b"PROXY \xff\r\n",
        ];
        for b in bad {
            assert!(matches!(feed(b), Err(Error::BadV1(_))), "{:?}", b);
        }
        let long = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 200]].concat();
        assert_eq!(feed(&long), Err(Error::TooLong));
        assert_eq!(parse(b"USER anonymous\r\n"), Err(Error::NotProxy));
        assert_eq!(parse(b"PROXX"), Err(Error::NotProxy));
        assert_eq!(parse(b"PROXY\r\n"), Err(Error::NotProxy));
        assert_eq!(parse(b""), Ok(Progress::Need(16 + V2_MAX_PAYLOAD)));
        assert_eq!(parse(b"PRO"), Ok(Progress::Need(V1_MAX - 3)));
    }

    #[test]
    fn v2_proxy_local_and_fallbacks() {
        let (s, d) = (sa("192.0.2.7:40000"), sa("127.0.0.1:2121"));
        let mut h = encode_v2(Some((s, d)));
        let len = h.len();
        h.extend_from_slice(b"USER x\r\n");
        let p = feed(&h).unwrap();
        assert_eq!((p.version, p.len), (2, len));
        assert_eq!(
            p.header,
            Header::Proxied {
                source: s,
                destination: d
            }
        );
        let (s6, d6) = (sa("[2001:db8::7]:1"), sa("[2001:db8::1]:21"));
        assert_eq!(
            feed(&encode_v2(Some((s6, d6)))).unwrap().header,
            Header::Proxied {
                source: s6,
                destination: d6
            }
        );
        let local = encode_v2(None);
        assert_eq!(feed(&local).unwrap(), {
            Parsed {
                header: Header::Local,
                version: 2,
                len: 16,
            }
        });
        // LOCAL with addresses: they are ignored. UDP and UNIX fall back to Local too.
        let mut h = encode_v2(Some((s, d)));
        h[12] = 0x20;
        assert_eq!(feed(&h).unwrap().header, Header::Local);
        let mut unix = V2_SIGNATURE.to_vec();
        unix.extend_from_slice(&[0x21, 0x31, 0, 216]);
        unix.extend_from_slice(&[0; 216]);
        assert_eq!(feed(&unix).unwrap().header, Header::Local);
        // TLVs after the addresses are skipped with the header.
        let mut tlv = encode_v2(Some((s, d)));
        tlv[15] += 7;
        tlv.extend_from_slice(&[0x01, 0x00, 0x04, b'f', b't', b'p', b'!']);
        assert_eq!(feed(&tlv).unwrap().len, tlv.len());
    }

    #[test]
    fn v2_refusals() {
        let good = encode_v2(Some((sa("192.0.2.7:1"), sa("192.0.2.8:2"))));
        let with = |i: usize, b: u8| {
            let mut h = good.clone();
            h[i] = b;
            h
        };
        assert_eq!(feed(&with(12, 0x11)), Err(Error::BadVersion));
        assert_eq!(feed(&with(12, 0x22)), Err(Error::BadVersion));
        assert_eq!(feed(&with(13, 0x41)), Err(Error::BadFamily));
        assert_eq!(feed(&with(13, 0x13)), Err(Error::BadFamily));
        assert_eq!(feed(&with(15, 11)), Err(Error::BadLength));
        let mut huge = good.clone();
        huge[14] = 0xff;
        assert_eq!(
            parse(&huge),
            Err(Error::BadLength),
            "refused before reading"
        );
        assert_eq!(
            parse(&good[..7]),
            Ok(Progress::Need(16 + V2_MAX_PAYLOAD - 7))
        );
        assert_eq!(parse(&good[..20]), Ok(Progress::Need(good.len() - 20)));
        assert_eq!(parse(b"\r\n\r\n\0\r\nQUIX"), Err(Error::NotProxy));
    }

    #[test]
    fn encoders_round_trip() {
        let cases = [
            ("10.1.2.3:4", "10.5.6.7:8"),
            ("[::1]:4", "[fe80::1]:8"),
            ("10.1.2.3:4", "[::1]:8"),
        ];
        for (s, d) in cases {
            let (s, d) = (sa(s), sa(d));
            let v1 = feed(&encode_v1(s, d)).unwrap().header;
            if s.is_ipv4() == d.is_ipv4() {
                let want = Header::Proxied {
                    source: s,
                    destination: d,
                };
                assert_eq!(v1, want);
            } else {
                assert_eq!(v1, Header::Local);
            }
            let Header::Proxied { source, .. } = feed(&encode_v2(Some((s, d)))).unwrap().header
            else {
                panic!("v2 names the client")
            };
            assert_eq!(crate::proto::unmap(source.ip()), s.ip());
        }
    }
}
