//! What the fuzz targets of scripts/fuzz reach (cargo feature `fuzzing`, off by default,
//! hidden from the docs): the parsers that read client bytes, gathered in one place so that
//! making a module crate-private later keeps the targets building. Each item stays `pub`
//! where it is defined; only the module path here is promised to the fuzz crate. What lies
//! above the shared modules (paths beneath a root, a whole session) is gathered the same way
//! in `handlers::fuzzing`, so no part imports from a layer above it.

/// The control connection: line framing, Telnet stripping, verb/argument split, HTTP
/// detection, reply and log escaping, and the argument grammars (RFC 959, 2428, 3659).
pub mod proto {
    pub use crate::proto::{
        bad_new_name, clean_line, echoable, escape_line, find_line, format_epsv, format_pasv,
        from_crlf, is_http_line, log_escape, parse_eprt, parse_epsv, parse_mlst_facts, parse_port,
        parse_rest, parse_type, quote_path, split_command, split_eprt, to_crlf, EprtError, EpsvArg,
        TransferType,
    };
}

/// The PROXY protocol header parser and encoders (HAProxy's proxy-protocol.txt, v1 and v2).
pub mod proxy {
    pub use crate::proxy_protocol::parse::{
        encode_v1, encode_v2, parse, Error, Header, Parsed, Progress, V1_MAX, V2_MAX_PAYLOAD,
        V2_SIGNATURE,
    };
    pub use crate::proxy_protocol::Cidr;
}

/// The TFTP packet and option parsers (RFC 1350, 2347–2349, 7440).
#[cfg(feature = "tftp")]
pub mod tftp {
    pub use crate::tftp::options::{negotiate, Negotiated, OptionLimits};
    pub use crate::tftp::packet::{self, Packet, ParseError};
}
