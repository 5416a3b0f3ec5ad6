//! The log format of the `ftpdlib` and `tftpd` programs: `[L TIMESTAMP] message` on stderr
//! or in a file, pyftpdlib's shape (`[I 2024-05-01 12:00:00] ...`). Only the binaries set
//! up a logger; library users bring their own.
//!
//! A log file (`--log-file`) is opened with `O_APPEND`, and each record reaches it in one
//! `write(2)`, so the threads and the forked processes of a server append whole lines.
//! [`LogFile::reopen`] opens the path again: after logrotate has moved the file, SIGHUP
//! makes the server write to a new one, with no `copytruncate`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The log file the logger writes to, reopened on demand.
#[derive(Clone)]
pub(crate) struct LogFile {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl LogFile {
    fn open(path: &Path) -> io::Result<LogFile> {
        Ok(LogFile {
            path: path.to_path_buf(),
            file: Arc::new(Mutex::new(open_append(path)?)),
        })
    }

    /// Opens the path again; records from now on go to the new file. On failure the old
    /// file is kept (and the failure logged there).
    pub(crate) fn reopen(&self) {
        match open_append(&self.path) {
            Ok(f) => {
                match self.file.lock() {
                    Ok(mut cur) => *cur = f,
                    Err(p) => *p.into_inner() = f,
                }
                log::info!("log file {} reopened", self.path.display());
            }
            Err(e) => log::error!("cannot reopen the log file {}: {e}", self.path.display()),
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The logger's view of a [`LogFile`]: each record is one `write_all` of a whole line.
struct Sink(Arc<Mutex<File>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut f = match self.0.lock() {
            Ok(f) => f,
            Err(p) => p.into_inner(),
        };
        f.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Starts logging at `verbosity` (0 info, 1 debug, 2 trace) unless `RUST_LOG` says
/// otherwise, to `file` (appended) or stderr. Only ftpdlib's own lines get more verbose:
/// the libraries under it stay at info, so `-D` shows each command, reply and data
/// connection rather than the TLS library's handshake internals. rustls is silent unless
/// `RUST_LOG` names it: its lines lack the session's prefix (and a build that compiles its
/// logging in, as the test builds do, would warn about clients sending an IP address as
/// SNI). Returns the log file, to reopen on SIGHUP.
///
/// # Errors
/// `file` cannot be opened.
pub(crate) fn init(verbosity: u8, file: Option<&Path>) -> io::Result<Option<LogFile>> {
    let filter = match verbosity {
        0 => "info",
        1 => "info,ftpdlib=debug",
        _ => "info,ftpdlib=trace",
    };
    let log_file = file.map(LogFile::open).transpose()?;
    let target = match &log_file {
        Some(f) => env_logger::Target::Pipe(Box::new(Sink(f.file.clone()))),
        None => env_logger::Target::Stderr,
    };
    let env = env_logger::Env::default().default_filter_or(filter);
    let _ = env_logger::Builder::new()
        .filter_module("rustls", log::LevelFilter::Off)
        .parse_env(env)
        .format(|buf, rec| {
            let l = rec.level().as_str().chars().next().unwrap_or('?');
            writeln!(buf, "[{l} {}] {}", buf.timestamp_seconds(), rec.args())
        })
        .target(target)
        .try_init();
    Ok(log_file)
}
