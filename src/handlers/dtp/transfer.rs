//! The transfer loops (pyftpdlib `DTPHandler`): a [`Download`] or an [`Upload`] moves bytes
//! over an open data connection with sendfile(2) or a reused buffer, ASCII conversion
//! (RFC 959 §3.1.1) and token-bucket throttling. The loop polls the data socket and the
//! control socket together and returns [`Step::Control`] as soon as the client sent
//! something, so the session answers ABOR/STAT/NOOP (RFC 1123 §4.1.3.4) with its one thread
//! and then calls [`run`](Download::run) again: the transfer is a value the session loop
//! drives, never a loop that runs commands itself. It returns [`Step::Control`] too when
//! the server's end-of-sessions descriptor fires (the session then ends). Nothing here
//! knows a session or a command.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::PollFlags;

use super::splice::{Received, SplicePipe};
use super::stream::Stream;
use super::throttle::Throttle;
use super::writer::{FileWriter, PIPELINE_AFTER};
use crate::filesystems::{ReadStream, UploadSink};
use crate::proto;

/// How a transfer ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Every byte moved.
    Complete,
    /// ABOR arrived.
    Aborted,
    /// The client closed or reset the data connection too early.
    PeerClosed,
    /// No progress for `data_timeout`.
    DataTimeout,
    /// Reading or writing the local file failed.
    LocalError(io::Error),
    /// The control connection is gone.
    ControlGone,
}

/// What one [`run`](Download::run) of a transfer ended with.
#[derive(Debug)]
pub(crate) enum Step {
    /// The transfer is over.
    Done(Outcome),
    /// The control connection has input: the caller reads and answers it, then runs the
    /// transfer again.
    Control,
}

/// What a download reads from.
pub(crate) enum Source {
    /// A file (sendfile(2) when it is a real one and the mode allows).
    File(ReadStream),
    /// Generated lines (listings), asked for at each run through a [`Fill`].
    Lines,
}

/// Appends the next lines of a listing; false once every line is out.
pub(crate) type Fill<'a> = &'a mut dyn FnMut(&mut Vec<u8>) -> io::Result<bool>;

/// The plain values a transfer runs with.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// ASCII mode (CRLF on the wire).
    pub(crate) ascii: bool,
    /// The buffer size (`ac_out_buffer_size` or `ac_in_buffer_size`).
    pub(crate) buf_size: usize,
    /// sendfile(2) allowed (downloads).
    pub(crate) sendfile: bool,
    /// No progress for this long ends the transfer (`data_timeout`).
    pub(crate) stall: Option<Duration>,
    /// The session's log prefix.
    pub(crate) log: String,
}

/// Largest single sendfile(2) call: bounded so the control socket is polled often.
const SENDFILE_CHUNK: usize = 1 << 20;

/// An upload that keeps filling its buffer skips poll(2), but polls (and so looks at the
/// control connection) at least once every this many reads.
const CTRL_EVERY: u32 = 16;

/// What a loop does next (see [`Pace::gate`]).
enum Gate {
    /// Move up to this many bytes now.
    Go(usize),
    /// Nothing to move yet: go round again.
    Again,
    /// The loop returns this.
    Stop(Step),
}

/// What a transfer watches beside its data connection: the control connection, and the
/// server's descriptor that says every session ends now (when there is one).
#[derive(Clone, Copy)]
pub(crate) struct Watch<'a> {
    /// The control connection.
    pub(crate) ctl: BorrowedFd<'a>,
    /// Readable once the server ends every session.
    pub(crate) end: Option<BorrowedFd<'a>>,
}

