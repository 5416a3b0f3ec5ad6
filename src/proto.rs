//! Pure protocol pieces: control-line framing (Telnet IAC stripping, RFC 2640 CR NUL),
//! command splitting, and the PORT/EPRT/PASV/EPSV/TYPE/REST argument grammar
//! (RFC 959 §4.1, RFC 1123 §4.1.2, RFC 2428, RFC 3659 §5).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Telnet "Interpret As Command" (RFC 854).
const IAC: u8 = 0xFF;
const WILL: u8 = 0xFB;
const DONT: u8 = 0xFE;

/// Finds the end of the first complete line in `buf`.
///
/// Returns `(line_len, consumed)`: the line without its terminator and the bytes to drop.
/// RFC 959 lines end in CR LF; a bare LF is accepted too, as most servers do.
pub fn find_line(buf: &[u8]) -> Option<(usize, usize)> {
    let nl = buf.iter().position(|&b| b == b'\n')?;
    let len = if nl > 0 && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    Some((len, nl + 1))
}

/// Cleans a raw control line: removes Telnet IAC sequences (ABOR/STAT/QUIT may arrive behind
/// `IAC IP IAC DM`, RFC 959 §4.1.3), undoes `IAC IAC` escaping and RFC 2640 §3.1's CR NUL.
pub fn clean_line(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == IAC {
            match raw.get(i + 1) {
                Some(&IAC) => {
                    out.push(IAC);
                    i += 2;
                }
                Some(&c) if (WILL..=DONT).contains(&c) => i += 3,
                // RFC 854: command codes are 240..=255.
                Some(&c) if c >= 240 => i += 2,
                // A lone IAC before an ordinary byte (`IP IAC abor` as sent out of band
                // by some clients): drop the IAC only, keep the byte.
                Some(_) | None => i += 1,
            }
        } else if b == b'\r' && raw.get(i + 1) == Some(&0) {
            out.push(b'\r');
            i += 2;
        } else {
            out.push(b);
            i += 1;
        }
    }
    out
}

/// Splits a cleaned line into the upper-cased verb and its argument
/// (RFC 959 §5.3: verbs are case-insensitive; one space separates verb and argument).
pub fn split_command(line: &[u8]) -> (String, Vec<u8>) {
    let (verb, arg) = match line.iter().position(|&b| b == b' ') {
        Some(p) => (&line[..p], &line[p + 1..]),
        None => (line, &[][..]),
    };
    let verb = String::from_utf8_lossy(verb).trim().to_ascii_uppercase();
    (verb, arg.to_vec())
}

/// Escapes a name for a reply: a `"` doubled (RFC 959 §7, the 257 reply) and a CR sent as
/// CR NUL (RFC 2640 §3.1).
pub fn quote_path(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len() + 2);
    for &b in path {
        match b {
            b'"' => out.extend_from_slice(b"\"\""),
            b'\r' => out.extend_from_slice(b"\r\0"),
            b'\n' => out.push(0),
            _ => out.push(b),
        }
    }
    out
}

