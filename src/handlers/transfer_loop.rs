//! The transfer loop (pyftpdlib `DTPHandler`): moves a download or an upload over an open
//! data connection with sendfile(2) or a reused buffer, ASCII conversion (RFC 959 §3.1.1) and
//! token-bucket throttling, while answering ABOR/STAT/NOOP on the control connection
//! (RFC 1123 §4.1.3.4): the loop polls the data and control sockets together, so one thread
//! does both. Also the replies and callbacks that end a transfer.

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags};

use super::data::{timeout_ms, Ctl, Progress};
use super::session::Session;
use super::stream::Stream;
use super::throttle::{Direction, Throttle};
use super::writer::{FileWriter, PIPELINE_AFTER};
use crate::filesystems::{ReadStream, UploadSink};
use crate::proto::{self, TransferType};

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

/// What a download reads from.
pub(crate) enum Source<'a> {
    /// A file (sendfile(2) when it is a real one and the mode allows).
    File(ReadStream),
    /// Generated lines (listings): `fill` appends the next lines, false at the end.
    Lines(&'a mut dyn FnMut(&mut Vec<u8>) -> io::Result<bool>),
}

/// Where an upload goes: the file itself, or a helper thread writing it (writer.rs).
enum Sink {
    Direct(Box<dyn UploadSink>),
    Piped(FileWriter),
    /// After the helper failed, or while switching from one to the other.
    Gone,
}

impl Sink {
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

/// An upload's receive buffer and what is pending in it.
struct Received {
    buf: Vec<u8>,
    /// Bytes of `buf` not yet handed to a helper thread (pipelined uploads only).
    filled: usize,
    /// ASCII: a CR waiting to see whether LF follows.
    pending_cr: bool,
}

/// What a transfer loop does next (see `Session::gate`).
enum Gate {
    /// Move up to this many bytes now.
    Go(usize),
    /// Nothing to move yet: go round again.
    Again,
    /// The transfer ends.
    Stop(Outcome),
}

/// Largest single sendfile(2) call: bounded so the control socket is polled often.
const SENDFILE_CHUNK: usize = 1 << 20;

/// An upload that keeps filling its buffer skips poll(2), but polls (and so looks at the
/// control connection) at least once every this many reads.
const CTRL_EVERY: u32 = 16;

impl Session {
    /// Polls the data socket for `events` and the control socket for input, up to `wait`.
    /// Returns (data ready, control ready).
    fn wait_io(
        &self,
        conn: &Stream,
        events: PollFlags,
        wait: Option<Duration>,
    ) -> io::Result<(bool, bool)> {
        if self.has_buffered_line() {
            return Ok((false, true));
        }
        if events.contains(PollFlags::POLLIN) && conn.has_buffered_input() {
            return Ok((true, false));
        }
        let mut fds = [
            PollFd::new(conn.as_fd(), events),
            PollFd::new(self.ctrl.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, timeout_ms(wait)) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => return Ok((false, false)),
            Err(e) => return Err(e.into()),
        }
        let d = fds[0].revents().map(|r| !r.is_empty()).unwrap_or(false);
        let c = fds[1].revents().map(|r| !r.is_empty()).unwrap_or(false);
        Ok((d, c))
    }

    /// One step of a transfer loop: waits for tokens, then for the data socket (`events`) or
    /// control input, answering control lines on the way (ABOR, STAT, NOOP…).
    /// `trust_ready` skips the poll when the last read filled its grant (more is waiting).
    fn gate(
        &mut self,
        conn: &Stream,
        bucket: &mut Throttle,
        want: usize,
        events: PollFlags,
        trust_ready: bool,
        last_progress: Instant,
    ) -> io::Result<Gate> {
        let grant = bucket.take(want);
        if grant == 0 {
            let wait = bucket.wait(want);
            let (_, c) = self.wait_io_ctrl(wait)?;
            if c {
                if let Some(o) = self.control_outcome()? {
                    return Ok(Gate::Stop(o));
                }
            }
            return Ok(Gate::Again);
        }
        let (d, c) = if trust_ready {
            (true, false)
        } else {
            self.wait_io(conn, events, self.h.data_timeout)?
        };
        if c {
            if let Some(o) = self.control_outcome()? {
                return Ok(Gate::Stop(o));
            }
        }
        if !d {
            bucket.refund(grant);
            if self
                .h
                .data_timeout
                .is_some_and(|t| last_progress.elapsed() >= t)
            {
                return Ok(Gate::Stop(Outcome::DataTimeout));
            }
            return Ok(Gate::Again);
        }
        Ok(Gate::Go(grant))
    }

