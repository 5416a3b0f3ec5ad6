//! Write requests (beyond fbtftp, which is read-only): the receiver side of RFC 1350 §6
//! and RFC 7440 windows, into a configured upload directory with an atomic commit
//! (a temporary file, then a link to the final name) and a size cap (RFC 2349 tsize).

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use log::debug;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstatat, Mode as FileMode};
use nix::unistd::{linkat, unlinkat, UnlinkatFlags};

use super::packet::{self, ErrorCode, Mode, Packet, Request};
use super::response::{relative, NetasciiDecoder};
use super::server::Shared;
use super::session::negotiate;
use super::transport::{io_error_reply, Ctx};
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

/// Runs a write request to its end.
pub(crate) fn run(ctx: &mut Ctx, shared: &Shared, req: &Request) -> Result<(), String> {
    let Some(dir) = &shared.cfg.upload_dir else {
        ctx.send_error(ErrorCode::AccessViolation, "Write requests are not allowed");
        return Err("write refused: no upload directory".into());
    };
    let mut up = match Upload::create(dir, &req.filename) {
        Ok(u) => u,
        Err(e) => {
            let (code, msg) = io_error_reply(&e);
            let msg = if code == ErrorCode::NotDefined {
                "Cannot create the file"
            } else {
                msg
            };
            ctx.send_error(code, msg);
            return Err(format!("cannot create upload: {e}"));
        }
    };
    let n = negotiate(ctx, shared, req, None)?;
    let bs = n.blksize;
    let w = u64::from(n.windowsize.max(1));
    let max = shared.cfg.max_upload;
    let first = if n.oack.is_empty() {
        packet::ack(0).to_vec()
    } else {
        packet::oack(&n.oack)
    };
    ctx.send(&first).map_err(io_str)?;
    ctx.arm().map_err(io_str)?;
    let mut decoder = (req.mode == Mode::Netascii).then(NetasciiDecoder::default);
    let mut plain = Vec::new();
    let mut expected: u64 = 1;
    let mut since_ack = 0u64;
    let mut gap_acked = false;
    let mut tries = 0;
    loop {
        let Some(len) = ctx.recv().map_err(io_str)? else {
            tries += 1;
            if tries > ctx.retries {
                return Err(format!("timeout after {} retries", ctx.retries));
            }
            // Say again what we last said: the OACK/ACK 0, or the ACK of the last good block.
            let again = if expected == 1 {
                first.clone()
            } else {
                packet::ack((expected - 1) as u16).to_vec()
            };
            ctx.send(&again).map_err(io_str)?;
            ctx.stats.retransmits += 1;
            ctx.arm().map_err(io_str)?;
            continue;
        };
        match packet::parse(&ctx.buf[..len]) {
            Ok(Packet::Data(block, payload)) if block == expected as u16 => {
                if payload.len() > bs {
                    ctx.send_error(ErrorCode::IllegalOperation, "Block larger than blksize");
                    return Err("oversized block".into());
                }
                let is_last = payload.len() < bs;
                ctx.stats.bytes_received += payload.len() as u64;
                if ctx.stats.bytes_received > max {
                    ctx.send_error(ErrorCode::DiskFull, "Upload size limit exceeded");
                    return Err("upload over the size cap".into());
                }
                let written = match &mut decoder {
                    Some(d) => {
                        plain.clear();
                        d.decode(payload, &mut plain);
                        if is_last {
                            d.finish(&mut plain);
                        }
                        up.write(&plain)
                    }
                    None => up.write(payload),
                };
                if let Err(e) = written {
                    let full = e.raw_os_error() == Some(nix::libc::ENOSPC);
                    let code = if full {
                        ErrorCode::DiskFull
                    } else {
                        ErrorCode::NotDefined
                    };
                    ctx.send_error(code, "Write error");
                    return Err(format!("write error: {e}"));
                }
                ctx.stats.blocks = expected;
                expected += 1;
                since_ack += 1;
                tries = 0;
                gap_acked = false;
                if is_last {
                    if let Err(e) = up.commit() {
                        let (code, msg) = io_error_reply(&e);
                        ctx.send_error(code, msg);
                        return Err(format!("commit failed: {e}"));
                    }
                    ctx.send(&packet::ack(block)).map_err(io_str)?;
                    dally(ctx, block);
                    return Ok(());
                }
                if since_ack >= w {
                    ctx.send(&packet::ack(block)).map_err(io_str)?;
                    since_ack = 0;
                }
                // The peer is alive: a long window is not a timeout.
                ctx.arm().map_err(io_str)?;
            }
            Ok(Packet::Data(block, _)) => {
                // A duplicate or a gap: re-ACK the last good block, once per gap when
                // windowing (RFC 7440 §4) so a lost block does not cost a window of ACKs.
                debug!("unexpected block {block}, expecting {}", expected as u16);
                if w == 1 || !gap_acked {
                    let again = if expected == 1 {
                        first.clone()
                    } else {
                        packet::ack((expected - 1) as u16).to_vec()
                    };
                    ctx.send(&again).map_err(io_str)?;
                    gap_acked = true;
                    since_ack = 0;
                }
                if ctx.expired() {
                    ctx.arm().map_err(io_str)?;
                } else {
                    ctx.shrink_wait().map_err(io_str)?;
                }
            }
            Ok(Packet::Error(code, msg)) => return Err(format!("peer sent ERROR {code} {msg}")),
            _ => {
                ctx.send_error(ErrorCode::IllegalOperation, "Expected DATA");
                return Err("unexpected packet during a write".into());
            }
        }
    }
}

/// After the final ACK, stays a little to re-ACK a retransmitted last block (RFC 1350 §6:
/// the final ACK may be lost).
fn dally(ctx: &mut Ctx, block: u16) {
    let wait = ctx.timeout.min(Duration::from_secs(1));
    if ctx.sock.set_read_timeout(Some(wait)).is_err() {
        return;
    }
    for _ in 0..3 {
        match ctx.sock.recv_from(&mut ctx.buf) {
            Ok((n, from)) if from == ctx.peer => {
                if let Ok(Packet::Data(b, _)) = packet::parse(&ctx.buf[..n]) {
                    if b == block && ctx.send(&packet::ack(block)).is_err() {
                        return;
                    }
                }
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}