impl<'a> Watch<'a> {
    /// Polls the control connection and the end descriptor, with `first` ahead of them;
    /// whether `first` is ready, and whether the others are.
    fn poll(
        &self,
        first: (BorrowedFd<'a>, PollFlags),
        wait: Option<Duration>,
    ) -> io::Result<(bool, bool)> {
        let [f, c, e] = crate::poll::ready(
            [
                first,
                (self.ctl, PollFlags::POLLIN),
                (self.end.unwrap_or(self.ctl), PollFlags::POLLIN),
            ],
            wait,
        )?;
        Ok((f, c || e))
    }
}

/// The throttle and the stall timer of a transfer.
struct Pace {
    throttle: Throttle,
    stall: Option<Duration>,
    last_progress: Instant,
}

impl Pace {
    /// Waits for tokens, then for the data socket (`events`) or control input. `trust_ready`
    /// skips the poll when the last read filled its grant (more is waiting).
    fn gate(
        &mut self,
        conn: &Stream,
        want: usize,
        events: PollFlags,
        trust_ready: bool,
        watch: Watch<'_>,
    ) -> io::Result<Gate> {
        let grant = self.throttle.take(want);
        if grant == 0 {
            let wait = self.throttle.wait(want);
            let (_, c) = watch.poll((watch.ctl, PollFlags::POLLIN), Some(wait))?;
            return Ok(if c {
                Gate::Stop(Step::Control)
            } else {
                Gate::Again
            });
        }
        if trust_ready || (events.contains(PollFlags::POLLIN) && conn.has_buffered_input()) {
            return Ok(Gate::Go(grant));
        }
        let (d, c) = watch.poll((conn.as_fd(), events), self.stall)?;
        if c {
            self.throttle.refund(grant);
            return Ok(Gate::Stop(Step::Control));
        }
        if !d {
            self.throttle.refund(grant);
            if self
                .stall
                .is_some_and(|t| self.last_progress.elapsed() >= t)
            {
                return Ok(Gate::Stop(Step::Done(Outcome::DataTimeout)));
            }
            return Ok(Gate::Again);
        }
        Ok(Gate::Go(grant))
    }

    /// `moved` of `grant` bytes moved: the rest goes back to the buckets.
    fn account(&mut self, grant: usize, moved: usize) {
        self.throttle.refund(grant - moved.min(grant));
        if moved > 0 {
            self.last_progress = Instant::now();
        }
    }
}

/// A download or a listing in progress.
pub(crate) struct Download {
    conn: Stream,
    src: Source,
    set: Settings,
    pace: Pace,
    out: Vec<u8>,
    raw: Vec<u8>,
    pos: usize,
    last_cr: bool,
    eof: bool,
    /// Bytes sent so far.
    pub(crate) sent: u64,
}

impl Download {
    /// A download of `src` over `conn` (made non-blocking here).
    ///
    /// # Errors
    /// The socket could not be made non-blocking.
    pub(crate) fn new(
        conn: Stream,
        src: Source,
        mut set: Settings,
        throttle: Throttle,
    ) -> io::Result<Download> {
        conn.tcp().set_nonblocking(true)?;
        set.sendfile = set.sendfile
            && !set.ascii
            && matches!(src, Source::File(ReadStream::File(_)))
            && conn.sendfile_socket().is_some();
        Ok(Download {
            conn,
            src,
            pace: Pace {
                throttle,
                stall: set.stall,
                last_progress: Instant::now(),
            },
            set,
            out: Vec::new(),
            raw: Vec::new(),
            pos: 0,
            last_cr: false,
            eof: false,
            sent: 0,
        })
    }

    /// Sends until the download ends or the control connection `ctl` has input. `fill`
    /// gives the lines of a [`Source::Lines`] download.
    ///
    /// # Errors
    /// Polling failed (the caller ends the transfer with a local error).
    pub(crate) fn run(&mut self, watch: Watch<'_>, mut fill: Option<Fill<'_>>) -> io::Result<Step> {
        loop {
            if !self.set.sendfile && self.pos >= self.out.len() {
                if let Some(o) = self.refill(&mut fill) {
                    return Ok(Step::Done(self.end(o)));
                }
                continue;
            }
            let want = if self.set.sendfile {
                SENDFILE_CHUNK
            } else {
                self.out.len() - self.pos
            };
            let grant = match self
                .pace
                .gate(&self.conn, want, PollFlags::POLLOUT, false, watch)?
            {
                Gate::Go(n) => n,
                Gate::Again => continue,
                Gate::Stop(s) => return Ok(s),
            };
            let moved = match self.send(grant) {
                Ok(n) => n,
                Err(o) => return Ok(Step::Done(self.end(o))),
            };
            self.pace.account(grant, moved);
            self.sent += moved as u64;
        }
    }