    /// Handles control input during a transfer; the outcome if it ends the transfer.
    fn control_outcome(&mut self) -> io::Result<Option<Outcome>> {
        Ok(match self.service_control()? {
            Ctl::Continue => None,
            Ctl::Abort => Some(Outcome::Aborted),
            Ctl::Gone => Some(Outcome::ControlGone),
        })
    }

    /// Sends a download or a listing over `conn`.
    pub(crate) fn send_data(&mut self, conn: &mut Stream, mut src: Source<'_>) -> Outcome {
        self.progress = Some(Progress {
            sent: 0,
            received: 0,
            start: Instant::now(),
        });
        let r = self.send_loop(conn, &mut src);
        let outcome = match r {
            Ok(o) => o,
            Err(e) => Outcome::LocalError(e),
        };
        if let Outcome::Complete = outcome {
            let _ = conn.tcp().set_nonblocking(false);
            if conn.finish().is_err() {
                return Outcome::PeerClosed;
            }
        }
        outcome
    }

    fn send_loop(&mut self, conn: &mut Stream, src: &mut Source<'_>) -> io::Result<Outcome> {
        conn.tcp().set_nonblocking(true)?;
        let ascii = self.ttype == TransferType::Ascii;
        let mut use_sendfile = self.h.use_sendfile
            && !ascii
            && matches!(src, Source::File(ReadStream::File(_)))
            && conn.sendfile_socket().is_some();
        let mut bucket = self.limits.throttle(&self.h, Direction::Write);
        let bufsize = self.h.ac_out_buffer_size;
        let mut out: Vec<u8> = Vec::new();
        let mut raw: Vec<u8> = Vec::new();
        let mut pos = 0usize;
        let mut last_cr = false;
        let mut eof = false;
        let mut last_progress = Instant::now();
        loop {
            // Refill the output buffer (every path but sendfile).
            if !use_sendfile && pos >= out.len() {
                if eof {
                    return Ok(Outcome::Complete);
                }
                out.clear();
                pos = 0;
                match src {
                    Source::File(f) => {
                        raw.resize(bufsize, 0);
                        let n = match f.read(&mut raw) {
                            Ok(n) => n,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                            Err(e) => return Ok(Outcome::LocalError(e)),
                        };
                        if n == 0 {
                            return Ok(Outcome::Complete);
                        }
                        if ascii {
                            proto::to_crlf(&raw[..n], &mut out, &mut last_cr);
                        } else {
                            std::mem::swap(&mut out, &mut raw);
                            out.truncate(n);
                        }
                    }
                    Source::Lines(fill) => {
                        while out.len() < bufsize && !eof {
                            match fill(&mut out) {
                                Ok(more) => eof = !more,
                                Err(e) => return Ok(Outcome::LocalError(e)),
                            }
                        }
                        if out.is_empty() {
                            return Ok(Outcome::Complete);
                        }
                    }
                }
            }
            let want = if use_sendfile {
                SENDFILE_CHUNK
            } else {
                out.len() - pos
            };
            let grant = match self.gate(
                conn,
                &mut bucket,
                want,
                PollFlags::POLLOUT,
                false,
                last_progress,
            )? {
                Gate::Go(n) => n,
                Gate::Again => continue,
                Gate::Stop(o) => return Ok(o),
            };
            let written = if use_sendfile {
                let (Source::File(ReadStream::File(file)), Some(sock)) =
                    (&mut *src, conn.sendfile_socket())
                else {
                    use_sendfile = false;
                    bucket.refund(grant);
                    continue;
                };
                match nix::sys::sendfile::sendfile(sock.as_fd(), file.as_fd(), None, grant) {
                    Ok(0) => return Ok(Outcome::Complete),
                    Ok(n) => n,
                    Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => 0,
                    Err(nix::errno::Errno::EINVAL)
                    | Err(nix::errno::Errno::ENOSYS)
                    | Err(nix::errno::Errno::EOPNOTSUPP) => {
                        log::debug!("{} sendfile(2) refused; using buffered copy", self.prefix);
                        use_sendfile = false;
                        0
                    }
                    Err(nix::errno::Errno::EPIPE) | Err(nix::errno::Errno::ECONNRESET) => {
                        return Ok(Outcome::PeerClosed)
                    }
                    Err(e) => return Ok(Outcome::LocalError(e.into())),
                }
            } else {
                match conn.write(&out[pos..pos + grant]) {
                    Ok(n) => {
                        pos += n;
                        n
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) =>
                    {
                        0
                    }
                    Err(_) => return Ok(Outcome::PeerClosed),
                }
            };
            bucket.refund(grant - written.min(grant));
            if written > 0 {
                last_progress = Instant::now();
                if let Some(p) = self.progress.as_mut() {
                    p.sent += written as u64;
                }
            }
        }
    }

