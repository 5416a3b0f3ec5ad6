//! A minimal blocking FTP client (control connection + EPSV/PASV data connections), just
//! enough for the benchmark and with no hidden costs; mirrors the parts of Python's ftplib
//! that pyftpdlib's scripts/ftpbench uses, and its FTP_TLS (explicit FTPS: `AUTH TLS`, `PBSZ 0`,
//! `PROT P`). RFC 959 §4.2 (replies), RFC 2428 §3 (EPSV), RFC 4217 (FTPS).

use std::io::{self, BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;

use crate::tls::{self, Stream};

/// One FTP reply: the three-digit code and the text of its last line.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The reply code, e.g. 226.
    pub code: u16,
    /// The text after the code on the last line.
    pub text: String,
}

impl Reply {
    /// The first digit of the code: 1 preliminary, 2 done, 3 intermediate, 4/5 errors.
    pub fn class(&self) -> u16 {
        self.code / 100
    }
}

/// An error carrying an unexpected reply or a protocol oddity.
pub fn proto_err(msg: String) -> io::Error {
    io::Error::other(msg)
}

/// A logged-in (or about to be) control connection.
pub struct Ftp {
    reader: BufReader<Stream>,
    peer: SocketAddr,
    timeout: Duration,
    /// Set once EPSV was refused, then PASV is used.
    use_pasv: bool,
    /// After `AUTH TLS`: the control connection's TLS configuration (and session cache),
    /// which `PROT P` data connections use to resume its session.
    tls: Option<Arc<ClientConfig>>,
    /// `PROT P` was accepted: data connections are TLS too.
    prot_p: bool,
}

impl Ftp {
    /// Connects, reads the 220 greeting.
    ///
    /// # Errors
    /// Connection failures, timeouts, or a greeting other than 2xx.
    pub fn connect(addr: SocketAddr, timeout: Duration, force_pasv: bool) -> io::Result<Ftp> {
        let (ftp, r) = Ftp::connect_greeted(addr, timeout, force_pasv)?;
        if r.class() != 2 {
            return Err(proto_err(format!("greeting: {} {}", r.code, r.text)));
        }
        Ok(ftp)
    }

    /// Connects and reads the greeting, whatever its code (a `421` of a full server too).
    ///
    /// # Errors
    /// Connection failures, timeouts, a malformed greeting.
    pub fn connect_greeted(
        addr: SocketAddr,
        timeout: Duration,
        force_pasv: bool,
    ) -> io::Result<(Ftp, Reply)> {
        let sock = TcpStream::connect_timeout(&addr, timeout)?;
        sock.set_read_timeout(Some(timeout))?;
        sock.set_write_timeout(Some(timeout))?;
        sock.set_nodelay(true)?;
        let mut ftp = Ftp {
            reader: BufReader::with_capacity(1024, Stream::Plain(sock)),
            peer: addr,
            timeout,
            use_pasv: force_pasv,
            tls: None,
            prot_p: false,
        };
        let r = ftp.read_reply()?;
        Ok((ftp, r))
    }

    /// Connects and, with `tls`, secures the control connection (`AUTH TLS`), logs in, and
    /// protects data connections (`PBSZ 0`, `PROT P`): an FTPS session as Python's
    /// `FTP_TLS.login()` + `prot_p()` makes it.
    ///
    /// # Errors
    /// As [`Ftp::connect`], a refused login, or a refused `AUTH TLS`/`PBSZ`/`PROT`, or a failed handshake.
    pub fn open_with(
        addr: SocketAddr,
        timeout: Duration,
        force_pasv: bool,
        tls: bool,
        user: &str,
        pass: &str,
    ) -> io::Result<Ftp> {
        let mut ftp = Ftp::connect(addr, timeout, force_pasv)?;
        if tls {
            ftp.auth_tls()?;
        }
        ftp.login(user, pass)?;
        if tls {
            ftp.void_cmd("PBSZ 0")?;
            ftp.void_cmd("PROT P")?;
            ftp.prot_p = true;
        }
        Ok(ftp)
    }

    /// `AUTH TLS` (RFC 4217 §4) and the control connection's handshake, with a fresh
    /// configuration and session cache.
    ///
    /// # Errors
    /// A refusal (not 234), or a failed handshake.
    pub fn auth_tls(&mut self) -> io::Result<()> {
        let r = self.cmd("AUTH TLS")?;
        if r.code != 234 {
            return Err(proto_err(format!("AUTH TLS: {} {}", r.code, r.text)));
        }
        if !self.reader.buffer().is_empty() {
            return Err(proto_err("data after the 234 reply".into()));
        }
        let cfg = tls::client_config();
        let sock = self.reader.get_ref().tcp().try_clone()?;
        let mut t = tls::wrap(&cfg, sock)?;
        tls::handshake(&mut t)?;
        // The plain `TcpStream` clone inside the old reader is dropped; the socket stays open
        // through the TLS stream's clone.
        self.reader = BufReader::with_capacity(1024, Stream::Tls(Box::new(t)));
        self.tls = Some(cfg);
        Ok(())
    }

