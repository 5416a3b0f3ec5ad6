//! What the fuzz targets of scripts/fuzz reach above the shared modules (cargo feature
//! `fuzzing`, hidden from the docs): virtual paths and resolution beneath a root, and a whole
//! session on an in-memory control connection. The parsers below them are in
//! `crate::fuzzing`.

/// Virtual paths and resolution beneath a root.
pub mod paths {
    pub use crate::beneath::{Escape, Resolver, RootDir};
    pub use crate::filesystems::listing::{parse_timeval, AVAILABLE_FACTS};
    pub use crate::filesystems::path::{ftp2fs, ftpnorm};
}

/// A whole session on an in-memory control connection: a byte string of control input in,
/// every reply out ([`run_script`](crate::handlers::memory::run_script)), or a session driven
/// step by step through the client end of a [`pair`](crate::handlers::memory::pair).
pub mod session {
    pub use crate::handlers::memory::{
        loopback_addresses, pair, run_script, MemoryClient, MemoryControl,
    };
}
