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
//!
//! # Protocol
//!
//! - Each session answers from the address the request was sent to, also when the server is
//!   bound to a wildcard address (IP_PKTINFO / IPV6_RECVPKTINFO), so multi-homed boot servers
//!   work; IPv4 clients of a dual-stack `::` socket are served over IPv4.
//! - RFC 1350 read requests in `octet` and `netascii` (LF ↔ CR LF, CR ↔ CR NUL); `mail` is
//!   refused with ERROR 4. Block numbers roll over 65535 → 0.
//! - A duplicate or stale ACK never triggers a DATA packet (Sorcerer's Apprentice, RFC 1123
//!   §4.2.3.1); ACKs for blocks not yet sent are ignored; a packet from another address or
//!   port gets ERROR 5 and the real session continues (RFC 1350 §4). A retransmitted request
//!   while its session runs is ignored.
//! - RFC 2347 OACK; RFC 2348 `blksize` 8–65464, clamped to `max_blksize` and, for IPv4, to the
//!   route MTU (`IP_MTU`); RFC 2349 `timeout` 1–10 s (echoed as sent, as the RFC requires; a
//!   larger value is left out of the OACK, see below) and `tsize` (left out for netascii and
//!   for empty files — curl rejects `tsize 0`). Invalid values and unknown options are
//!   ignored and never echoed.
//! - RFC 7440 `windowsize` up to `limits.max_windowsize` (64), and never more than one default
//!   receive buffer holds (below). Windows leave in one system call (UDP GSO `UDP_SEGMENT`
//!   where the kernel has it, else `sendmmsg`); the next window is read from the file while the
//!   current one is in flight.
//! - Write requests (beyond fbtftp) only with `upload_dir` / `--allow-write DIR`: written to a
//!   hidden temporary file and linked to its name when complete (never replaces an existing
//!   file: ERROR 6), capped by `max_upload` / `--max-upload` (ERROR 3, also up front from the
//!   client's `tsize`); a failed upload leaves nothing behind. Names with a control character
//!   (CR, LF, ESC…; a NUL cannot travel in a request) are refused with ERROR 2, and file names
//!   are escaped in log lines.
//! - Bad datagrams (empty, 1 byte, DATA/ACK/ERROR on the server port) get silence; malformed
//!   requests (no NULs, unknown opcode or mode, a 64 KB file name) get a rate-limited ERROR 4.
//!
//! # Loss, timeouts and windows
//!
//! TFTP runs over UDP on networks that drop, duplicate and reorder datagrams, and PXE and
//! firmware clients depend on a server that recovers at once.
//!
//! - **Recovery as RFC 7440 §4 says.** An ACK inside the window means the receiver missed the
//!   next block and dropped what followed: a new window starts after the acknowledged block,
//!   at once — after a wait of a quarter of the round trip (RACK's reordering window,
//!   RFC 8985 §6.2) for a later ACK that covers the window, because some receivers (atftp)
//!   answer a duplicated block with that block's number while the ACK of the whole window is
//!   right behind. A timeout starts the window again after the last ACK. The loss of the first
//!   block of a window (whose gap ACK repeats the ACK that opened the window, indistinguishable
//!   from a duplicate) and of a window's last block are recovered by the timeout, which is
//!   therefore short.
//! - **A retransmission timeout from measured round trips** (`rto.rs`, RFC 6298): SRTT and
//!   RTTVAR from ACKs of blocks sent once (Karn's rule; also the ACK of the OACK, and on the
//!   receiving side the first block after an ACK), timeout SRTT + 4 × RTTVAR, at least
//!   `min_timeout` (100 ms, `--min-timeout`), doubled at each expiry until the next valid
//!   sample, never above `limits.max_timeout` (10 s, `--max-timeout`) nor the client's RFC 2349
//!   `timeout`. Before the first round trip it is `timeout` (1 s, RFC 6298 §2.1; `--timeout`).
//!   After `retries` (5) expiries in a row the session gives up.
//! - **What a slow PXE client sees.** The first packet at once, once more after 1 s if nothing
//!   came back (within the budget below), and the session gone 2 s later. Once it answers, its measured round trip sets
//!   the timeout: a client that takes 400 ms to acknowledge each block gets a 1.2 s timeout
//!   after the first block, settling near 450 ms; on a LAN (sub-millisecond round trips) the
//!   timeout sits at the 100 ms floor. A client that suddenly slows down (a flash write) gets
//!   one early retransmission, which it acknowledges again as a duplicate (ignored), and the
//!   timeout doubles until a block is acknowledged that was sent once. A client that asked for
//!   `timeout 1` never waits longer than 1 s for a retransmission.
//! - **Windows that fit the receiver.** A window leaves in one burst, faster than any client
//!   reads it, so it must fit the client's socket buffer — or its tail is dropped, and the same
//!   window sent again loses it again (this is how `blksize 65464 windowsize 16` used to stall).
//!   Linux charges a queued datagram its `skb->truesize`, not its payload: measured on loopback,
//!   1,280 bytes for a 516-byte datagram, 2,304 for 1,472, 16,640 for 8,196 and 66,300 for
//!   65,468 (`options::receive_charge`). The default receive buffer is 212,992 bytes
//!   (`net.core.rmem_default`); `limits.max_window_bytes` (200,000) bounds what a window
//!   costs, so `windowsize` is negotiated down to 3 at blksize 65464, 12 at 8192, and stays at
//!   the 64 maximum at 1468 and 512. The server's own buffer is never the limit.
//! - **A burst that adapts.** The window the receiver counts never shrinks (it acknowledges
//!   every `windowsize` blocks), but how many of its blocks leave back to back does: the whole
//!   window while nothing is lost, halved at each loss, one block more after each window
//!   delivered without loss, the rest following after pauses of the time the receiver needs to
//!   drain a burst (AIMD, the congestion guidelines of RFC 5405 §3.1 that RFC 7440 §6 points to).
//! - **The receiving side (uploads)** acknowledges each window and the last block, sends one
//!   ACK per gap, answers a duplicate at or before its latest ACK with that ACK once (the
//!   sender missed it), and stays silent for a duplicate that crossed a new window or that
//!   arrives within two round trips of its ACK (the network's copy: answering it would feed a
//!   sender's Sorcerer's Apprentice — atftp's client has that bug unless run with
//!   `--prevent-sas`). The file is committed only when the last block is in; after the final
//!   ACK the session stays as long as the client keeps resending the last block (1 s after
//!   each).
//!
//! The tests drive every pattern of a lossy relay of their own (`tests/tftp_common/relay.rs`:
//! chosen DATA blocks or ACKs dropped once, duplicates, reordering within a window, the last
//! block of a window dropped, seeded random loss, bursts) × blksize 512 / 1468 / 65464 ×
//! windowsize 1 / 8 / 16, downloads and uploads, with a client of their own and with atftp
//! (`tests/tftp_loss.rs`, about 15 s in all, four cases at a time; each case must finish
//! within 8 s).
//!
//! # Reflection and exhaustion
//!
//! TFTP answers any source address, so a spoofed request turns a server into a reflector, and
//! one source can try to take every session slot.
//!
//! - **At most two packets to a peer that never answered.** Until the peer has sent anything
//!   from its port (the ACK of DATA 1 or of the OACK, or DATA 1 of an upload), its first
//!   packet goes once and once more, then the session ends.
//! - **A byte budget per address** (`ratelimit.rs`, QUIC's anti-amplification idea, RFC 9000
//!   §8.1): each request earns its source address 8 × its size; the retransmission of a first
//!   packet and every ERROR the acceptor sends are paid from it; credit and charges halve every
//!   second; an address that answers is forgiven. A first packet always goes (DATA 1 of a
//!   request without options can be 50 times its size). So a 10-byte spoofed request without
//!   options gets one 516-byte DATA 1, and one with options two OACKs of about its own size; a
//!   real client without options whose DATA 1 is lost asks again once the session has given
//!   up (after 3 s).
//! - **`max_sessions_per_ip`** (8, `--max-sessions-per-ip`, 0 = no limit): one address cannot
//!   take every one of the `max_sessions` (512) slots; more requests from it get ERROR 0.
//!   Eight covers a machine that boots with a couple of parallel downloads; a NAT or relay in
//!   front of many clients needs more.
//! - **A bounded timeout and lifetime.** A client `timeout` above `limits.max_timeout` (10 s)
//!   is left out of the OACK (RFC 2349 forbids answering another value): a `timeout 255` once
//!   held a slot for 25 minutes. Every session ends after `max_session_time` (10 minutes,
//!   `--max-session-time`, 0 = never) with ERROR 0, however slowly the client keeps it moving.
//! - **Per-source request rate** (`rate_limit`, 100 requests/s, bursts of 200), as before.
//! - **Out of descriptors.** The acceptor opens each session's sockets itself; when that fails
//!   with EMFILE/ENFILE the request is answered with `ERROR 0 Server out of resources, try
//!   again later` from the server port (within the budget), the refusal is logged once a
//!   second with a count, and the server goes on serving; a file that cannot be opened for the
//!   same reason gets the same ERROR from the session.
//!
//! # Known gaps
//!
//! - `--fork`: bytes/packets/retransmit counters of sessions stay in the children.
//! - Strangers writing to a session's port are answered with ERROR 5 at the latest after 16
//!   bursts or at the session's next timeout, not at once (the price of the connected
//!   socket).
//! - `--fork`: the anti-amplification budget lives in each child as it was at `fork()`: what
//!   a child sends is not charged to the acceptor's copy (the two-packet limit per session
//!   and the per-address session cap still hold).
//! - A lost first block of a window costs a timeout (its gap ACK cannot be told from a
//!   duplicate ACK); so does a second loss of the same block.
//! - Go-back-N: a receiver keeps no block out of order (RFC 7440), so persistent reordering
//!   costs whole windows (see the loss table).
//! - IPv6 blksize is clamped to `max_blksize` only (no IPv6 path-MTU query).
//! - No multicast (RFC 2090) and no tftp-hpa style filename remapping; write a
//!   `TftpHandler` for that.