    /// USER then (on 331) PASS.
    ///
    /// # Errors
    /// I/O errors, or a reply that is not 230.
    pub fn login(&mut self, user: &str, pass: &str) -> io::Result<()> {
        let r = self.cmd(&format!("USER {user}"))?;
        let r = if r.code == 331 {
            self.cmd(&format!("PASS {pass}"))?
        } else {
            r
        };
        if r.class() != 2 {
            return Err(proto_err(format!("login refused: {} {}", r.code, r.text)));
        }
        Ok(())
    }

    /// The server's control address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// True after `AUTH TLS`.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The control socket (for poll).
    pub fn sock(&self) -> &TcpStream {
        self.reader.get_ref().tcp()
    }

    /// True when a reply (or part of one) is already buffered, so poll would not report it.
    pub fn has_buffered(&self) -> bool {
        !self.reader.buffer().is_empty()
    }

    /// Sends one command line (CRLF appended).
    ///
    /// # Errors
    /// Write failures.
    pub fn send(&mut self, line: &str) -> io::Result<()> {
        let mut buf = Vec::with_capacity(line.len() + 2);
        buf.extend_from_slice(line.as_bytes());
        buf.extend_from_slice(b"\r\n");
        self.reader.get_mut().write_all(&buf)
    }

    /// Reads one complete reply, multi-line ones included (RFC 959 §4.2: `ddd-` ... `ddd `).
    ///
    /// # Errors
    /// Read failures, timeouts, EOF, malformed lines.
    pub fn read_reply(&mut self) -> io::Result<Reply> {
        let mut line = Vec::with_capacity(128);
        let first = self.read_line(&mut line)?;
        let code = parse_code(&first)?;
        if first.as_bytes().get(3) == Some(&b'-') {
            let end = format!("{code} ");
            loop {
                let l = self.read_line(&mut line)?;
                if l.starts_with(&end) {
                    return Ok(Reply {
                        code,
                        text: l[4..].to_string(),
                    });
                }
            }
        }
        Ok(Reply {
            code,
            text: first.get(4..).unwrap_or("").to_string(),
        })
    }

    fn read_line(&mut self, buf: &mut Vec<u8>) -> io::Result<String> {
        buf.clear();
        let n = self.reader.read_until(b'\n', buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "control connection closed",
            ));
        }
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        Ok(String::from_utf8_lossy(buf).into_owned())
    }

    /// Sends a command and reads its reply.
    ///
    /// # Errors
    /// I/O errors.
    pub fn cmd(&mut self, line: &str) -> io::Result<Reply> {
        self.send(line)?;
        self.read_reply()
    }

    /// Sends a command and requires a 2xx reply.
    ///
    /// # Errors
    /// I/O errors, or any other reply class.
    pub fn void_cmd(&mut self, line: &str) -> io::Result<Reply> {
        let r = self.cmd(line)?;
        if r.class() != 2 {
            return Err(proto_err(format!("{line}: {} {}", r.code, r.text)));
        }
        Ok(r)
    }

    /// Sends EPSV (or PASV) and returns the address to connect the data connection to.
    ///
    /// # Errors
    /// I/O errors or an unparsable reply.
    pub fn passive(&mut self) -> io::Result<SocketAddr> {
        if !self.use_pasv {
            let r = self.cmd("EPSV")?;
            if r.code == 229 {
                return parse_epsv(&r.text, self.peer.ip());
            }
            self.use_pasv = true;
        }
        let r = self.cmd("PASV")?;
        self.passive_reply(r)
    }

    /// Sends EPSV or PASV without waiting (pipelined phases); see [`Ftp::passive_read`].
    ///
    /// # Errors
    /// Write failures.
    pub fn passive_send(&mut self) -> io::Result<()> {
        self.send(if self.use_pasv { "PASV" } else { "EPSV" })
    }

    /// Reads the reply to [`Ftp::passive_send`]; falls back to PASV once if EPSV is refused.
    ///
    /// # Errors
    /// I/O errors or an unparsable reply.
    pub fn passive_read(&mut self) -> io::Result<SocketAddr> {
        let r = self.read_reply()?;
        if !self.use_pasv {
            if r.code == 229 {
                return parse_epsv(&r.text, self.peer.ip());
            }
            self.use_pasv = true;
            let r = self.cmd("PASV")?;
            return self.passive_reply(r);
        }
        self.passive_reply(r)
    }

    fn passive_reply(&self, r: Reply) -> io::Result<SocketAddr> {
        if r.code != 227 {
            return Err(proto_err(format!("PASV: {} {}", r.code, r.text)));
        }
        // Like ftplib: use the control connection's peer address, only the port from the reply
        // (servers behind NAT announce other addresses; on loopback they are the same).
        parse_pasv(&r.text).map(|port| SocketAddr::new(self.peer.ip(), port))
    }

    /// Connects a data connection to a passive address and, under `PROT P`, starts TLS on it
    /// with the control connection's configuration (so it offers to resume that session).
    /// The handshake runs on first read or write.
    ///
    /// # Errors
    /// Connection failures.
    pub fn data_open(&self, addr: SocketAddr) -> io::Result<Stream> {
        let sock = self.data_connect(addr)?;
        match (&self.tls, self.prot_p) {
            (Some(cfg), true) => Ok(Stream::Tls(Box::new(tls::wrap(cfg, sock)?))),
            _ => Ok(Stream::Plain(sock)),
        }
    }

    /// Connects a plain TCP data connection to a passive address.
    ///
    /// # Errors
    /// Connection failures.
    pub fn data_connect(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        let s = TcpStream::connect_timeout(&addr, self.timeout)?;
        s.set_read_timeout(Some(self.timeout))?;
        s.set_write_timeout(Some(self.timeout))?;
        Ok(s)
    }

    /// Like ftplib's `transfercmd`: passive, connect, send `cmd`, require a 1xx reply.
    ///
    /// # Errors
    /// I/O errors, or a refusal (4xx/5xx) of the command.
    pub fn transfer_cmd(&mut self, cmd: &str) -> io::Result<Stream> {
        let addr = self.passive()?;
        let data = self.data_open(addr)?;
        let r = self.cmd(cmd)?;
        if r.class() != 1 {
            return Err(proto_err(format!("{cmd}: {} {}", r.code, r.text)));
        }
        Ok(data)
    }

    /// Reads the final reply of a transfer and requires 2xx.
    ///
    /// # Errors
    /// I/O errors, or a failure reply (426, 451, ...).
    pub fn finish(&mut self) -> io::Result<Reply> {
        let r = self.read_reply()?;
        if r.class() != 2 {
            return Err(proto_err(format!("transfer end: {} {}", r.code, r.text)));
        }
        Ok(r)
    }
}

