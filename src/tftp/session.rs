//! One transfer, from the first reply to the last ACK (fbtftp `BaseHandler.run` and its
//! retransmission logic): RFC 1350 §2–§6 (lock-step, TIDs, ERROR 5 for strangers, block
//! rollover), RFC 2347 (OACK handshake), RFC 7440 (windows of blocks).

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Instant;

use log::{debug, info, warn};

use super::options::{self, Negotiated, OptionLimits};
use super::packet::{self, ErrorCode, Mode, Packet, Request};
use super::response::NetasciiEncoder;
use super::rto::Rto;
use super::sender::send_blocks;
use super::server::Shared;
use super::stats::SessionStats;
use super::transport::{io_error_reply, path_max_blksize, Ctx};
use super::{upload, RequestInfo};

/// A file name as it may appear in a log line: control characters (CR, LF, ESC…) escaped,
/// so a client cannot forge log lines or terminal sequences.
pub(crate) fn printable(name: &str) -> String {
    if name.chars().any(char::is_control) {
        name.escape_debug().to_string()
    } else {
        name.to_owned()
    }
}

/// Runs one session to its end on `sockets` (the session's own socket, connected to the
/// peer, and the one that answers strangers, opened by the acceptor) and returns its
/// statistics.
pub(crate) fn run(
    shared: &Arc<Shared>,
    req: Request,
    peer: SocketAddr,
    local: SocketAddr,
    sockets: (UdpSocket, Option<UdpSocket>),
) -> SessionStats {
    let started = Instant::now();
    let stats = SessionStats::new(peer, local, &req);
    let mut ctx = match session_ctx(shared, peer, sockets, &stats, started) {
        Ok(c) => c,
        Err(e) => {
            warn!("{peer} cannot set up the session socket: {e}");
            return SessionStats {
                error: Some(format!("socket: {e}")),
                ..stats
            };
        }
    };
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
        printable(&req.filename),
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
    log_outcome(&ctx, &result);
    ctx.stats.error = result.err();
    handler.session_stats_callback(&ctx.stats);
    ctx.stats
}

/// The session's transfer context on its own socket, with the server's timeouts, the
/// anti-reflection budget and the session's end of life.
fn session_ctx(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    (sock, strays): (UdpSocket, Option<UdpSocket>),
    stats: &SessionStats,
    started: Instant,
) -> std::io::Result<Ctx> {
    let cfg = &shared.cfg;
    let rto = Rto::new(cfg.timeout, cfg.min_timeout, cfg.limits.max_timeout);
    let end_of_life = cfg.max_session_time.map(|t| started + t);
    let mut ctx = Ctx::new(sock, peer, rto, cfg.retries, stats.clone(), end_of_life)?;
    ctx.set_strays(strays);
    ctx.set_budget(shared.budget.clone());
    Ok(ctx)
}

/// One line at the end of a session: its figures (debug) or why it failed (info).
fn log_outcome(ctx: &Ctx, result: &Result<(), String>) {
    match result {
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
}

/// Negotiates against the session's limits (blksize bounded by the path MTU); the client's
/// timeout, when accepted, caps the retransmission timeout (RFC 2349).
pub(crate) fn negotiate(
    ctx: &mut Ctx,
    shared: &Shared,
    req: &Request,
    size: Option<u64>,
) -> Result<Negotiated, String> {
    let limits = OptionLimits {
        max_blksize: path_max_blksize(ctx, shared.cfg.limits.max_blksize),
        max_upload: Some(shared.cfg.max_upload),
        ..shared.cfg.limits
    };
    match options::negotiate(&req.options, req.write, size, &limits) {
        Ok(n) => {
            if let Some(t) = n.timeout {
                ctx.rto.cap(t);
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

/// Sends the OACK and waits for its ACK 0 (RFC 2347 §2). The OACK is the session's first
/// packet: it goes at most twice before the peer answers.
fn oack_handshake(ctx: &mut Ctx, n: &Negotiated) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    let oack = packet::oack(&n.oack);
    let sent = Instant::now();
    let mut resent = false;
    ctx.send_first(&oack).map_err(io)?;
    ctx.arm().map_err(io)?;
    let mut tries = 0;
    loop {
        let Some(len) = ctx.recv().map_err(io)? else {
            ctx.timed_out(&mut tries)
                .map_err(|_| "no answer to the OACK".to_owned())?;
            resent |= ctx.resend_first(&oack).map_err(io)?;
            ctx.arm().map_err(io)?;
            continue;
        };
        match packet::parse(&ctx.buf[..len]) {
            Ok(Packet::Ack(0)) => {
                if !resent {
                    ctx.rto.sample(sent.elapsed());
                }
                return Ok(());
            }
            Ok(Packet::Ack(_)) => ctx.shrink_wait().map_err(io)?,
            Ok(Packet::Error(code, msg)) => {
                return Err(format!("peer refused the options: ERROR {code} {msg}"))
            }
            _ => {
                ctx.send_error(ErrorCode::IllegalOperation, "Expected ACK of OACK");
                return Err("unexpected packet after OACK".into());
            }
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
