//! A framework for dynamic TFTP servers in the spirit of Facebook's fbtftp:
//! [`TftpServer`](crate::tftp::TftpServer) (fbtftp `BaseServer`),
//! [`TftpHandler`](crate::tftp::TftpHandler) (`BaseHandler`) and
//! [`ResponseData`](crate::tftp::ResponseData) (`ResponseData`), with the
//! `server_stats_callback` / `session_stats_callback` pair.
//! Protocol: RFC 1350, RFC 2347/2348/2349 options and RFC 7440 windowsize.
//!
//! A UDP acceptor parses each request, applies the per-source rate limit and the session
//! cap, and hands the transfer to a session thread (default) or a forked child; the session
//! answers from its own socket on an ephemeral port (RFC 1350 §4, the server TID).
//!
//! ```no_run
//! use std::sync::Arc;
//! use ftpdlib::tftp::{BytesResponseData, RequestInfo, ResponseData, TftpHandler, TftpServer};
//!
//! struct Hello;
//! impl TftpHandler for Hello {
//!     fn get_response_data(&mut self, req: &RequestInfo) -> std::io::Result<Box<dyn ResponseData>> {
//!         Ok(Box::new(BytesResponseData::new(format!("hello {}\n", req.peer))))
//!     }
//! }
//!
//! let mut server = TftpServer::new(Arc::new(|_req: &RequestInfo| -> Box<dyn TftpHandler> { Box::new(Hello) }));
//! server.port = 6969;
//! server.bind()?.serve_forever()?;
//! # Ok::<(), std::io::Error>(())
//! ```

pub mod cli;
pub mod options;
pub mod packet;
mod ratelimit;
pub mod response;
mod rto;
mod sender;
pub mod server;
mod session;
pub mod stats;
mod transport;
mod upload;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use options::{Negotiated, OptionLimits};
pub use packet::{ErrorCode, Mode, Request};
pub use response::{BytesResponseData, FileResponseData, ResponseData};
pub use server::{BoundTftpServer, Executor, HandlerFactory, ServerHandle, TftpServer};
pub use stats::{Counters, ServerStats, SessionStats};

/// What a handler is told about a request (fbtftp passes `server_addr, peer, path,
/// options` to `get_handler`).
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// The server address the request arrived at.
    pub server_addr: SocketAddr,
    /// The client's address and port.
    pub peer: SocketAddr,
    /// The file name as sent by the client (not yet confined to any root).
    pub path: String,
    /// The transfer mode.
    pub mode: Mode,
    /// The options the client asked for, names lower-cased.
    pub options: Vec<(String, String)>,
    /// True for a write request.
    pub write: bool,
}

/// The per-request object (fbtftp `BaseHandler`): decides what a read request is answered
/// with and receives the session's statistics when it ends.
pub trait TftpHandler: Send {
    /// Returns the data for a read request (fbtftp `get_response_data`).
    ///
    /// # Errors
    /// `NotFound` is sent as ERROR 1, `PermissionDenied` as ERROR 2, anything else as
    /// ERROR 0; the error text itself is only logged.
    fn get_response_data(&mut self, req: &RequestInfo) -> io::Result<Box<dyn ResponseData>>;

    /// Called once at the end of every session, success or not (fbtftp
    /// `session_stats_callback`).
    fn session_stats_callback(&mut self, _stats: &SessionStats) {}
}

/// A session statistics callback shared by the handlers of a server.
pub type SessionStatsCallback = Arc<dyn Fn(&SessionStats) + Send + Sync>;

/// The ready-made handler: serves files below a root (fbtftp's `StaticHandler` example)
/// through [`FileResponseData`], so path confinement is built in.
#[derive(Clone)]
pub struct FileHandler {
    /// The directory served.
    pub root: PathBuf,
    /// Called with each session's statistics, if set.
    pub stats_callback: Option<SessionStatsCallback>,
}

impl FileHandler {
    /// Serves `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FileHandler {
            root: root.into(),
            stats_callback: None,
        }
    }

    /// A factory producing a `FileHandler` for every request.
    pub fn factory(self) -> HandlerFactory {
        Arc::new(move |_req: &RequestInfo| -> Box<dyn TftpHandler> { Box::new(self.clone()) })
    }
}

impl TftpHandler for FileHandler {
    fn get_response_data(&mut self, req: &RequestInfo) -> io::Result<Box<dyn ResponseData>> {
        Ok(Box::new(FileResponseData::open(&self.root, &req.path)?))
    }

    fn session_stats_callback(&mut self, stats: &SessionStats) {
        if let Some(cb) = &self.stats_callback {
            cb(stats);
        }
    }
}
