//! Started by a service manager instead of binding a port (pyftpdlib-inetd `--inetd`,
//! `--inetd-wait`, plus systemd socket activation): inetd "nowait" hands over the accepted
//! connection as stdin, inetd "wait" hands over the listening socket as stdin, systemd hands
//! over listening sockets from fd 3 on (`LISTEN_FDS`, `LISTEN_PID`, sd_listen_fds(3)) and
//! hears `READY=1` / `STOPPING=1` on `NOTIFY_SOCKET` (sd_notify(3)).

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use nix::sys::socket::{
    getsockname, getsockopt, sockopt, AddressFamily, SockType, SockaddrLike, SockaddrStorage,
};

use crate::error::Error;
use crate::handlers::throttle::RateTable;
use crate::handlers::{FtpHandler, Session};

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const SD_LISTEN_FDS_START: i32 = 3;

/// Points stdout at stderr, so a stray print can never reach the client (inetd "nowait":
/// stdout is the connection) or a listening socket (inetd "wait").
///
/// # Errors
/// dup2(2) failed.
pub fn stdout_to_stderr() -> io::Result<()> {
    Ok(nix::unistd::dup2_stdout(io::stderr())?)
}

fn stdin_socket() -> io::Result<OwnedFd> {
    let fd = io::stdin().as_fd().try_clone_to_owned()?;
    if getsockopt(&fd, sockopt::SockType).is_err() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "stdin is not a socket (run this mode from inetd, xinetd or systemd)",
        ));
    }
    Ok(fd)
}

/// The accepted connection inetd "nowait" passes as stdin.
///
/// # Errors
/// stdin is not a connected TCP socket.
pub fn stdin_stream() -> io::Result<TcpStream> {
    stdin_stream_of(stdin_socket()?)
}

fn stdin_stream_of(fd: OwnedFd) -> io::Result<TcpStream> {
    if getsockopt(&fd, sockopt::AcceptConn).unwrap_or(false) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "stdin is a listening socket: use --inetd-wait (-W) for inetd \"wait\" services",
        ));
    }
    let s = TcpStream::from(fd);
    s.peer_addr()?;
    Ok(s)
}

/// The listening socket inetd "wait" passes as stdin.
///
/// # Errors
/// stdin is not a listening TCP socket.
pub fn stdin_listener() -> io::Result<TcpListener> {
    let fd = stdin_socket()?;
    if !getsockopt(&fd, sockopt::AcceptConn).unwrap_or(false) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "stdin is not a listening socket: use --inetd (-I) for inetd \"nowait\" services",
        ));
    }
    Ok(TcpListener::from(fd))
}

/// inetd "nowait": serves the connection on stdin and returns when it ends. Logs go to
/// stderr; stdout is redirected there first. SIGTERM lets a running transfer finish.
///
/// stdin may also be a Unix stream socket, as socat's `EXEC:` (a socketpair) and UCSPI
/// servers such as tcpserver hand over: the client's and the local address then come from
/// the launcher's environment (`SOCAT_PEERADDR`/`SOCAT_PEERPORT` and
/// `SOCAT_SOCKADDR`/`SOCAT_SOCKPORT`, or `TCPREMOTEIP`/`TCPREMOTEPORT` and
/// `TCPLOCALIP`/`TCPLOCALPORT`). Without them the session runs with unknown addresses:
/// passive mode still works — the data channel is TCP on this host, PASV announces
/// `0,0,0,0` (or `-n`/`masquerade_address`), which clients such as curl and Python's ftplib
/// replace with the server's host, and the first connection to the passive port is taken —
/// while PORT/EPRT are refused (501) unless `permit_foreign_addresses`, since no bounce
/// check (RFC 2577) can be made.
///
/// # Errors
/// The handler is invalid or stdin is not a connected stream socket.
pub fn serve_nowait(handler: FtpHandler) -> Result<(), Error> {
    handler.validate()?;
    stdout_to_stderr()?;
    let (stream, addrs) = stdin_connection()?;
    let handler = Arc::new(handler);
    // One session per process: user and server rates hold within it, and its counters
    // are its own (no server adds them up).
    let parent = super::Shared::new(None)?;
    let _ = parent.rates.set(Arc::new(RateTable::with_capacity(1)));
    match addrs {
        None => super::fork::single_session(stream, handler, false, None, &parent),
        Some(addrs) => {
            super::fork::single_session_with(stream, handler, None, &parent, move |s, h, ctx| {
                Session::run_with_addresses(s, h, ctx, addrs)
            })
        }
    };
    Ok(())
}

/// The connection on stdin and, for a Unix socket, the addresses its launcher gave.
fn stdin_connection() -> io::Result<(TcpStream, Option<(SocketAddr, SocketAddr)>)> {
    let fd = stdin_socket()?;
    let family = getsockname::<SockaddrStorage>(fd.as_raw_fd())
        .map_err(io::Error::from)?
        .family();
    if family != Some(AddressFamily::Unix) {
        return stdin_stream_of(fd).map(|s| (s, None));
    }
    if getsockopt(&fd, sockopt::SockType).ok() != Some(SockType::Stream) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "stdin is a Unix socket but not a stream socket",
        ));
    }
    let addrs = (
        launcher_address("SOCAT_PEERADDR", "SOCAT_PEERPORT")
            .or_else(|| launcher_address("TCPREMOTEIP", "TCPREMOTEPORT")),
        launcher_address("SOCAT_SOCKADDR", "SOCAT_SOCKPORT")
            .or_else(|| launcher_address("TCPLOCALIP", "TCPLOCALPORT")),
    );
    if addrs.0.is_none() {
        log::info!(
            "stdin is a Unix socket and the client's address is unknown: passive data \
             connections are taken from any address, PORT/EPRT are refused"
        );
    }
    let unknown = SocketAddr::from(([0, 0, 0, 0], 0));
    // The session only reads, writes, polls, shuts down and sets timeouts on its control
    // socket, which any stream socket supports; its addresses are passed alongside. So the
    // Unix socket travels as the TcpStream the session holds (socket options that only TCP
    // has, such as TCP_NODELAY, fail and are ignored).
    Ok((
        TcpStream::from(fd),
        Some((addrs.0.unwrap_or(unknown), addrs.1.unwrap_or(unknown))),
    ))
}

