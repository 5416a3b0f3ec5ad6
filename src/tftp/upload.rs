//! Write requests (beyond fbtftp, which is read-only): the receiver side of RFC 1350 §6
//! and RFC 7440 windows, into a configured upload directory with an atomic commit
//! (a temporary file, then a link to the final name) and a size cap (RFC 2349 tsize).

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use log::debug;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstatat, Mode as FileMode};
use nix::unistd::{linkat, unlinkat, UnlinkatFlags};

use super::packet::{self, ErrorCode, Mode, Packet, Request};
use super::response::{relative, NetasciiDecoder};
use super::server::Shared;
use super::session::negotiate;
use super::transport::{io_error_reply, is_out_of_descriptors, Ctx};
use crate::beneath::RootDir;

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A file being received: written to a hidden temporary name in the target directory,
/// linked to its final name only when complete, removed otherwise. Every step works
/// relative to the directory's descriptor (opened beneath the upload root, [`RootDir`]), so
/// a directory swapped for a symlink meanwhile cannot redirect the file.
struct Upload {
    dir: OwnedFd,
    tmp: Option<OsString>,
    name: OsString,
    file: Option<BufWriter<File>>,
}

impl Upload {
    /// Prepares `path` (as sent by the client) inside `root`: the parent directory must
    /// exist inside `root` and the target must not exist.
    fn create(root: &Path, path: &str) -> io::Result<Upload> {
        let rel = relative(path)?;
        let name = rel
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::PermissionDenied, "no file name"))?
            .to_owned();
        let parent = rel.parent().unwrap_or(Path::new(""));
        let dir: OwnedFd = match RootDir::open(root)?.open_dir(parent) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOTDIR) => {
                return Err(io::Error::new(io::ErrorKind::NotFound, "no such directory"));
            }
            Err(e) => return Err(e),
        };
        if fstatat(
            &dir,
            name.as_os_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .is_ok()
        {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "file exists"));
        }
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut tmp = OsString::from(".");
        tmp.push(&name);
        tmp.push(format!(".{}-{}.part", std::process::id(), n));
        let fd = openat(
            &dir,
            tmp.as_os_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            FileMode::from_bits_truncate(0o644),
        )?;
        Ok(Upload {
            dir,
            tmp: Some(tmp),
            name,
            file: Some(BufWriter::with_capacity(64 * 1024, File::from(fd))),
        })
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.write_all(data),
            None => Err(io::Error::other("upload already closed")),
        }
    }

    /// Flushes and gives the file its final name; fails if that name appeared meanwhile
    /// (link(2) never replaces).
    fn commit(&mut self) -> io::Result<()> {
        if let Some(f) = self.file.take() {
            let file = f.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
        }
        let Some(tmp) = &self.tmp else {
            return Err(io::Error::other("upload already committed"));
        };
        linkat(
            &self.dir,
            tmp.as_os_str(),
            &self.dir,
            self.name.as_os_str(),
            nix::fcntl::AtFlags::empty(),
        )?;
        if let Some(tmp) = self.tmp.take() {
            let _ = unlinkat(&self.dir, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
        }
        Ok(())
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = unlinkat(&self.dir, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
        }
    }
}

fn io_str(e: io::Error) -> String {
    e.to_string()
}

/// True for names no upload may create: any control character (CR and LF would forge log
/// lines and, served back over FTP, control replies; a NUL cannot travel in a request).
fn forbidden_name(name: &str) -> bool {
    name.chars().any(char::is_control)
}

/// Runs a write request to its end.
pub(crate) fn run(ctx: &mut Ctx, shared: &Shared, req: &Request) -> Result<(), String> {
    let Some(dir) = &shared.cfg.upload_dir else {
        ctx.send_error(ErrorCode::AccessViolation, "Write requests are not allowed");
        return Err("write refused: no upload directory".into());
    };
    if forbidden_name(&req.filename) {
        ctx.send_error(ErrorCode::AccessViolation, "Invalid file name");
        return Err("write refused: control character in the file name".into());
    }
    let mut up = match Upload::create(dir, &req.filename) {
        Ok(u) => u,
        Err(e) => {
            let (code, msg) = io_error_reply(&e);
            let msg = if code == ErrorCode::NotDefined && !is_out_of_descriptors(&e) {
                "Cannot create the file"
            } else {
                msg
            };
            ctx.send_error(code, msg);
            return Err(format!("cannot create upload: {e}"));
        }
    };
    let n = negotiate(ctx, shared, req, None)?;
    let first = if n.oack.is_empty() {
        packet::ack(0).to_vec()
    } else {
        packet::oack(&n.oack)
    };
    let mut r = Receiver {
        bs: n.blksize,
        w: u64::from(n.windowsize.max(1)),
        max: shared.cfg.max_upload,
        first,
        expected: 1,
        acked: 0,
        since_ack: 0,
        quiet: false,
        tries: 0,
        ack_sent: None,
        acked_at: Instant::now(),
        decoder: (req.mode == Mode::Netascii).then(NetasciiDecoder::default),
        plain: Vec::new(),
    };
    r.receive(ctx, &mut up)
}