    /// Fills the output buffer from the source; `Some` when the download ends instead
    /// (complete, or a local error).
    fn refill(&mut self, fill: &mut Option<Fill<'_>>) -> Option<Outcome> {
        if self.eof {
            return Some(Outcome::Complete);
        }
        self.pos = 0;
        match (&mut self.src, fill.as_mut()) {
            (Source::File(f), _) => {
                // The two buffers trade places and keep their lengths (`raw` is the one just
                // sent, its bytes stale and overwritten): a full-length buffer is not zeroed
                // again before every read (a memset of every byte sent).
                self.raw.resize(self.set.buf_size, 0);
                let n = match f.read(&mut self.raw) {
                    Ok(n) if n > 0 => n,
                    r => {
                        self.out.clear();
                        return match r {
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => None,
                            Err(e) => Some(Outcome::LocalError(e)),
                            Ok(_) => Some(Outcome::Complete),
                        };
                    }
                };
                if self.set.ascii {
                    self.out.clear();
                    proto::to_crlf(&self.raw[..n], &mut self.out, &mut self.last_cr);
                } else {
                    std::mem::swap(&mut self.out, &mut self.raw);
                    self.out.truncate(n);
                }
                None
            }
            (Source::Lines, Some(fill)) => {
                self.out.clear();
                while self.out.len() < self.set.buf_size && !self.eof {
                    match (**fill)(&mut self.out) {
                        Ok(more) => self.eof = !more,
                        Err(e) => return Some(Outcome::LocalError(e)),
                    }
                }
                self.out.is_empty().then_some(Outcome::Complete)
            }
            (Source::Lines, None) => Some(Outcome::LocalError(io::Error::other(
                "the listing's source is gone",
            ))),
        }
    }

    /// Sends up to `grant` bytes: bytes moved (0 when the socket is full), or the outcome
    /// that ends the download.
    fn send(&mut self, grant: usize) -> Result<usize, Outcome> {
        if !self.set.sendfile {
            return match self.conn.write(&self.out[self.pos..self.pos + grant]) {
                Ok(n) => {
                    self.pos += n;
                    Ok(n)
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    Ok(0)
                }
                Err(_) => Err(Outcome::PeerClosed),
            };
        }
        let (Source::File(ReadStream::File(file)), Some(sock)) =
            (&self.src, self.conn.sendfile_socket())
        else {
            self.set.sendfile = false;
            return Ok(0);
        };
        match nix::sys::sendfile::sendfile(sock.as_fd(), file.as_fd(), None, grant) {
            Ok(0) => Err(Outcome::Complete),
            Ok(n) => Ok(n),
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => Ok(0),
            Err(Errno::EINVAL) | Err(Errno::ENOSYS) | Err(Errno::EOPNOTSUPP) => {
                log::debug!("{} sendfile(2) refused; using buffered copy", self.set.log);
                self.set.sendfile = false;
                Ok(0)
            }
            Err(Errno::EPIPE) | Err(Errno::ECONNRESET) => Err(Outcome::PeerClosed),
            Err(e) => Err(Outcome::LocalError(e.into())),
        }
    }

    /// A complete download ends with a clean close of the stream (TLS close_notify): a
    /// client that reset it instead gets `PeerClosed`.
    fn end(&mut self, outcome: Outcome) -> Outcome {
        if let Outcome::Complete = outcome {
            let _ = self.conn.tcp().set_nonblocking(false);
            if self.conn.finish().is_err() {
                return Outcome::PeerClosed;
            }
        }
        outcome
    }
}

/// Where an upload goes: the file itself, or a helper thread writing it (writer.rs).
enum Sink {
    Direct(Box<dyn UploadSink>),
    Piped(FileWriter),
    /// After the helper failed, or while switching from one to the other.
    Gone,
}

impl Sink {
    /// The regular file a direct sink writes, for splice(2).
    fn file(&self) -> Option<&std::fs::File> {
        match self {
            Sink::Direct(f) => f.file(),
            Sink::Piped(_) | Sink::Gone => None,
        }
    }

    fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        match self {
            Sink::Direct(f) => f.write_all(b),
            // ASCII uploads never switch to a helper.
            Sink::Piped(_) | Sink::Gone => Err(io::Error::other("upload sink unavailable")),
        }
    }

