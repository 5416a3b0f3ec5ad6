//! The data channel part of a session (pyftpdlib `PassiveDTP`, `ActiveDTP` and the
//! handler's `_in_dtp_queue` / `_out_dtp_queue`): the connection prepared by PORT/PASV, the
//! transfer parameters (TYPE, REST, EPSV ALL, PBSZ/PROT), and the phase of the transfer a
//! command asked for — waiting for a PORT/PASV after a 150, waiting for the client to
//! connect, or running. The session loop drives the phases (drive.rs); the bytes move in
//! the dtp layer.

use std::io;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::filesystems::{AbstractedFs, UploadSink};
use crate::handlers::dtp::{Download, Source, Stream, Upload};
use crate::handlers::table::Channel;
use crate::proto::TransferType;

/// How the next data connection will be made.
#[derive(Debug, Default)]
pub(crate) enum Setup {
    /// Neither PORT nor PASV yet (or the last transfer used it up).
    #[default]
    None,
    /// PASV/EPSV: a listener waiting for the client.
    Passive(TcpListener),
    /// PORT/EPRT: already connected to the client (pyftpdlib connects at PORT time).
    Active(Stream),
}

/// The lines of a listing, produced as the transfer asks for them, from the filesystem the
/// session lends at each step (commands/listing.rs).
pub(crate) trait Listing: Send {
    /// Appends the next entry's line; false once every entry is out.
    fn fill(&mut self, fs: &mut AbstractedFs, out: &mut Vec<u8>) -> io::Result<bool>;
}

/// What a transfer command asked to move.
pub(crate) enum Work {
    /// A download.
    Send(Source),
    /// A listing.
    List(Box<dyn Listing>),
    /// An upload.
    Receive(Box<dyn UploadSink>),
}

/// A transfer a command asked for, until its data connection is up.
pub(crate) struct Plan {
    /// What ends it: the log line, the reply and the file callbacks.
    pub(crate) end: Ending,
    /// What it moves.
    pub(crate) work: Work,
    /// The text of the 125/150 reply instead of the usual one (STOU's `FILE: name`).
    pub(crate) mark: Option<Vec<u8>>,
}

/// What a finished (or abandoned) transfer reports and cleans up.
#[derive(Debug, Clone)]
pub(crate) struct Ending {
    /// The verb, for the log line.
    pub(crate) cmd: String,
    /// The host path, for the log line and the callbacks.
    pub(crate) path: PathBuf,
    /// A file (callbacks fire) or a listing.
    pub(crate) channel: Channel,
    /// A virtual path removed unless the upload completes (atomic STOU's reserved name).
    pub(crate) reserved: Option<PathBuf>,
}

/// A transfer moving bytes.
pub(crate) enum Xfer {
    Down(Download),
    Up(Upload),
}

/// A running transfer and what its end needs.
pub(crate) struct Running {
    pub(crate) end: Ending,
    pub(crate) xfer: Xfer,
    /// A listing's producer.
    pub(crate) lister: Option<Box<dyn Listing>>,
    /// The filesystem a listing goes on with after its account logged out meanwhile.
    pub(crate) own_fs: Option<AbstractedFs>,
    pub(crate) start: Instant,
}

impl Running {
    /// Bytes sent and received so far.
    pub(crate) fn moved(&self) -> (u64, u64) {
        match &self.xfer {
            Xfer::Down(d) => (d.sent, 0),
            Xfer::Up(u) => (0, u.received),
        }
    }
}

/// Where the transfer a command asked for is.
#[derive(Default)]
pub(crate) enum Phase {
    /// No transfer.
    #[default]
    Idle,
    /// 150 sent before any PORT/PASV: the commands that follow may still set a channel up.
    Awaiting(Plan),
    /// 125/150 sent; the passive listener waits for the client.
    Connecting(Plan, TcpListener),
    /// Moving bytes.
    Running(Box<Running>),
}

/// PBSZ/PROT (RFC 4217 §8, §9).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct DataProtection {
    /// PBSZ was accepted (PROT needs it first).
    pub(crate) pbsz: bool,
    /// PROT P: data connections are encrypted.
    pub(crate) private: bool,
}

/// The data channel of one session.
pub(crate) struct DataChannel {
    /// The connection prepared by PORT/PASV for the next transfer.
    pub(crate) setup: Setup,
    /// When `setup` was made (PASV/PORT) or connected: its timers run from here.
    pub(crate) since: Instant,
    /// The last PORT/EPRT/PASV/EPSV was refused: the next transfer command gets 425 at
    /// once instead of waiting for a data channel (clients pipeline it after the refusal).
    pub(crate) refused: bool,
    pub(crate) phase: Phase,
    pub(crate) ttype: TransferType,
    /// REST's offset for the next RETR/STOR.
    pub(crate) rest: u64,
    /// EPSV ALL: PORT, EPRT and PASV refused from now on (RFC 2428 §4).
    pub(crate) epsv_all: bool,
    pub(crate) protection: DataProtection,
}

impl DataChannel {
    /// No channel, ASCII type (RFC 959's default).
    pub(crate) fn new() -> DataChannel {
        DataChannel {
            setup: Setup::None,
            since: Instant::now(),
            refused: false,
            phase: Phase::Idle,
            ttype: TransferType::Ascii,
            rest: 0,
            epsv_all: false,
            protection: DataProtection::default(),
        }
    }

    /// Prepares the next transfer's connection (PASV/PORT), replacing any earlier one.
    pub(crate) fn prepare(&mut self, setup: Setup) {
        self.setup = setup;
        self.since = Instant::now();
    }

    /// True while a transfer waits for its client or runs: control lines are then served
    /// by the rules of the table's `busy` column.
    pub(crate) fn busy(&self) -> bool {
        matches!(self.phase, Phase::Connecting(..) | Phase::Running(_))
    }

    /// When the passive listener set up by PASV/EPSV stops waiting (`None`: a zero
    /// timeout waits for ever, as pyftpdlib's 0 does).
    pub(crate) fn passive_deadline(&self, timeout: Duration) -> Option<Instant> {
        (!timeout.is_zero()).then(|| self.since + timeout)
    }

    /// The data channel lines of STAT's 211 reply (pyftpdlib `ftp_STAT`).
    pub(crate) fn status(&self) -> Vec<Vec<u8>> {
        let open = |sent: u64, received: u64, since: Instant| {
            vec![
                b"Data connection open:".to_vec(),
                format!("Total bytes sent: {sent}").into_bytes(),
                format!("Total bytes received: {received}").into_bytes(),
                format!(
                    "Transfer elapsed time: {:.3} secs",
                    since.elapsed().as_secs_f64()
                )
                .into_bytes(),
            ]
        };
        if let Phase::Running(r) = &self.phase {
            let (sent, received) = r.moved();
            return open(sent, received, r.start);
        }
        match self.setup {
            Setup::Passive(_) => vec![b"Passive data channel waiting for connection.".to_vec()],
            // pyftpdlib: a connected channel shows its (zero) totals.
            Setup::Active(_) => open(0, 0, self.since),
            Setup::None => vec![b"Data connection closed.".to_vec()],
        }
    }
}
