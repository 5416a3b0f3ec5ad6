//! TFTP packets: parsing and encoding (fbtftp's `constants.py` + the packet code of
//! `base_server.py`/`base_handler.py`); RFC 1350 §5, RFC 2347 §2 (options, OACK).

use std::fmt;

/// Opcode of a read request (RFC 1350 §5).
pub const OP_RRQ: u16 = 1;
/// Opcode of a write request (RFC 1350 §5).
pub const OP_WRQ: u16 = 2;
/// Opcode of a data packet (RFC 1350 §5).
pub const OP_DATA: u16 = 3;
/// Opcode of an acknowledgement (RFC 1350 §5).
pub const OP_ACK: u16 = 4;
/// Opcode of an error packet (RFC 1350 §5).
pub const OP_ERROR: u16 = 5;
/// Opcode of an option acknowledgement (RFC 2347 §2).
pub const OP_OACK: u16 = 6;

/// The largest request we accept: a datagram bigger than this is not a request
/// (RFC 1350 requests are small; RFC 2347 §2 limits a request to 512 bytes, we allow more
/// for long paths but not a 64 KB file name).
pub const MAX_REQUEST: usize = 1024;

/// TFTP error codes (RFC 1350 Appendix, RFC 2347 §2 for code 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorCode {
    /// 0: not defined, see the message.
    NotDefined = 0,
    /// 1: file not found.
    FileNotFound = 1,
    /// 2: access violation.
    AccessViolation = 2,
    /// 3: disk full or allocation exceeded.
    DiskFull = 3,
    /// 4: illegal TFTP operation.
    IllegalOperation = 4,
    /// 5: unknown transfer ID (a packet from the wrong port).
    UnknownTid = 5,
    /// 6: file already exists.
    FileExists = 6,
    /// 7: no such user.
    NoSuchUser = 7,
    /// 8: option negotiation failed (RFC 2347).
    OptionNegotiation = 8,
}

impl ErrorCode {
    /// The code as it travels on the wire.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// Maps a wire code back; unknown codes become [`ErrorCode::NotDefined`].
    pub fn from_code(code: u16) -> ErrorCode {
        match code {
            1 => ErrorCode::FileNotFound,
            2 => ErrorCode::AccessViolation,
            3 => ErrorCode::DiskFull,
            4 => ErrorCode::IllegalOperation,
            5 => ErrorCode::UnknownTid,
            6 => ErrorCode::FileExists,
            7 => ErrorCode::NoSuchUser,
            8 => ErrorCode::OptionNegotiation,
            _ => ErrorCode::NotDefined,
        }
    }
}

/// Transfer mode of a request (RFC 1350 §5; "mail" is obsolete and refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// "octet": bytes as they are.
    Octet,
    /// "netascii": LF ↔ CR LF, CR ↔ CR NUL on the wire (RFC 764).
    Netascii,
    /// "mail": parsed so it can be refused with a proper error.
    Mail,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Octet => "octet",
            Mode::Netascii => "netascii",
            Mode::Mail => "mail",
        })
    }
}

/// A parsed RRQ or WRQ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// True for a write request (WRQ), false for a read request (RRQ).
    pub write: bool,
    /// The file name as sent (not yet confined to any root).
    pub filename: String,
    /// The transfer mode.
    pub mode: Mode,
    /// Options in the order received, names lower-cased (RFC 2347: case-insensitive).
    pub options: Vec<(String, String)>,
}

/// A parsed TFTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    /// RRQ or WRQ.
    Request(Request),
    /// DATA: block number and payload.
    Data(u16, &'a [u8]),
    /// ACK of a block number.
    Ack(u16),
    /// ERROR: code and message.
    Error(u16, String),
    /// OACK: acknowledged options.
    Oack(Vec<(String, String)>),
}