/// An address a launcher put in the environment (`[::1]` or `127.0.0.1`, and a port).
fn launcher_address(ip: &str, port: &str) -> Option<SocketAddr> {
    let ip = std::env::var(ip).ok()?;
    let ip: IpAddr = ip
        .trim()
        .trim_matches(|c| c == '[' || c == ']')
        .parse()
        .ok()?;
    let port = std::env::var(port).ok()?.trim().parse().ok()?;
    Some(SocketAddr::new(ip, port))
}

/// The listening sockets systemd passed (sd_listen_fds(3)), if `LISTEN_PID` names this
/// process; the `LISTEN_*` variables are then removed so children do not see them.
///
/// # Errors
/// A passed descriptor is not a listening stream socket.
pub fn listen_fds() -> Result<Vec<TcpListener>, Error> {
    let pid = std::env::var("LISTEN_PID").ok();
    let n = std::env::var("LISTEN_FDS").ok();
    let (Some(pid), Some(n)) = (pid, n) else {
        return Ok(Vec::new());
    };
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(Vec::new());
    }
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    let n: i32 = n
        .trim()
        .parse()
        .ok()
        .filter(|n| (0..=64).contains(n))
        .ok_or_else(|| Error::Config(format!("LISTEN_FDS: invalid value {n:?}")))?;
    let mut out = Vec::new();
    for fd in SD_LISTEN_FDS_START..SD_LISTEN_FDS_START + n {
        let owned = adopt_fd(fd)?;
        if !getsockopt(&owned, sockopt::AcceptConn).unwrap_or(false) {
            return Err(Error::Config(format!(
                "LISTEN_FDS: fd {fd} is not a listening socket"
            )));
        }
        out.push(TcpListener::from(owned));
    }
    Ok(out)
}

/// Takes ownership of a descriptor systemd passed, marking it close-on-exec.
#[allow(unsafe_code)]
fn adopt_fd(fd: i32) -> Result<OwnedFd, Error> {
    // SAFETY: borrow_raw needs `fd` open for the borrow's life: F_GETFD below fails on a
    // closed descriptor and nothing closes it meanwhile (we are still starting up).
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    nix::fcntl::fcntl(borrowed, nix::fcntl::FcntlArg::F_GETFD)
        .map_err(|e| Error::Config(format!("LISTEN_FDS: fd {fd}: {e}")))?;
    // Our own duplicate (close-on-exec); the original stays open for the life of the
    // process (systemd's protocol hands it to this process alone), marked close-on-exec too.
    let _ = nix::fcntl::fcntl(
        borrowed,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    borrowed
        .try_clone_to_owned()
        .map_err(|e| Error::Config(format!("LISTEN_FDS: fd {fd}: {e}")))
}

/// Sends `state` (e.g. `"READY=1"`, `"STOPPING=1"`) to the service manager when
/// `NOTIFY_SOCKET` is set (sd_notify(3)); an abstract socket name starts with `@`. Returns
/// whether a message was sent.
pub fn notify(state: &str) -> bool {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return false;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return false;
    };
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
    let r = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
    } else {
        sock.send_to(state.as_bytes(), &path)
    };
    match r {
        Ok(_) => true,
        Err(e) => {
            log::warn!("sd_notify {state}: {e}");
            false
        }
    }
}

/// The listeners the command line serves: stdin for inetd "wait" (stdout then goes to
/// stderr), else systemd's sockets when `LISTEN_FDS` names this process, else what `bind()`
/// binds.
///
/// # Errors
/// stdin or a systemd descriptor is not a listening socket, or `bind` failed.
pub fn listeners_for(
    inetd_wait: bool,
    bind: impl FnOnce() -> Result<Vec<TcpListener>, Error>,
) -> Result<Vec<TcpListener>, Error> {
    if inetd_wait {
        stdout_to_stderr()?;
        return Ok(vec![stdin_listener()?]);
    }
    let fds = listen_fds()?;
    if !fds.is_empty() {
        log::info!("systemd socket activation: {} listener(s)", fds.len());
        return Ok(fds);
    }
    bind()
}

/// Drops root for `run_as` (the `--user` flag) once the sockets are bound; `Some(code)` to
/// exit with when that fails.
#[cfg(feature = "cli")]
pub(crate) fn before_serving(run_as: Option<&str>) -> Option<std::process::ExitCode> {
    let name = run_as?;
    match crate::authorizers::drop_privileges(name) {
        Ok(()) => {
            log::info!("running as user {name:?}");
            None
        }
        Err(e) => {
            eprintln!("ftpdlib: error: --user {name}: {e}");
            Some(std::process::ExitCode::from(1))
        }
    }
}

/// The command line's inetd "nowait" mode.
#[cfg(feature = "cli")]
pub(crate) fn main_nowait(
    handler: Result<FtpHandler, Error>,
    run_as: Option<&str>,
) -> std::process::ExitCode {
    let r = handler.and_then(|h| {
        if let Some(code) = before_serving(run_as) {
            return Ok(Some(code));
        }
        serve_nowait(h).map(|_| None)
    });
    match r {
        Ok(Some(code)) => code,
        Ok(None) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            log::error!("inetd: {e}");
            eprintln!("ftpdlib: error: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