fn parse_code(line: &str) -> io::Result<u16> {
    let b = line.as_bytes();
    if b.len() >= 3
        && b[..3].iter().all(u8::is_ascii_digit)
        && matches!(b.get(3), None | Some(b' ' | b'-'))
    {
        line[..3]
            .parse()
            .map_err(|_| proto_err(format!("bad reply line {line:?}")))
    } else {
        Err(proto_err(format!("bad reply line {line:?}")))
    }
}

/// RFC 2428 §3: `229 Entering Extended Passive Mode (|||6446|)`.
pub fn parse_epsv(text: &str, ip: IpAddr) -> io::Result<SocketAddr> {
    let bad = || proto_err(format!("bad EPSV reply {text:?}"));
    let start = text.find('(').ok_or_else(bad)?;
    let end = text[start..].find(')').ok_or_else(bad)? + start;
    let inner = &text[start + 1..end];
    let d = inner.chars().next().ok_or_else(bad)?;
    let parts: Vec<&str> = inner.split(d).collect();
    if parts.len() != 5 {
        return Err(bad());
    }
    let port: u16 = parts[3].parse().map_err(|_| bad())?;
    Ok(SocketAddr::new(ip, port))
}

/// RFC 959 §4.1.2 PASV: `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2).`; returns the port,
/// the last two numbers (inside the parentheses when there are any), which also reads the
/// `(::1,p1,p2)` form some servers give over IPv6.
fn parse_pasv(text: &str) -> io::Result<u16> {
    let bad = || proto_err(format!("bad PASV reply {text:?}"));
    let inner = match (text.find('('), text.rfind(')')) {
        (Some(a), Some(b)) if a < b => &text[a + 1..b],
        _ => text,
    };
    let nums: Vec<u16> = inner
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u16>().map_err(|_| bad()))
        .collect::<io::Result<_>>()?;
    match nums[..] {
        [.., p1, p2] if p1 <= 255 && p2 <= 255 => Ok(p1 * 256 + p2),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_passive_replies() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            parse_epsv("Entering extended passive mode (|||6446|).", ip)
                .unwrap()
                .port(),
            6446
        );
        assert!(parse_epsv("nonsense", ip).is_err());
        assert_eq!(
            parse_pasv("Entering passive mode (127,0,0,1,195,80).").unwrap(),
            195 * 256 + 80
        );
        assert!(parse_pasv("Entering passive mode (127,0,0,1,300,80).").is_err());
        assert_eq!(
            parse_pasv("Entering passive mode (::1,156,237).").unwrap(),
            156 * 256 + 237
        );
        assert!(parse_pasv("Entering passive mode ().").is_err());
        assert_eq!(parse_code("226 Transfer complete.").unwrap(), 226);
        assert!(parse_code("22x nope").is_err());
    }
}