/// Makes text safe inside one reply line. RFC 959 §4.2 ends a reply line at CR LF only and
/// RFC 2640 §3.1 sends a CR inside a path name as CR NUL; a client reading up to LF (most do)
/// would still take a bare LF for the end of the line, so a name could forge replies (a
/// `227` for the client's next PASV). Here a CR is sent as CR NUL (left alone when a NUL
/// already follows, so escaping twice changes nothing) and an LF as NUL, as vsftpd does.
pub fn escape_line(text: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !text.iter().any(|&b| b == b'\r' || b == b'\n') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = Vec::with_capacity(text.len() + 4);
    for (i, &b) in text.iter().enumerate() {
        match b {
            b'\r' if text.get(i + 1) != Some(&0) => out.extend_from_slice(b"\r\0"),
            b'\n' => out.push(0),
            _ => out.push(b),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Client or file-system bytes made fit for one log line: invalid UTF-8 replaced, control
/// characters (CR, LF, ESC, NUL, C1 codes) written as escapes (`\r`, `\u{1b}`), so no
/// name or command can forge or hide a log line.
pub fn log_escape(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    let text = String::from_utf8_lossy(bytes);
    if !text.chars().any(char::is_control) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Client text a reply may quote back (`500 Command "FOO" not understood.`, `504
/// Unsupported type "X".`): only short words of ASCII letters, digits and spaces (RFC 959
/// §5.3.1 verbs are at most four letters). Anything else (markup for a browser that
/// renders the reply, control bytes for a terminal, a long string) is not echoed at all.
pub fn echoable(text: &str) -> Option<&str> {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b == b' ';
    (text.len() <= 16 && text.bytes().all(plain)).then_some(text)
}

/// HTTP request methods (RFC 9110 §9, RFC 5789 PATCH, RFC 4918 WebDAV, the HTTP/2 preface's
/// PRI): none is an FTP command.
const HTTP_METHODS: &[&str] = &[
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "CONNECT",
    "OPTIONS",
    "TRACE",
    "PATCH",
    "PROPFIND",
    "PROPPATCH",
    "MKCOL",
    "COPY",
    "MOVE",
    "LOCK",
    "UNLOCK",
    "PRI",
];

/// True when a control line is the start of an HTTP request rather than an FTP command:
/// its first word (`verb`, as [`split_command`] returns it) is an HTTP method, or the line is
/// header-shaped — a first word of letters, digits and `-` followed by `:` (`Host: x`,
/// `User-Agent: y`). No FTP verb contains a colon, so a real client never matches. This is the
/// browser cross-protocol attack (an HTML form POSTing FTP commands to port 21); vsftpd
/// closes on GET, POST, HEAD, OPTIONS and CONNECT.
pub fn is_http_line(verb: &str) -> bool {
    if HTTP_METHODS.contains(&verb) {
        return true;
    }
    match verb.split_once(':') {
        Some((name, _)) => {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        }
        None => false,
    }
}

/// True when a name to be created holds a byte no name should: CR, LF (either would break
/// the reply lines that show it, RFC 959 §4.2) or NUL. Only the last component counts, the
/// one being created (`MKD dir/new`, a trailing `/` ignored).
pub fn bad_new_name(path: &[u8]) -> bool {
    let trimmed = match path.iter().rposition(|&b| b != b'/') {
        Some(end) => &path[..=end],
        None => return false,
    };
    let name = match trimmed.iter().rposition(|&b| b == b'/') {
        Some(p) => &trimmed[p + 1..],
        None => trimmed,
    };
    name.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0))
}

/// Parses a PORT argument `h1,h2,h3,h4,p1,p2` (RFC 959 §4.1.2); `None` when malformed (the
/// caller answers `501 Invalid PORT format.`).
pub fn parse_port(arg: &str) -> Option<SocketAddr> {
    let nums: Vec<u8> = arg
        .trim()
        .split(',')
        .map(|s| s.trim().parse::<u8>().ok())
        .collect::<Option<_>>()?;
    if nums.len() != 6 {
        return None;
    }
    let ip = Ipv4Addr::new(nums[0], nums[1], nums[2], nums[3]);
    Some(SocketAddr::new(
        IpAddr::V4(ip),
        u16::from(nums[4]) * 256 + u16::from(nums[5]),
    ))
}

/// Why an EPRT argument was refused (RFC 2428 §2).
#[derive(Debug, PartialEq, Eq)]
pub enum EprtError {
    /// Not of the form `<d>proto<d>addr<d>port<d>`, or the address does not parse.
    Syntax,
    /// A protocol number other than 1 or 2.
    UnknownProtocol,
}

/// Parses an EPRT argument `|1|132.235.1.2|6275|` or `|2|::1|5282|` (RFC 2428 §2): the first
/// character is the delimiter.
///
/// # Errors
/// [`EprtError`] says whether the syntax or the protocol number is wrong.
pub fn parse_eprt(arg: &str) -> Result<SocketAddr, EprtError> {
    // Stricter than the server's reading (split_eprt): a printable delimiter, nothing
    // after the last one.
    let d = arg.chars().next().ok_or(EprtError::Syntax)?;
    if !(33..=126).contains(&(d as u32)) || !arg.ends_with(d) {
        return Err(EprtError::Syntax);
    }
    let (af, addr, port) = split_eprt(arg).ok_or(EprtError::Syntax)?;
    let ip: IpAddr = match af {
        "1" => IpAddr::V4(addr.parse::<Ipv4Addr>().map_err(|_| EprtError::Syntax)?),
        "2" => IpAddr::V6(addr.parse::<Ipv6Addr>().map_err(|_| EprtError::Syntax)?),
        _ => return Err(EprtError::UnknownProtocol),
    };
    Ok(SocketAddr::new(ip, port))
}

/// Splits an EPRT argument into its three fields as pyftpdlib's `ftp_EPRT` does: split on the
/// first character, exactly five pieces, the port a decimal `u16` (RFC 2428 §2). The protocol
/// and the address are left as text: the caller answers per protocol (a `2` on an IPv4
/// connection is `522`, an IPv6 address that does not parse is a foreign address). `None` is
/// `501 Invalid EPRT format.`.
pub fn split_eprt(arg: &str) -> Option<(&str, &str, u16)> {
    let d = arg.chars().next()?;
    let parts: Vec<&str> = arg.split(d).collect();
    match parts.as_slice() {
        [_, af, ip, port, _] => Some((af, ip, port.parse().ok()?)),
        _ => None,
    }
}

/// The argument of EPSV (RFC 2428 §3, §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpsvArg {
    /// No argument: the control connection's protocol.
    Any,
    /// `1` (IPv4) or `2` (IPv6).
    Protocol(u8),
    /// `ALL`: from now on only EPSV sets up data connections (PORT, EPRT, PASV refused).
    All,
}

/// Parses an EPSV argument (case-insensitive, blanks around it ignored); `None` for anything
/// else (`501 Unknown network protocol`).
pub fn parse_epsv(arg: &str) -> Option<EpsvArg> {
    match arg.trim().to_ascii_uppercase().as_str() {
        "" => Some(EpsvArg::Any),
        "1" => Some(EpsvArg::Protocol(1)),
        "2" => Some(EpsvArg::Protocol(2)),
        "ALL" => Some(EpsvArg::All),
        _ => None,
    }
}

/// Parses the argument of `OPTS MLST` (RFC 3659 §7.9): facts separated (and ended) by `;`,
/// matched case-insensitively against `available`; unknown facts are dropped, as the RFC
/// asks. Returns the facts to show, in `available`'s order. `None` for a malformed argument
/// (a blank inside, or a non-empty one with no `;`): `501 Invalid argument.`
pub fn parse_mlst_facts(arg: &str, available: &[&str]) -> Option<Vec<String>> {
    let arg = arg.trim();
    if arg.contains(' ') || (!arg.is_empty() && !arg.contains(';')) {
        return None;
    }
    let wanted: Vec<String> = arg
        .split(';')
        .map(|f| f.trim().to_ascii_lowercase())
        .collect();
    Some(
        available
            .iter()
            .filter(|f| wanted.iter().any(|w| w == *f))
            .map(|f| f.to_string())
            .collect(),
    )
}

/// The 227 reply text for PASV (RFC 959 §4.1.2), in the exact shape clients parse.
pub fn format_pasv(ip: Ipv4Addr, port: u16) -> String {
    let o = ip.octets();
    format!(
        "Entering passive mode ({},{},{},{},{},{}).",
        o[0],
        o[1],
        o[2],
        o[3],
        port >> 8,
        port & 0xff
    )
}

/// The 229 reply text for EPSV (RFC 2428 §3).
pub fn format_epsv(port: u16) -> String {
    format!("Entering extended passive mode (|||{port}|).")
}

/// Representation types (RFC 959 §3.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferType {
    /// `TYPE A`: line endings converted to CR LF on the wire.
    Ascii,
    /// `TYPE I` / `TYPE L 8`: bytes as they are.
    Binary,
}

/// Parses a TYPE argument: `A`, `A N`, `I`, `L 8` (and `L7` as pyftpdlib does).
pub fn parse_type(arg: &str) -> Option<TransferType> {
    let t: String = arg
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    match t.as_str() {
        "A" | "AN" | "L7" => Some(TransferType::Ascii),
        "I" | "L8" => Some(TransferType::Binary),
        _ => None,
    }
}

/// Parses a REST marker: a non-negative decimal byte offset (RFC 3659 §5).
pub fn parse_rest(arg: &str) -> Option<u64> {
    let a = arg.trim();
    if a.is_empty() || !a.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    a.parse().ok()
}

/// Maps an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) to plain IPv4 (RFC 4291 §2.5.5.2),
/// so a dual-stack socket never shows a mapped address to the protocol.
pub fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Converts bytes to ASCII-mode wire form: every bare LF becomes CR LF (RFC 959 §3.1.1.1).
/// `last_cr` carries whether the previous chunk ended in CR, so a CR LF split across chunks
/// is not doubled.
pub fn to_crlf(src: &[u8], out: &mut Vec<u8>, last_cr: &mut bool) {
    out.clear();
    for &b in src {
        if b == b'\n' && !*last_cr {
            out.push(b'\r');
        }
        out.push(b);
        *last_cr = b == b'\r';
    }
}

/// Converts ASCII-mode wire data to the local form: CR LF becomes LF. `pending_cr` carries a
/// CR that ended the previous chunk.
pub fn from_crlf(src: &[u8], out: &mut Vec<u8>, pending_cr: &mut bool) {
    out.clear();
    for &b in src {
        if *pending_cr {
            *pending_cr = false;
            if b != b'\n' {
                out.push(b'\r');
            }
        }
        if b == b'\r' {
            *pending_cr = true;
        } else {
            out.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_end_in_crlf_or_lf() {
        assert_eq!(find_line(b"NOOP\r\nX"), Some((4, 6)));
        assert_eq!(find_line(b"NOOP\nX"), Some((4, 5)));
        assert_eq!(find_line(b"NOOP"), None);
    }

    #[test]
    fn telnet_sequences_are_stripped() {
        // Python's ftplib sends ABOR as IAC IP IAC DM "ABOR" (RFC 959 §4.1.3).
        assert_eq!(clean_line(b"\xff\xf4\xff\xf2ABOR"), b"ABOR");
        assert_eq!(clean_line(b"\xff\xfb\x01NOOP"), b"NOOP");
        assert_eq!(clean_line(b"\xf4\xffabor"), b"\xf4abor");
        assert_eq!(clean_line(b"RETR a\xff\xffb"), b"RETR a\xffb");
        // RFC 2640 §3.1: CR inside a name travels as CR NUL.
        assert_eq!(clean_line(b"RETR a\r\0b"), b"RETR a\rb");
    }

    #[test]
    fn commands_are_case_insensitive() {
        assert_eq!(split_command(b"retr a b"), ("RETR".into(), b"a b".to_vec()));
        assert_eq!(split_command(b"pwd"), ("PWD".into(), vec![]));
    }

    #[test]
    fn port_grammar() {
        assert_eq!(
            parse_port("127,0,0,1,4,1"),
            Some("127.0.0.1:1025".parse().unwrap())
        );
        assert!(parse_port("127,0,0,1,4").is_none());
        assert!(parse_port("256,0,0,1,4,1").is_none());
        assert!(parse_port("1,2,3,4,5,x").is_none());
        assert!(parse_port("1,2,3,4,5,-1").is_none());
    }

    #[test]
    fn eprt_grammar_rfc2428() {
        assert_eq!(
            parse_eprt("|1|132.235.1.2|6275|"),
            Ok("132.235.1.2:6275".parse().unwrap())
        );
        assert_eq!(
            parse_eprt("|2|1080::8:800:200C:417A|5282|"),
            Ok("[1080::8:800:200C:417A]:5282".parse().unwrap())
        );
        assert_eq!(
            parse_eprt("!1!1.2.3.4!80!"),
            Ok("1.2.3.4:80".parse().unwrap())
        );
        assert_eq!(
            parse_eprt("|3|1.2.3.4|80|"),
            Err(EprtError::UnknownProtocol)
        );
        assert_eq!(parse_eprt("|1|::1|80|"), Err(EprtError::Syntax));
        assert_eq!(parse_eprt("|1|1.2.3.4|99999|"), Err(EprtError::Syntax));
        assert_eq!(parse_eprt(""), Err(EprtError::Syntax));
        assert_eq!(parse_eprt("|1|1.2.3.4|80"), Err(EprtError::Syntax));
    }

    #[test]
    fn pasv_and_epsv_replies() {
        assert_eq!(
            format_pasv(Ipv4Addr::new(10, 0, 0, 1), 1025),
            "Entering passive mode (10,0,0,1,4,1)."
        );
        assert_eq!(
            format_epsv(2121),
            "Entering extended passive mode (|||2121|)."
        );
    }

    #[test]
    fn type_and_rest() {
        assert_eq!(parse_type("a"), Some(TransferType::Ascii));
        assert_eq!(parse_type("A N"), Some(TransferType::Ascii));
        assert_eq!(parse_type("L 8"), Some(TransferType::Binary));
        assert_eq!(parse_type("i"), Some(TransferType::Binary));
        assert_eq!(parse_type("E"), None);
        assert_eq!(parse_rest("100"), Some(100));
        assert_eq!(parse_rest("-1"), None);
        assert_eq!(parse_rest("1e3"), None);
    }

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(quote_path(b"/a\"b"), b"/a\"\"b");
        assert_eq!(quote_path(b"/a\r\nb"), b"/a\r\0\0b");
    }

    #[test]
    fn reply_lines_never_break() {
        // RFC 2640 §3.1: CR travels as CR NUL; an LF becomes NUL (vsftpd).
        assert_eq!(&*escape_line(b"plain"), b"plain");
        assert_eq!(&*escape_line(b"a\rb"), b"a\r\0b");
        assert_eq!(&*escape_line(b"a\nb"), b"a\0b");
        assert_eq!(
            &*escape_line(b"x\r\n227 Entering passive mode"),
            b"x\r\x00\x00227 Entering passive mode"
        );
        // Already escaped: unchanged.
        assert_eq!(&*escape_line(b"a\r\0b"), b"a\r\0b");
        assert_eq!(&*escape_line(b"end\r"), b"end\r\0");
    }

    #[test]
    fn logs_escape_control_characters() {
        assert_eq!(log_escape(b"bob"), "bob");
        assert_eq!(log_escape(b"a\rb\nc\0"), "a\\rb\\nc\\0");
        assert_eq!(log_escape(b"\x1b[31m"), "\\u{1b}[31m");
        assert_eq!(log_escape("café".as_bytes()), "café");
        assert_eq!(log_escape(b"caf\xe9"), "caf\u{fffd}");
    }

    #[test]
    fn only_plain_words_are_echoed() {
        assert_eq!(echoable("FOO"), Some("FOO"));
        assert_eq!(echoable(""), Some(""));
        assert_eq!(echoable("L 9"), Some("L 9"));
        assert_eq!(echoable("<SVG/ONLOAD=ALERT(1)>"), None);
        assert_eq!(echoable("A\u{1b}"), None);
        assert_eq!(echoable(&"A".repeat(17)), None);
    }

    #[test]
    fn http_requests_are_recognized() {
        for v in [
            "GET", "POST", "HEAD", "OPTIONS", "CONNECT", "PROPFIND", "PRI",
        ] {
            assert!(is_http_line(v), "{v}");
        }
        for v in [
            "HOST:",
            "USER-AGENT:",
            "CONTENT-TYPE:",
            "HOST:EXAMPLE.COM",
            "X-A1:",
        ] {
            assert!(is_http_line(v), "{v}");
        }
        for v in [
            "USER", "PASS", "RETR", "SITE", "", ":", "A B:", "HOST", "GETX", "<A>:",
        ] {
            assert!(!is_http_line(v), "{v}");
        }
    }

    #[test]
    fn new_names_without_line_breaks() {
        assert!(!bad_new_name(b"dir/new"));
        assert!(bad_new_name(b"new\rname"));
        assert!(bad_new_name(b"dir/new\nname/"));
        assert!(bad_new_name(b"a\0b"));
        // An existing directory with a CR in its name may hold new, clean names.
        assert!(!bad_new_name(b"d\rx/new"));
        assert!(!bad_new_name(b"/"));
        assert!(!bad_new_name(b""));
    }

    #[test]
    fn ascii_conversion_across_chunks() {
        let mut out = Vec::new();
        let mut cr = false;
        to_crlf(b"a\nb\r", &mut out, &mut cr);
        assert_eq!(out, b"a\r\nb\r");
        to_crlf(b"\nc\n", &mut out, &mut cr);
        assert_eq!(out, b"\nc\r\n");
        let mut p = false;
        from_crlf(b"a\r\nb\r", &mut out, &mut p);
        assert_eq!(out, b"a\nb");
        from_crlf(b"\nc\rd", &mut out, &mut p);
        assert_eq!(out, b"\nc\rd");
    }

    #[test]
    fn mapped_addresses_unmap() {
        let m: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(unmap(m), "127.0.0.1".parse::<IpAddr>().unwrap());
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(unmap(v6), v6);
    }
}