    /// Waits on the control socket alone (a throttled transfer sleeping for tokens).
    fn wait_io_ctrl(&self, wait: Duration) -> io::Result<(bool, bool)> {
        if self.has_buffered_line() {
            return Ok((false, true));
        }
        let mut fds = [PollFd::new(self.ctrl.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout_ms(Some(wait))) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => return Ok((false, false)),
            Err(e) => return Err(e.into()),
        }
        Ok((
            false,
            fds[0].revents().map(|r| !r.is_empty()).unwrap_or(false),
        ))
    }

    /// Receives an upload from `conn` into `sink`. A complete upload is committed (an atomic
    /// one renamed over its name) before this returns; any other is abandoned, holding every
    /// byte received.
    pub(crate) fn recv_data(&mut self, conn: &mut Stream, sink: Box<dyn UploadSink>) -> Outcome {
        self.progress = Some(Progress {
            sent: 0,
            received: 0,
            start: Instant::now(),
        });
        let mut sink = Sink::Direct(sink);
        let mut rx = Received {
            buf: vec![0u8; self.h.ac_in_buffer_size],
            filled: 0,
            pending_cr: false,
        };
        let mut outcome = match self.recv_loop(conn, &mut sink, &mut rx) {
            Ok(o) => o,
            Err(e) => Outcome::LocalError(e),
        };
        if rx.pending_cr {
            if let Err(e) = sink.write_all(b"\r") {
                outcome = Outcome::LocalError(e);
            }
        }
        // Close the file (waiting for a helper thread's last writes) before the reply.
        match (outcome, sink.drain(rx.buf, rx.filled)) {
            (Outcome::Complete, Ok(up)) => match up.commit() {
                Ok(()) => Outcome::Complete,
                Err(e) => Outcome::LocalError(e),
            },
            (Outcome::Complete, Err(e)) => Outcome::LocalError(e),
            (o @ Outcome::LocalError(_), _) => o,
            (o, Err(e)) => {
                log::error!("{} writing the end of a cut upload: {e}", self.prefix);
                o
            }
            (o, Ok(_abandoned)) => o,
        }
    }