/// The receiver of RFC 1350 §6 and RFC 7440: an ACK after each window (and after the last
/// block), one ACK per gap, our last ACK again for duplicates the sender sent because it
/// missed it, or after a timeout; the file is committed only once the last block is in.
struct Receiver {
    bs: usize,
    w: u64,
    max: u64,
    /// The first packet: ACK 0 or the OACK.
    first: Vec<u8>,
    /// The next block in order (a sequence number, not wrapped).
    expected: u64,
    /// The block our latest ACK acknowledged: the sender's window starts after it.
    acked: u64,
    /// Blocks in order since our last ACK.
    since_ack: u64,
    /// An ACK for the current gap or duplicates went already: quiet until a block in order.
    quiet: bool,
    /// Timeouts in a row.
    tries: u32,
    /// When our latest ACK left, sent once: the next block in order measures a round trip.
    ack_sent: Option<Instant>,
    /// When our latest ACK (any) left.
    acked_at: Instant,
    decoder: Option<NetasciiDecoder>,
    plain: Vec<u8>,
}

impl Receiver {
    fn receive(&mut self, ctx: &mut Ctx, up: &mut Upload) -> Result<(), String> {
        ctx.send_first(&self.first).map_err(io_str)?;
        self.ack_sent = Some(Instant::now());
        ctx.arm().map_err(io_str)?;
        loop {
            let Some(len) = ctx.recv().map_err(io_str)? else {
                self.timeout(ctx)?;
                continue;
            };
            let (block, in_order, last) = match packet::parse(&ctx.buf[..len]) {
                Ok(Packet::Data(block, payload)) => {
                    if payload.len() > self.bs {
                        ctx.send_error(ErrorCode::IllegalOperation, "Block larger than blksize");
                        return Err("oversized block".into());
                    }
                    (
                        block,
                        block == self.expected as u16,
                        payload.len() < self.bs,
                    )
                }
                Ok(Packet::Error(code, msg)) => {
                    return Err(format!("peer sent ERROR {code} {msg}"))
                }
                _ => {
                    ctx.send_error(ErrorCode::IllegalOperation, "Expected DATA");
                    return Err("unexpected packet during a write".into());
                }
            };
            if !in_order {
                self.out_of_order(ctx, block)?;
                continue;
            }
            self.store(ctx, up, len, last)?;
            if last {
                if let Err(e) = up.commit() {
                    let (code, msg) = io_error_reply(&e);
                    ctx.send_error(code, msg);
                    return Err(format!("commit failed: {e}"));
                }
                ctx.send(&packet::ack(block)).map_err(io_str)?;
                dally(ctx, block);
                return Ok(());
            }
            if self.since_ack >= self.w {
                ctx.send(&packet::ack(block)).map_err(io_str)?;
                self.acked = self.expected - 1;
                self.since_ack = 0;
                self.ack_sent = Some(Instant::now());
                self.acked_at = Instant::now();
            }
            // The peer is alive: a long window is not a timeout.
            ctx.arm().map_err(io_str)?;
        }
    }

