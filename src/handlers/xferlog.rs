//! The transfer log in the wu-ftpd `xferlog(5)` format, as vsftpd writes it with
//! `xferlog_std_format=YES` (vsftpd `logging.c`, `vsf_log_do_log_wuftpd_format`), which log
//! analysers (webalizer, AWStats, xferstats) already read. One line per file transfer,
//! complete or not, fourteen fields separated by single spaces:
//!
//! ```text
//! Mon Jan  6 09:05:02 2025 1 127.0.0.1 1048576 /pub/file.iso b _ o r alice ftp 0 * c
//! ```
//!
//! current time (24 characters, `%a %b %e %H:%M:%S %Y`), transfer time in whole seconds (at
//! least 1), remote host, bytes, file name (the virtual path; spaces become `_` as vsftpd
//! writes them), `a`scii or `b`inary, special action `_`, direction `o`utgoing or
//! `i`ncoming, access mode `a`nonymous or `r`eal, user name (for the anonymous user, the
//! identification string given as password), service `ftp`, authentication method `0`,
//! authenticated user id `*`, completion `c`omplete or `i`ncomplete.
//!
//! Each line is one `write(2)` to a file opened with `O_APPEND`, so the sessions of every
//! thread and every forked process append whole lines. [`XferLog::reopen`] opens the file
//! again (after logrotate moved it; SIGHUP does it for the command-line server).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use super::stats::{TransferResult, TransferStats};
use crate::filesystems::listing::{breakdown, unix_secs};

/// An xferlog file.
#[derive(Debug)]
pub struct XferLog {
    path: PathBuf,
    file: Mutex<File>,
    /// Times in UTC (true) or local time.
    use_gmt: bool,
}

impl XferLog {
    /// Opens (creates, mode 0600 as vsftpd does) `path` for appending; times are written in
    /// UTC when `use_gmt`, else in local time.
    ///
    /// # Errors
    /// The file cannot be opened.
    pub fn open(path: &Path, use_gmt: bool) -> io::Result<XferLog> {
        Ok(XferLog {
            path: path.to_path_buf(),
            file: Mutex::new(open_append(path)?),
            use_gmt,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the path again, for lines from now on (log rotation). On failure the old file
    /// is kept.
    ///
    /// # Errors
    /// The file cannot be opened.
    pub fn reopen(&self) -> io::Result<()> {
        let fresh = open_append(&self.path)?;
        match self.file.lock() {
            Ok(mut f) => *f = fresh,
            Err(p) => *p.into_inner() = fresh,
        }
        Ok(())
    }

    /// Appends the line of a transfer (a failure is logged, not returned: a full log disk
    /// must not fail transfers).
    pub fn write(&self, t: &TransferStats) {
        let mut line = format_line(t, SystemTime::now(), self.use_gmt);
        line.push('\n');
        let mut f = match self.file.lock() {
            Ok(f) => f,
            Err(p) => p.into_inner(),
        };
        if let Err(e) = f.write_all(line.as_bytes()) {
            log::warn!("xferlog {}: {e}", self.path.display());
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `Mon Jan  6 09:05:02 2025` (ctime(3) without its newline).
fn ctime(t: SystemTime, use_gmt: bool) -> String {
    let secs = unix_secs(t);
    let tm = breakdown(t, use_gmt);
    let local = if use_gmt {
        secs
    } else {
        secs + crate::filesystems::listing::local_offset(secs)
    };
    let weekday = (local.div_euclid(86_400) + 4).rem_euclid(7) as usize;
    format!(
        "{} {} {:>2} {:02}:{:02}:{:02} {}",
        DAYS[weekday],
        MONTHS[(tm.month as usize).saturating_sub(1) % 12],
        tm.day,
        tm.hour,
        tm.min,
        tm.sec,
        tm.year
    )
}

/// A field with no space or control character in it (spaces become `_`, as vsftpd writes
/// file names; control characters `?`); `*` when empty.
fn field(s: &str) -> String {
    if s.is_empty() {
        return "*".into();
    }
    s.chars()
        .map(|c| match c {
            ' ' => '_',
            c if c.is_control() => '?',
            c => c,
        })
        .collect()
}

/// The xferlog line of a transfer that ended at `now` (without the newline).
pub fn format_line(t: &TransferStats, now: SystemTime, use_gmt: bool) -> String {
    let secs = t.duration.as_secs_f64().round().max(1.0) as u64;
    let name = field(&t.vpath.to_string_lossy());
    let (mode, user) = match &t.anonymous_id {
        Some(id) => ("a", field(id)),
        None => ("r", field(&t.user)),
    };
    format!(
        "{} {secs} {} {} {name} {} _ {} {mode} {user} ftp 0 * {}",
        ctime(now, use_gmt),
        t.peer.ip(),
        t.bytes,
        if t.ascii { "a" } else { "b" },
        if t.upload { "i" } else { "o" },
        if t.result == TransferResult::Complete {
            "c"
        } else {
            "i"
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn transfer() -> TransferStats {
        TransferStats {
            command: "STOR".into(),
            user: "anonymous".into(),
            anonymous_id: Some("guest@example.com".into()),
            peer: "[::1]:5000".parse().unwrap(),
            vpath: "/in/my file.txt".into(),
            path: "/srv/in/my file.txt".into(),
            upload: true,
            ascii: true,
            bytes: 42,
            duration: Duration::from_millis(10),
            result: TransferResult::Aborted,
            tls: false,
        }
    }

    #[test]
    fn fourteen_fields_after_a_ctime_date() {
        // 2025-01-06 09:05:02 UTC, a Monday.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_736_154_302);
        let line = format_line(&transfer(), now, true);
        assert_eq!(
            line,
            "Mon Jan  6 09:05:02 2025 1 ::1 42 /in/my_file.txt a _ i a guest@example.com ftp 0 * i"
        );
        assert_eq!(line.split(' ').filter(|f| !f.is_empty()).count(), 5 + 13);
    }

    #[test]
    fn real_users_and_long_transfers() {
        let mut t = transfer();
        t.anonymous_id = None;
        t.user = "bob".into();
        t.duration = Duration::from_millis(2600);
        t.result = TransferResult::Complete;
        t.upload = false;
        t.ascii = false;
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        let line = format_line(&t, now, true);
        assert!(
            line.starts_with("Tue Feb 29 00:00:00 2000 3 ::1 42 "),
            "{line}"
        );
        assert!(line.ends_with(" b _ o r bob ftp 0 * c"), "{line}");
    }
}