    fn recv_loop(
        &mut self,
        conn: &mut Stream,
        sink: &mut Sink,
        rx: &mut Received,
    ) -> io::Result<Outcome> {
        conn.tcp().set_nonblocking(true)?;
        let ascii = self.ttype == TransferType::Ascii;
        let mut bucket = self.limits.throttle(&self.h, Direction::Read);
        let mut conv: Vec<u8> = Vec::new();
        let mut last_progress = Instant::now();
        // While reads fill their grant, more data is waiting: read again without poll(2),
        // still looking at the control connection every CTRL_EVERY chunks (ABOR, STAT).
        let mut flowing = 0u32;
        loop {
            let trust_ready = flowing > 0 && flowing % CTRL_EVERY != 0;
            let grant = match self.gate(
                conn,
                &mut bucket,
                rx.buf.len() - rx.filled,
                PollFlags::POLLIN,
                trust_ready,
                last_progress,
            )? {
                Gate::Go(n) => n,
                Gate::Again => continue,
                Gate::Stop(o) => return Ok(o),
            };
            let n = match conn.read(&mut rx.buf[rx.filled..rx.filled + grant]) {
                Ok(0) => return Ok(Outcome::Complete),
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    bucket.refund(grant);
                    flowing = 0;
                    continue;
                }
                Err(_) => return Ok(Outcome::PeerClosed),
            };
            flowing = if n == grant { flowing + 1 } else { 0 };
            bucket.refund(grant - n);
            last_progress = Instant::now();
            let received = match self.progress.as_mut() {
                Some(p) => {
                    p.received += n as u64;
                    p.received
                }
                None => 0,
            };
            let w = if ascii {
                proto::from_crlf(&rx.buf[..n], &mut conv, &mut rx.pending_cr);
                sink.write_all(&conv)
            } else if let Sink::Piped(w) = sink {
                rx.filled += n;
                // Hand over half-full buffers or fuller: fewer, larger writes.
                if rx.filled * 2 >= rx.buf.len() {
                    match w.send(std::mem::take(&mut rx.buf), rx.filled) {
                        Some(next) => rx.buf = next,
                        None => return Ok(Outcome::LocalError(sink.failure())),
                    }
                    rx.filled = 0;
                }
                Ok(())
            } else {
                let w = sink.write_all(&rx.buf[..n]);
                if w.is_ok() && received >= PIPELINE_AFTER && received - (n as u64) < PIPELINE_AFTER
                {
                    sink.pipeline(rx.buf.len());
                }
                w
            };
            if let Err(e) = w {
                return Ok(Outcome::LocalError(e));
            }
        }
    }

    /// Replies to the end of a transfer and logs it (pyftpdlib's
    /// `RETR /f completed=1 bytes=N seconds=S`), firing the file callbacks.
    pub(crate) fn finish_transfer(
        &mut self,
        cmd: &str,
        path: &std::path::Path,
        upload: bool,
        outcome: Outcome,
    ) -> io::Result<()> {
        let p = self.progress.take();
        let bytes = p
            .map(|p| if upload { p.received } else { p.sent })
            .unwrap_or(0);
        let secs = p.map(|p| p.start.elapsed().as_secs_f64()).unwrap_or(0.0);
        let complete = matches!(outcome, Outcome::Complete);
        let vpath = self.fs.as_ref().map(|f| f.fs2ftp(path)).unwrap_or_default();
        log::info!(
            "{} {cmd} {} completed={} bytes={bytes} seconds={secs:.3}",
            self.prefix,
            crate::proto::log_escape(&vpath),
            u8::from(complete)
        );
        let is_file = cmd != "LIST" && cmd != "NLST" && cmd != "MLSD";
        if is_file {
            match (upload, complete) {
                (false, true) => self.cb.on_file_sent(path),
                (false, false) => self.cb.on_incomplete_file_sent(path),
                (true, true) => self.cb.on_file_received(path),
                (true, false) => self.cb.on_incomplete_file_received(path),
            }
        }
        match outcome {
            Outcome::Complete => self.reply(226, "Transfer complete.")?,
            Outcome::Aborted => {
                self.reply(426, "Transfer aborted via ABOR.")?;
                self.reply(226, "ABOR command successful.")?;
            }
            Outcome::PeerClosed if upload => {
                self.reply(426, "Connection closed by peer; transfer aborted.")?
            }
            Outcome::PeerClosed => self.reply(
                426,
                &format!("Transfer aborted; {bytes} bytes transmitted."),
            )?,
            Outcome::DataTimeout => {
                self.reply(421, "Data connection timed out.")?;
                self.closing = true;
            }
            Outcome::LocalError(e) => {
                log::error!("{} {cmd} local error: {e}", self.prefix);
                if e.raw_os_error() == Some(nix::libc::ENOSPC)
                    || e.raw_os_error() == Some(nix::libc::EDQUOT)
                {
                    self.reply(452, "Insufficient storage space.")?;
                } else {
                    let why = crate::filesystems::strerror(&e);
                    self.reply(451, &format!("Local error: {why}; transfer aborted."))?;
                }
            }
            Outcome::ControlGone => {
                self.closing = true;
                return Ok(());
            }
        }
        if self.quit_pending {
            // QUIT was answered when it arrived.
            self.quit_pending = false;
            self.closing = true;
        }
        Ok(())
    }
}
