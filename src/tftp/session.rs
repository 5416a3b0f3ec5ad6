//! One transfer, from the first reply to the last ACK (fbtftp `BaseHandler.run` and its
//! retransmission logic): RFC 1350 §2–§6 (lock-step, TIDs, ERROR 5 for strangers, block
//! rollover), RFC 2347 (OACK handshake), RFC 7440 (windows of blocks).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use log::{debug, info, warn};

use super::options::{self, Limits, Negotiated};
use super::packet::{self, ErrorCode, Mode, Packet, Request};
use super::response::{NetasciiEncoder, ResponseData};
use super::server::Shared;
use super::stats::SessionStats;
use super::transport::{io_error_reply, open_sockets, path_max_blksize, Ctx};
use super::{upload, RequestInfo};

/// Runs one session to its end and returns its statistics.
pub(crate) fn run(
    shared: &Arc<Shared>,
    req: Request,
    peer: SocketAddr,
    local: SocketAddr,
) -> SessionStats {
    let started = Instant::now();
    let mut stats = SessionStats::new(peer, local, &req);
    let sockets = open_sockets(local.ip(), peer).and_then(|(s, strays)| {
        s.set_read_timeout(Some(shared.cfg.timeout))
            .map(|()| (s, strays))
    });
    let (sock, strays) = match sockets {
        Ok(s) => s,
        Err(e) => {
            warn!("{peer} cannot open a session socket: {e}");
            stats.error = Some(format!("socket: {e}"));
            return stats;
        }
    };
    let mut ctx = Ctx::new(sock, peer, shared.cfg.timeout, shared.cfg.retries, stats);
    ctx.set_strays(strays);
    let info = RequestInfo {
        server_addr: local,
        peer,
        path: req.filename.clone(),
        mode: req.mode,
        options: req.options.clone(),
        write: req.write,
    };
    let mut handler = (shared.cfg.handler_factory)(&info);
    info!(
        "{} {} {} mode {} options {:?}",
        peer,
        if req.write { "WRQ" } else { "RRQ" },
        req.filename,
        req.mode,
        req.options
    );
    let result = if req.mode == Mode::Mail {
        ctx.send_error(ErrorCode::IllegalOperation, "Mail mode not supported");
        Err("mail mode refused".to_owned())
    } else if req.write {
        upload::run(&mut ctx, shared, &req)
    } else {
        serve_read(&mut ctx, shared, &mut *handler, &info, &req)
    };
    ctx.stats.duration = started.elapsed();
    match &result {
        Ok(()) => debug!(
            "{} done: {} bytes sent, {} received, {} retransmits in {:?}",
            ctx.log_prefix(),
            ctx.stats.bytes_sent,
            ctx.stats.bytes_received,
            ctx.stats.retransmits,
            ctx.stats.duration
        ),
        Err(e) => info!("{} failed: {e}", ctx.log_prefix()),
    }
    ctx.stats.error = result.err();
    handler.session_stats_callback(&ctx.stats);
    ctx.stats
}