/// Why a datagram is not a valid packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Shorter than an opcode or than the packet needs.
    TooShort,
    /// A request bigger than [`MAX_REQUEST`].
    TooLong,
    /// An opcode outside 1..=6.
    UnknownOpcode(u16),
    /// A request or error without its NUL terminators, or not UTF-8/ASCII text.
    Malformed(&'static str),
    /// A mode other than octet, netascii or mail.
    UnknownMode(String),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::TooShort => f.write_str("packet too short"),
            ParseError::TooLong => f.write_str("request too long"),
            ParseError::UnknownOpcode(op) => write!(f, "unknown opcode {op}"),
            ParseError::Malformed(what) => write!(f, "malformed packet: {what}"),
            ParseError::UnknownMode(m) => write!(f, "unknown transfer mode {m:?}"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Splits NUL-terminated strings; every string must be terminated (RFC 1350 §5).
fn split_strings(body: &[u8]) -> Result<Vec<String>, ParseError> {
    if body.last() != Some(&0) {
        return Err(ParseError::Malformed("missing NUL terminator"));
    }
    body[..body.len() - 1]
        .split(|b| *b == 0)
        .map(|s| {
            std::str::from_utf8(s)
                .map(str::to_owned)
                .map_err(|_| ParseError::Malformed("not UTF-8"))
        })
        .collect()
}

/// Parses one datagram.
///
/// # Errors
/// A [`ParseError`] saying why the datagram is not a TFTP packet.
pub fn parse(buf: &[u8]) -> Result<Packet<'_>, ParseError> {
    if buf.len() < 2 {
        return Err(ParseError::TooShort);
    }
    let op = u16::from_be_bytes([buf[0], buf[1]]);
    let body = &buf[2..];
    // DATA, ACK and ERROR start with a 16-bit number (block or error code).
    let number = || match body {
        [hi, lo, rest @ ..] => Ok((u16::from_be_bytes([*hi, *lo]), rest)),
        _ => Err(ParseError::TooShort),
    };
    match op {
        OP_RRQ | OP_WRQ if buf.len() > MAX_REQUEST => Err(ParseError::TooLong),
        OP_RRQ | OP_WRQ => parse_request(op == OP_WRQ, body).map(Packet::Request),
        OP_DATA => number().map(|(block, data)| Packet::Data(block, data)),
        OP_ACK => number().map(|(block, _)| Packet::Ack(block)),
        OP_ERROR => {
            let (code, rest) = number()?;
            // Be lenient with the message: a missing NUL or bad UTF-8 still ends the session.
            let msg = rest.split(|b| *b == 0).next().unwrap_or_default();
            Ok(Packet::Error(
                code,
                String::from_utf8_lossy(msg).into_owned(),
            ))
        }
        OP_OACK if body.is_empty() => Ok(Packet::Oack(Vec::new())),
        OP_OACK => Ok(Packet::Oack(option_pairs(&split_strings(body)?))),
        other => Err(ParseError::UnknownOpcode(other)),
    }
}

/// The body of an RRQ or WRQ: file name, mode, options.
fn parse_request(write: bool, body: &[u8]) -> Result<Request, ParseError> {
    let strings = split_strings(body)?;
    let [filename, mode, options @ ..] = strings.as_slice() else {
        return Err(ParseError::Malformed("request without file name and mode"));
    };
    if filename.is_empty() {
        return Err(ParseError::Malformed("empty file name"));
    }
    let mode = match mode.to_ascii_lowercase().as_str() {
        "octet" => Mode::Octet,
        "netascii" => Mode::Netascii,
        "mail" => Mode::Mail,
        other => return Err(ParseError::UnknownMode(other.to_owned())),
    };
    Ok(Request {
        write,
        filename: filename.clone(),
        mode,
        options: option_pairs(options),
    })
}

/// RFC 2347 §2: options come in name/value pairs (names case-insensitive); a trailing odd
/// string is dropped.
fn option_pairs(strings: &[String]) -> Vec<(String, String)> {
    strings
        .chunks_exact(2)
        .map(|kv| (kv[0].to_ascii_lowercase(), kv[1].clone()))
        .collect()
}

/// Encodes an ACK.
pub fn ack(block: u16) -> [u8; 4] {
    let b = block.to_be_bytes();
    [0, OP_ACK as u8, b[0], b[1]]
}

/// Writes a DATA header (4 bytes) into the start of `buf`.
pub fn data_header(buf: &mut [u8], block: u16) {
    let b = block.to_be_bytes();
    buf[..4].copy_from_slice(&[0, OP_DATA as u8, b[0], b[1]]);
}

/// Encodes an ERROR packet; the message is cut at 255 bytes and stripped of NULs.
pub fn error(code: ErrorCode, msg: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + msg.len().min(255));
    out.extend_from_slice(&[0, OP_ERROR as u8]);
    out.extend_from_slice(&code.code().to_be_bytes());
    out.extend(msg.bytes().filter(|b| *b != 0).take(255));
    out.push(0);
    out
}