/// The `tftpd` binary's command line: its internals, not part of the library's API.
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod cli;
#[cfg(feature = "metrics")]
pub mod metrics;
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
///
/// # Example
///
/// Network boot with a configuration made per machine (fbtftp's example): `pxelinux.cfg/`
/// names are answered with generated bytes, anything else from a directory.
///
/// ```
/// use std::io;
/// use std::sync::Arc;
///
/// use ftpdlib::tftp::{
///     BytesResponseData, FileResponseData, HandlerFactory, RequestInfo, ResponseData,
///     SessionStats, TftpHandler, TftpServer,
/// };
///
/// struct Boot;
///
/// impl TftpHandler for Boot {
///     fn get_response_data(&mut self, req: &RequestInfo) -> io::Result<Box<dyn ResponseData>> {
///         if let Some(mac) = req.path.strip_prefix("pxelinux.cfg/") {
///             let cfg = format!("DEFAULT linux\nLABEL linux\n  KERNEL vmlinuz-{mac}\n");
///             return Ok(Box::new(BytesResponseData::new(cfg.into_bytes())));
///         }
///         Ok(Box::new(FileResponseData::open("/srv/tftp".as_ref(), &req.path)?))
///     }
///     fn session_stats_callback(&mut self, stats: &SessionStats) {
///         log::info!("{stats:?}");
///     }
/// }
///
/// let factory: HandlerFactory = Arc::new(|_req: &RequestInfo| -> Box<dyn TftpHandler> { Box::new(Boot) });
/// let server = TftpServer::new(factory);
/// # drop(server);
/// ```
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