/// Reads `buf.len()` bytes unless the data ends first.
fn read_full(data: &mut dyn ResponseData, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match data.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n.min(buf.len() - got),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Negotiates against the session's limits (blksize bounded by the path MTU).
pub(crate) fn negotiate(
    ctx: &mut Ctx,
    shared: &Shared,
    req: &Request,
    size: Option<u64>,
) -> Result<Negotiated, String> {
    let limits = Limits {
        max_blksize: path_max_blksize(ctx, shared.cfg.limits.max_blksize),
        max_upload: Some(shared.cfg.max_upload),
        ..shared.cfg.limits
    };
    match options::negotiate(&req.options, req.write, size, &limits) {
        Ok(n) => {
            if let Some(t) = n.timeout {
                ctx.timeout = t;
                ctx.sock
                    .set_read_timeout(Some(t))
                    .map_err(|e| e.to_string())?;
            }
            ctx.stats.blksize = n.blksize;
            ctx.stats.windowsize = n.windowsize;
            ctx.stats.negotiated = n.oack.clone();
            Ok(n)
        }
        Err((code, msg)) => {
            ctx.send_error(code, &msg);
            Err(msg)
        }
    }
}

/// Sends the OACK and waits for its ACK 0 (RFC 2347 §2), retransmitting on timeout.
fn oack_handshake(ctx: &mut Ctx, n: &Negotiated) -> Result<(), String> {
    let oack = packet::oack(&n.oack);
    ctx.send(&oack).map_err(|e| e.to_string())?;
    ctx.arm().map_err(|e| e.to_string())?;
    let mut tries = 0;
    loop {
        let Some(len) = ctx.recv().map_err(|e| e.to_string())? else {
            tries += 1;
            if tries > ctx.retries {
                return Err("timeout waiting for the ACK of the OACK".into());
            }
            ctx.send(&oack).map_err(|e| e.to_string())?;
            ctx.stats.retransmits += 1;
            ctx.arm().map_err(|e| e.to_string())?;
            continue;
        };
        match packet::parse(&ctx.buf[..len]) {
            Ok(Packet::Ack(0)) => return Ok(()),
            Ok(Packet::Ack(_)) => ctx.shrink_wait().map_err(|e| e.to_string())?,
            Ok(Packet::Error(code, msg)) => {
                return Err(format!("peer refused the options: ERROR {code} {msg}"))
            }
            _ => {
                ctx.send_error(ErrorCode::IllegalOperation, "Expected ACK of OACK");
                return Err("unexpected packet after OACK".into());
            }
        }
        if ctx.expired() {
            tries += 1;
            if tries > ctx.retries {
                return Err("timeout waiting for the ACK of the OACK".into());
            }
            ctx.send(&oack).map_err(|e| e.to_string())?;
            ctx.stats.retransmits += 1;
            ctx.arm().map_err(|e| e.to_string())?;
        }
    }
}

fn serve_read(
    ctx: &mut Ctx,
    shared: &Shared,
    handler: &mut dyn super::TftpHandler,
    info: &RequestInfo,
    req: &Request,
) -> Result<(), String> {
    let mut data = match handler.get_response_data(info) {
        Ok(d) => d,
        Err(e) => {
            let (code, msg) = io_error_reply(&e);
            ctx.send_error(code, msg);
            return Err(format!("no response data: {e}"));
        }
    };
    if req.mode == Mode::Netascii {
        data = Box::new(NetasciiEncoder::new(data));
    }
    let size = if req.mode == Mode::Octet {
        data.size()
    } else {
        None
    };
    let result = negotiate(ctx, shared, req, size).and_then(|n| {
        if !n.oack.is_empty() {
            oack_handshake(ctx, &n)?;
        }
        send_blocks(ctx, &mut *data, &n)
    });
    data.close();
    result
}

/// The sender: windows of `windowsize` blocks (RFC 7440), 1 without the option (RFC 1350
/// lock-step). Only a timeout resends, and it resends what is unacknowledged: a duplicate
/// ACK is ignored (Sorcerer's Apprentice, RFC 1123 §4.2.3.1), an ACK for a block not yet
/// sent is ignored. Block numbers wrap 65535 → 0.
fn send_blocks(ctx: &mut Ctx, data: &mut dyn ResponseData, n: &Negotiated) -> Result<(), String> {
    let bs = n.blksize;
    let w = u64::from(n.windowsize.max(1));
    let mut window: std::collections::VecDeque<Vec<u8>> = std::collections::VecDeque::new();
    let mut spare: Vec<Vec<u8>> = Vec::new();
    let mut base: u64 = 1; // first unacknowledged block
    let mut next: u64 = 1; // next block never sent
    let mut last: Option<u64> = None; // the final (short) block, once read
    let mut tries = 0;
    if w > 1 {
        ctx.enable_gso(bs + 4);
    }
    loop {
        let first_new = window.len();
        while next < base + w && last.map_or(true, |l| next <= l) {
            let mut b = spare.pop().unwrap_or_default();
            b.resize(4 + bs, 0);
            let got = read_full(data, &mut b[4..]).map_err(|e| {
                ctx.send_error(ErrorCode::NotDefined, "Read error");
                format!("read error: {e}")
            })?;
            b.truncate(4 + got);
            packet::data_header(&mut b, next as u16);
            if got < bs {
                last = Some(next);
            }
            ctx.stats.bytes_sent += got as u64;
            window.push_back(b);
            next += 1;
        }
        if window.len() > first_new {
            let burst: Vec<&[u8]> = window.range(first_new..).map(Vec::as_slice).collect();
            ctx.send_burst(&burst).map_err(|e| e.to_string())?;
            ctx.arm().map_err(|e| e.to_string())?;
        }
        let got = ctx.recv().map_err(|e| e.to_string())?;
        let timed_out = match got {
            None => true,
            Some(len) => match packet::parse(&ctx.buf[..len]) {
                Ok(Packet::Ack(a)) => {
                    // 0 = the last ACK again; beyond the outstanding count = a block never sent.
                    let offset = u64::from(a.wrapping_sub((base - 1) as u16));
                    if offset != 0 && offset <= next - base {
                        for _ in 0..offset {
                            if let Some(b) = window.pop_front() {
                                spare.push(b);
                            }
                        }
                        base += offset;
                        tries = 0;
                        ctx.stats.blocks = base - 1;
                        if last == Some(base - 1) {
                            return Ok(());
                        }
                        false
                    } else if ctx.expired() {
                        true
                    } else {
                        ctx.shrink_wait().map_err(|e| e.to_string())?;
                        false
                    }
                }
                Ok(Packet::Error(code, msg)) => {
                    return Err(format!("peer sent ERROR {code} {msg}"));
                }
                _ => {
                    ctx.send_error(ErrorCode::IllegalOperation, "Expected ACK");
                    return Err("unexpected packet during a read".into());
                }
            },
        };
        if timed_out {
            tries += 1;
            if tries > ctx.retries {
                return Err(format!("timeout after {} retries", ctx.retries));
            }
            debug!(
                "{} timeout, resending {} block(s)",
                ctx.log_prefix(),
                window.len()
            );
            let burst: Vec<&[u8]> = window.iter().map(Vec::as_slice).collect();
            ctx.send_burst(&burst).map_err(|e| e.to_string())?;
            for b in &window {
                ctx.stats.retransmits += 1;
                ctx.stats.bytes_sent += (b.len() - 4) as u64;
            }
            ctx.arm().map_err(|e| e.to_string())?;
        }
    }
}