/// Encodes an OACK with the given name/value pairs (RFC 2347 §2).
pub fn oack(options: &[(String, String)]) -> Vec<u8> {
    let mut out = vec![0, OP_OACK as u8];
    for (k, v) in options {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// Encodes a request (used by tests and benchmark clients).
pub fn request(write: bool, filename: &str, mode: &str, options: &[(&str, &str)]) -> Vec<u8> {
    let mut out = vec![0, if write { OP_WRQ } else { OP_RRQ } as u8];
    for s in [filename, mode]
        .into_iter()
        .chain(options.iter().flat_map(|(k, v)| [*k, *v]))
    {
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rrq_with_options() {
        let p = request(
            false,
            "a/b.bin",
            "OCTET",
            &[("BlkSize", "1428"), ("tsize", "0")],
        );
        let Packet::Request(r) = parse(&p).expect("valid") else {
            panic!("not a request")
        };
        assert!(!r.write);
        assert_eq!(r.filename, "a/b.bin");
        assert_eq!(r.mode, Mode::Octet);
        assert_eq!(
            r.options,
            vec![
                ("blksize".to_owned(), "1428".to_owned()),
                ("tsize".to_owned(), "0".to_owned())
            ]
        );
    }

    #[test]
    fn parses_wrq_netascii_and_mail() {
        let Ok(Packet::Request(r)) = parse(&request(true, "x", "NetAscii", &[])) else {
            panic!("bad parse")
        };
        assert!(r.write);
        assert_eq!(r.mode, Mode::Netascii);
        let Ok(Packet::Request(r)) = parse(&request(false, "x", "mail", &[])) else {
            panic!("bad parse")
        };
        assert_eq!(r.mode, Mode::Mail);
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(parse(&[]), Err(ParseError::TooShort));
        assert_eq!(parse(&[0]), Err(ParseError::TooShort));
        assert_eq!(parse(&[0, 9, 1, 2]), Err(ParseError::UnknownOpcode(9)));
        // No NUL, no mode, an empty file name.
        for bad in [
            &b"\x00\x01abc"[..],
            b"\x00\x01abc\x00",
            b"\x00\x01\x00octet\x00",
        ] {
            assert!(
                matches!(parse(bad), Err(ParseError::Malformed(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse(b"\x00\x01f\x00bin\x00"),
            Err(ParseError::UnknownMode(_))
        ));
        let mut long = vec![0, 1];
        long.extend(vec![b'a'; 65_000]);
        long.extend_from_slice(b"\x00octet\x00");
        assert_eq!(parse(&long), Err(ParseError::TooLong));
        assert_eq!(parse(&[0, 4, 1]), Err(ParseError::TooShort));
    }

    #[test]
    fn odd_option_string_is_dropped() {
        let Ok(Packet::Request(r)) = parse(b"\x00\x01f\x00octet\x00blksize\x00") else {
            panic!("bad parse")
        };
        assert!(r.options.is_empty());
    }

    #[test]
    fn encodes_and_parses_back() {
        assert_eq!(parse(&ack(65535)), Ok(Packet::Ack(65535)));
        let e = error(ErrorCode::UnknownTid, "who\0 are you");
        assert_eq!(parse(&e), Ok(Packet::Error(5, "who are you".into())));
        let mut d = vec![0u8; 7];
        data_header(&mut d, 258);
        d[4..].copy_from_slice(b"abc");
        assert_eq!(parse(&d), Ok(Packet::Data(258, &b"abc"[..])));
        let o = oack(&[("blksize".into(), "8".into())]);
        assert_eq!(
            parse(&o),
            Ok(Packet::Oack(vec![("blksize".into(), "8".into())]))
        );
        assert_eq!(ErrorCode::from_code(8), ErrorCode::OptionNegotiation);
        assert_eq!(ErrorCode::from_code(99), ErrorCode::NotDefined);
    }
}
