//! What the fuzz targets of scripts/fuzz reach (cargo feature `fuzzing`, off by default,
//! hidden from the docs): the parsers that read client bytes, gathered in one place so that
//! making a module crate-private later keeps the targets building. Each item stays `pub`
//! where it is defined; only the module path here is promised to the fuzz crate.

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

/// Virtual paths and resolution beneath a root.
pub mod paths {
    pub use crate::beneath::{Escape, Resolver, RootDir};
    pub use crate::filesystems::listing::{parse_timeval, AVAILABLE_FACTS};
    pub use crate::filesystems::path::{ftp2fs, ftpnorm};
}

/// The TFTP packet and option parsers (RFC 1350, 2347–2349, 7440).
pub mod tftp {
    pub use crate::tftp::options::{negotiate, Negotiated, OptionLimits};
    pub use crate::tftp::packet::{self, Packet, ParseError};
}

/// A whole session on an in-memory control connection: a byte string of control input in,
/// every reply out ([`run_script`](crate::handlers::memory::run_script)), or a session driven
/// step by step through the client end of a [`pair`](crate::handlers::memory::pair).
pub mod session {
    pub use crate::handlers::memory::{
        loopback_addresses, pair, run_script, MemoryClient, MemoryControl,
    };
}
