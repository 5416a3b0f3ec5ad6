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
            let (y, mo, d, h, mi, s) = utc(std::time::SystemTime::now());
            writeln!(
                buf,
                "[{l} {y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z] {}",
                rec.args()
            )
        })
        .target(target)
        .try_init();
    Ok(log_file)
}

/// The UTC calendar date and time of `t`, to the second (RFC 3339's fields; the proleptic
/// Gregorian calendar, H. Hinnant's `civil_from_days`). Written out here rather than through
/// env_logger's timestamp: a log line is written from the deepest frames of a session, and
/// that formatter's call chain alone took an idle session's thread a stack page further.
fn utc(t: std::time::SystemTime) -> (i64, u32, u32, u32, u32, u32) {
    let secs = match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    };
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    // Every field is within its range by construction: the casts cannot truncate.
    let f = |v: i64| u32::try_from(v).unwrap_or(0);
    (
        y,
        f(m),
        f(d),
        f(rem / 3600),
        f(rem % 3600 / 60),
        f(rem % 60),
    )
}

#[cfg(test)]
mod tests {
    use super::utc;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn utc_fields() {
        let at = |s: u64| utc(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(at(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(at(1_796_567_521), (2026, 12, 6, 14, 32, 1));
        assert_eq!(at(4_107_542_399), (2100, 2, 28, 23, 59, 59));
        assert_eq!(
            utc(UNIX_EPOCH - Duration::from_secs(1)),
            (1969, 12, 31, 23, 59, 59)
        );
    }
}