    /// The transfer is over, however it ended: the last `filled` bytes of `buf` go to the
    /// helper, which is waited for, and the upload comes back to be committed or
    /// abandoned. Nothing received is dropped, not even when an ABOR or a reset ended it.
    fn drain(self, buf: Vec<u8>, filled: usize) -> io::Result<Box<dyn UploadSink>> {
        match self {
            Sink::Direct(f) => Ok(f),
            Sink::Piped(mut w) => {
                if filled > 0 && w.send(buf, filled).is_none() {
                    return Err(w
                        .finish()
                        .err()
                        .unwrap_or_else(|| io::Error::other("upload writer stopped")));
                }
                w.finish()
            }
            Sink::Gone => Err(io::Error::other("upload sink unavailable")),
        }
    }

    /// The helper's error once it has stopped taking buffers.
    fn failure(&mut self) -> io::Error {
        match std::mem::replace(self, Sink::Gone) {
            Sink::Piped(w) => w
                .finish()
                .err()
                .unwrap_or_else(|| io::Error::other("upload writer stopped")),
            _ => io::Error::other("upload sink unavailable"),
        }
    }

    /// Moves the file's writes to a helper thread (a failure to start one leaves them here).
    fn pipeline(&mut self, buf_size: usize) {
        *self = match std::mem::replace(self, Sink::Gone) {
            Sink::Direct(f) => match FileWriter::start(f, buf_size) {
                Ok(w) => Sink::Piped(w),
                Err((f, e)) => {
                    log::debug!("upload goes on without a writer thread: {e}");
                    Sink::Direct(f)
                }
            },
            other => other,
        };
    }
}

/// An upload in progress.
pub(crate) struct Upload {
    conn: Stream,
    sink: Sink,
    set: Settings,
    pace: Pace,
    buf: Vec<u8>,
    /// Bytes of `buf` not yet handed to a helper thread (pipelined uploads only).
    filled: usize,
    /// ASCII: a CR waiting to see whether LF follows.
    pending_cr: bool,
    conv: Vec<u8>,
    /// Reads in a row that filled their grant (see [`CTRL_EVERY`]).
    flowing: u32,
    /// Binary uploads from plain TCP into a regular file: the pipe they are spliced
    /// through (splice.rs); `buf` stays empty then.
    splice: Option<SplicePipe>,
    /// Bytes received so far.
    pub(crate) received: u64,
}

impl Upload {
    /// An upload from `conn` (made non-blocking here) into `sink`. Nothing is written to
    /// `conn` while it runs (a client that never reads its data connection must be able to
    /// close it cleanly).
    ///
    /// # Errors
    /// The socket could not be made non-blocking.
    pub(crate) fn new(
        mut conn: Stream,
        sink: Box<dyn UploadSink>,
        set: Settings,
        throttle: Throttle,
    ) -> io::Result<Upload> {
        conn.tcp().set_nonblocking(true)?;
        conn.hold_output();
        let splice = match (set.ascii, conn.sendfile_socket(), sink.file()) {
            (false, Some(_), Some(file)) => SplicePipe::for_file(file),
            _ => None,
        };
        let buf = if splice.is_some() {
            Vec::new()
        } else {
            vec![0u8; set.buf_size]
        };
        Ok(Upload {
            conn,
            sink: Sink::Direct(sink),
            buf,
            splice,
            pace: Pace {
                throttle,
                stall: set.stall,
                last_progress: Instant::now(),
            },
            set,
            filled: 0,
            pending_cr: false,
            conv: Vec::new(),
            flowing: 0,
            received: 0,
        })
    }

    /// Receives until the upload ends or the control connection `ctl` has input. While
    /// reads fill their grant, more data is waiting: it reads again without poll(2), still
    /// looking at the control connection every [`CTRL_EVERY`] reads (ABOR, STAT).
    ///
    /// # Errors
    /// Polling failed (the caller ends the transfer with a local error).
    pub(crate) fn run(&mut self, watch: Watch<'_>) -> io::Result<Step> {
        loop {
            let trust_ready = self.flowing > 0 && self.flowing % CTRL_EVERY != 0;
            let room = match &self.splice {
                Some(p) => p.capacity(),
                None => self.buf.len() - self.filled,
            };
            let grant =
                match self
                    .pace
                    .gate(&self.conn, room, PollFlags::POLLIN, trust_ready, watch)?
                {
                    Gate::Go(n) => n,
                    Gate::Again => continue,
                    Gate::Stop(s) => return Ok(s),
                };
            let n = match self.receive(grant) {
                Ok(Some(n)) => n,
                Ok(None) => {
                    self.pace.account(grant, 0);
                    self.flowing = 0;
                    continue;
                }
                Err(o) => return Ok(Step::Done(o)),
            };
            self.flowing = if n == grant { self.flowing + 1 } else { 0 };
            self.pace.account(grant, n);
            self.received += n as u64;
        }
    }

