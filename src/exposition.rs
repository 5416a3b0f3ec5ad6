//! The HTTP side of ftpdlib's Prometheus endpoints, shared by the FTP server
//! (`servers::metrics`) and the TFTP framework (`tftp::metrics`), which each render their own
//! text: a small blocking HTTP server (tiny_http) on a listener of its own, never a protocol
//! port, answering `GET /metrics` (and `HEAD`), 404 for any other path and 405 for any other
//! method. It runs on a thread of the serving process, or in a process of its own where the
//! server forks (a process may fork only while it runs a single thread).

use std::io;
use std::net::TcpListener;
use std::os::fd::RawFd;
use std::sync::Arc;

/// What an endpoint serves: the exposition text at the moment of the request.
pub(crate) type Render = Box<dyn Fn() -> String + Send>;

/// Answers requests until the server is unblocked.
fn serve(http: &tiny_http::Server, render: &dyn Fn() -> String) {
    for req in http.incoming_requests() {
        let path = req.url().split('?').next().unwrap_or("");
        let resp = if path != "/metrics" {
            tiny_http::Response::from_string("Not Found: try /metrics\n").with_status_code(404)
        } else if !matches!(
            req.method(),
            tiny_http::Method::Get | tiny_http::Method::Head
        ) {
            tiny_http::Response::from_string("Method Not Allowed\n").with_status_code(405)
        } else {
            let mut r = tiny_http::Response::from_string(render());
            if let Ok(h) = tiny_http::Header::from_bytes(
                &b"Content-Type"[..],
                &b"text/plain; version=0.0.4; charset=utf-8"[..],
            ) {
                r = r.with_header(h);
            }
            r
        };
        if let Err(e) = req.respond(resp) {
            log::debug!("metrics: {e}");
        }
    }
}

fn http(listener: TcpListener) -> io::Result<tiny_http::Server> {
    tiny_http::Server::from_listener(listener, None).map_err(|e| io::Error::other(e.to_string()))
}

/// An endpoint served from a thread of this process; dropping it stops the thread.
pub(crate) struct Thread {
    http: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Thread {
    /// Serves `render`'s text on `listener` from a thread named `name`.
    pub(crate) fn start(listener: TcpListener, name: &str, render: Render) -> io::Result<Thread> {
        let http = Arc::new(http(listener)?);
        let h = http.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .stack_size(128 * 1024)
            .spawn(move || serve(&h, &render))?;
        Ok(Thread {
            http,
            thread: Some(thread),
        })
    }
}

impl Drop for Thread {
    fn drop(&mut self) {
        self.http.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Forks the endpoint's own process (call while this process runs a single thread) and
/// returns its pid. The child dies with its parent (`PR_SET_PDEATHSIG`), closes `close` (the
/// parent's listening sockets) first, serves `render`'s text on `listener` and never returns;
/// `what` names it in the fork's error.
pub(crate) fn fork(
    what: &str,
    listener: TcpListener,
    close: &[RawFd],
    render: &dyn Fn() -> String,
) -> io::Result<nix::unistd::Pid> {
    use nix::unistd::ForkResult;
    match crate::process::fork(what)? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => {
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
            for fd in close {
                let _ = nix::unistd::close(*fd);
            }
            match http(listener) {
                Ok(http) => serve(&http, render),
                Err(e) => log::error!("{what} endpoint: {e}"),
            }
            std::process::exit(0)
        }
    }
}