    /// Writes the block in order now in `ctx.buf[4..len]`.
    fn store(
        &mut self,
        ctx: &mut Ctx,
        up: &mut Upload,
        len: usize,
        last: bool,
    ) -> Result<(), String> {
        if let Some(sent) = self.ack_sent.take() {
            ctx.rto.sample(sent.elapsed());
        }
        ctx.stats.bytes_received += (len - 4) as u64;
        if ctx.stats.bytes_received > self.max {
            ctx.send_error(ErrorCode::DiskFull, "Upload size limit exceeded");
            return Err("upload over the size cap".into());
        }
        let payload = &ctx.buf[4..len];
        let written = match &mut self.decoder {
            Some(d) => {
                self.plain.clear();
                d.decode(payload, &mut self.plain);
                if last {
                    d.finish(&mut self.plain);
                }
                up.write(&self.plain)
            }
            None => up.write(payload),
        };
        if let Err(e) = written {
            let code = if e.raw_os_error() == Some(nix::libc::ENOSPC) {
                ErrorCode::DiskFull
            } else {
                ErrorCode::NotDefined
            };
            ctx.send_error(code, "Write error");
            return Err(format!("write error: {e}"));
        }
        ctx.stats.blocks = self.expected;
        self.expected += 1;
        self.since_ack += 1;
        self.tries = 0;
        self.quiet = false;
        Ok(())
    }

    /// A block out of order. A duplicate that follows our latest ACK closer than
    /// `Rto::echo_window` is the network's and gets nothing. Otherwise, in lock-step a
    /// duplicate means our ACK was lost: it is answered (RFC 1350). With windows
    /// (RFC 7440 §4):
    /// - a later block (a gap) gets one ACK of the last block in order, after which the
    ///   sender starts a new window there;
    /// - a duplicate at or before our latest ACK means the sender missed that ACK and sent
    ///   its window again: our latest ACK again, once;
    /// - a duplicate after our latest ACK crossed a new window the sender started after it:
    ///   silence, or each such crossing would start yet another window.
    fn out_of_order(&mut self, ctx: &mut Ctx, block: u16) -> Result<(), String> {
        let ahead = block.wrapping_sub(self.expected as u16) < 0x8000;
        let before_ack = (self.acked as u16).wrapping_sub(block) < 0x8000;
        debug!(
            "{} block {block} out of order, expecting {}",
            ctx.log_prefix(),
            self.expected as u16
        );
        let echo = !ahead && self.acked_at.elapsed() < ctx.rto.echo_window();
        let answer = if echo {
            None
        } else if self.w == 1 {
            Some(self.expected - 1)
        } else if self.quiet {
            None
        } else if ahead {
            Some(self.expected - 1)
        } else if before_ack {
            Some(self.acked)
        } else {
            None
        };
        if let Some(a) = answer {
            ctx.send(&packet::ack(a as u16)).map_err(io_str)?;
            if a != self.acked {
                // A new window starts after this ACK.
                self.acked = a;
                self.since_ack = 0;
            }
            self.quiet = self.w > 1;
            self.ack_sent = None;
            self.acked_at = Instant::now();
        }
        ctx.shrink_wait().map_err(io_str)
    }

    /// Nothing arrived for a timeout: say again what we said last, backing off.
    fn timeout(&mut self, ctx: &mut Ctx) -> Result<(), String> {
        ctx.timed_out(&mut self.tries)?;
        self.ack_sent = None;
        // The sender starts a new window after the ACK we repeat now.
        self.acked = self.expected - 1;
        self.since_ack = 0;
        self.quiet = false;
        if !ctx.verified {
            let first = std::mem::take(&mut self.first);
            let sent = ctx.resend_first(&first).map_err(io_str);
            self.first = first;
            sent?;
        } else {
            // The OACK/ACK 0 again while nothing arrived in order, else the last ACK.
            let again = if self.expected == 1 {
                self.first.clone()
            } else {
                packet::ack((self.expected - 1) as u16).to_vec()
            };
            ctx.send(&again).map_err(io_str)?;
            ctx.stats.retransmits += 1;
            self.acked_at = Instant::now();
        }
        ctx.arm().map_err(io_str)
    }
}

/// How long the receiver stays after its final ACK, from the last packet of the peer.
const DALLY: Duration = Duration::from_secs(1);

/// After the final ACK, stays to re-ACK a retransmitted last block (RFC 1350 §6: the final
/// ACK may be lost), as long as the peer keeps sending it.
fn dally(ctx: &mut Ctx, block: u16) {
    if ctx.arm_for(DALLY).is_err() {
        return;
    }
    while let Ok(Some(n)) = ctx.recv() {
        if let Ok(Packet::Data(b, _)) = packet::parse(&ctx.buf[..n]) {
            if b == block && ctx.send(&packet::ack(block)).is_err() {
                return;
            }
            if ctx.arm_for(DALLY).is_err() {
                return;
            }
        }
    }
}