    /// Receives up to `grant` bytes and stores them: `Some(n)`, `None` when nothing was
    /// waiting, or the outcome that ends the upload.
    fn receive(&mut self, grant: usize) -> Result<Option<usize>, Outcome> {
        if let (Some(p), Some(sock), Some(file)) = (
            self.splice.as_mut(),
            self.conn.sendfile_socket(),
            self.sink.file(),
        ) {
            return match p.receive(sock, file, grant) {
                Received::Bytes(n) => Ok(Some(n)),
                Received::WouldBlock => Ok(None),
                Received::Eof => Err(Outcome::Complete),
                Received::PeerClosed => Err(Outcome::PeerClosed),
                Received::Local(e) => Err(Outcome::LocalError(e)),
                Received::Unsupported(back) => {
                    log::debug!("{} splice(2) refused; using buffered copy", self.set.log);
                    self.splice = None;
                    self.buf = vec![0u8; self.set.buf_size];
                    match self.sink.write_all(&back) {
                        Ok(()) => Ok(Some(back.len())),
                        Err(e) => Err(Outcome::LocalError(e)),
                    }
                }
            };
        }
        let n = match self
            .conn
            .read(&mut self.buf[self.filled..self.filled + grant])
        {
            Ok(0) => return Err(Outcome::Complete),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                return Ok(None)
            }
            Err(_) => return Err(Outcome::PeerClosed),
        };
        match self.store(n) {
            Ok(()) => Ok(Some(n)),
            Err(e) => Err(Outcome::LocalError(e)),
        }
    }

    /// Hands the `n` bytes just read to the file (converted in ASCII mode), to the helper
    /// thread, or to the buffer waiting for it; starts the helper once the upload is past
    /// [`PIPELINE_AFTER`].
    fn store(&mut self, n: usize) -> io::Result<()> {
        if self.set.ascii {
            proto::from_crlf(&self.buf[..n], &mut self.conv, &mut self.pending_cr);
            return self.sink.write_all(&self.conv);
        }
        if let Sink::Piped(w) = &mut self.sink {
            self.filled += n;
            // Hand over half-full buffers or fuller: fewer, larger writes.
            if self.filled * 2 >= self.buf.len() {
                match w.send(std::mem::take(&mut self.buf), self.filled) {
                    Some(next) => self.buf = next,
                    None => return Err(self.sink.failure()),
                }
                self.filled = 0;
            }
            return Ok(());
        }
        self.sink.write_all(&self.buf[..n])?;
        // `received` does not count these `n` bytes yet.
        if self.received < PIPELINE_AFTER && self.received + n as u64 >= PIPELINE_AFTER {
            self.sink.pipeline(self.buf.len());
        }
        Ok(())
    }

    /// Ends the upload: the file is closed (a helper thread's last writes waited for) and a
    /// complete upload committed (an atomic one renamed over its name); any other is
    /// abandoned, holding every byte received.
    pub(crate) fn finish(mut self, mut outcome: Outcome) -> Outcome {
        if self.pending_cr {
            if let Err(e) = self.sink.write_all(b"\r") {
                outcome = Outcome::LocalError(e);
            }
        }
        match (outcome, self.sink.drain(self.buf, self.filled)) {
            (Outcome::Complete, Ok(up)) => match up.commit() {
                Ok(()) => Outcome::Complete,
                Err(e) => Outcome::LocalError(e),
            },
            (Outcome::Complete, Err(e)) => Outcome::LocalError(e),
            (o @ Outcome::LocalError(_), _) => o,
            (o, Err(e)) => {
                log::error!("{} writing the end of a cut upload: {e}", self.set.log);
                o
            }
            (o, Ok(_abandoned)) => o,
        }
    }
}
