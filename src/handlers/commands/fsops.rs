//! Files and directories: MKD, RMD, DELE, RNFR/RNTO, SIZE, MDTM, MFMT, SITE CHMOD
//! (RFC 959 §4.1.3, RFC 3659 §3–4, draft-somers-ftp-mfxx; pyftpdlib's texts).

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{fs_error, quoted, wire};
use crate::beneath::Escape;
use crate::filesystems::listing::{format_timeval, parse_timeval};
use crate::filesystems::FileKind;
use crate::handlers::{Request, Session};
use crate::proto::TransferType;

fn target(req: &Request) -> &Path {
    req.vpath.as_deref().unwrap_or(Path::new("/nonexistent"))
}

/// The session's root, as a virtual path.
fn is_root(vpath: &Path) -> bool {
    vpath.as_os_str().as_bytes() == b"/"
}

pub(super) fn mkd(s: &mut Session, req: &Request) -> io::Result<()> {
    let path = target(req);
    let perm = 0o777 & !s.h.umask;
    let Some(fs) = s.account.fs.as_mut() else {
        return Ok(());
    };
    match fs.fs().mkdir(path, perm) {
        Ok(()) => {
            let mut msg = quoted(s, path.as_os_str().as_bytes());
            msg.extend_from_slice(b" directory created.");
            s.reply_bytes(257, &msg)
        }
        Err(e) => fs_error(s, &e),
    }
}

pub(super) fn rmd(s: &mut Session, req: &Request) -> io::Result<()> {
    let path = target(req);
    if is_root(path) {
        return s.reply(550, "Can't remove root directory.");
    }
    let Some(fs) = s.account.fs.as_mut() else {
        return Ok(());
    };
    match fs.fs().rmdir(path) {
        Ok(()) => s.reply(250, "Directory removed."),
        Err(e) => fs_error(s, &e),
    }
}

/// pyftpdlib refuses to delete or rename a symlink that leads out of the root (its jail
/// check follows links). Removing or moving the link itself never reaches outside (unlinkat
/// and renameat do not follow it); the refusal only keeps pyftpdlib's answer.
fn leads_out(s: &mut Session, path: &Path) -> io::Result<bool> {
    let Some(fs) = s.account.fs.as_mut() else {
        return Ok(true);
    };
    match fs.fs().lstat(path) {
        Ok(st) if st.kind == FileKind::Symlink => match fs.fs().stat(path) {
            Err(e) if Escape::of(&e).is_some() => {
                fs_error(s, &e)?;
                Ok(true)
            }
            _ => Ok(false),
        },
        _ => Ok(false),
    }
}

pub(super) fn dele(s: &mut Session, req: &Request) -> io::Result<()> {
    let path = target(req);
    if leads_out(s, path)? {
        return Ok(());
    }
    let Some(fs) = s.account.fs.as_mut() else {
        return Ok(());
    };
    match fs.fs().remove(path) {
        Ok(()) => s.reply(250, "File removed."),
        Err(e) => fs_error(s, &e),
    }
}

pub(super) fn rnfr(s: &mut Session, req: &Request) -> io::Result<()> {
    let path = target(req).to_path_buf();
    if is_root(&path) {
        return s.reply(550, "Can't rename home directory.");
    }
    if leads_out(s, &path)? {
        return Ok(());
    }
    let Some(fs) = s.account.fs.as_mut() else {
        return Ok(());
    };
    match fs.fs().lstat(&path) {
        Ok(_) => {
            s.account.rnfr = Some(path);
            s.reply(350, "Ready for destination name.")
        }
        Err(e) => fs_error(s, &e),
    }
}

pub(super) fn rnto(s: &mut Session, req: &Request) -> io::Result<()> {
    let Some(src) = s.account.rnfr.take() else {
        return s.reply(503, "Bad sequence of commands: use RNFR first.");
    };
    let dst = target(req);
    if is_root(dst) {
        return s.reply(550, "Can't overwrite home directory.");
    }
    let Some(fs) = s.account.fs.as_mut() else {
        return Ok(());
    };
    match fs.fs().rename(&src, dst) {
        Ok(()) => s.reply(250, "Renaming ok."),
        Err(e) => fs_error(s, &e),
    }
}

/// `550 <path> is not retrievable` (pyftpdlib's text, no period) unless the path is a regular
/// file; pyftpdlib's outside-the-root answer for a path leading out.
fn regular_file(s: &mut Session, path: &Path) -> io::Result<Option<crate::filesystems::Stat>> {
    let st = s.account.fs.as_mut().map(|fs| fs.fs().stat(path));
    match st {
        Some(Ok(st)) if st.is_file() => Ok(Some(st)),
        Some(Err(e)) if Escape::of(&e).is_some() => {
            fs_error(s, &e)?;
            Ok(None)
        }
        _ => {
            let mut msg = wire(s, path);
            msg.extend_from_slice(b" is not retrievable");
            s.reply_bytes(550, &msg)?;
            Ok(None)
        }
    }
}

pub(super) fn size(s: &mut Session, req: &Request) -> io::Result<()> {
    // RFC 3659 §4: in ASCII mode the size would need the whole file converted; pyftpdlib
    // refuses instead.
    if s.data.ttype == TransferType::Ascii {
        return s.reply(550, "SIZE not allowed in ASCII mode.");
    }
    if let Some(st) = regular_file(s, target(req))? {
        s.reply(213, &st.size.to_string())?;
    }
    Ok(())
}

pub(super) fn mdtm(s: &mut Session, req: &Request) -> io::Result<()> {
    if let Some(st) = regular_file(s, target(req))? {
        let t = format_timeval(st.mtime, s.h.use_gmt_times);
        s.reply(213, &t)?;
    }
    Ok(())
}

pub(super) fn mfmt(s: &mut Session, req: &Request) -> io::Result<()> {
    let timeval = req.extra.clone().unwrap_or_default();
    let path = target(req).to_path_buf();
    let Some(t) = parse_timeval(&timeval).filter(|_| timeval.len() == 14) else {
        return s.reply(550, "Invalid time format; expected: YYYYMMDDHHMMSS.");
    };
    if regular_file(s, &path)?.is_none() {
        return Ok(());
    }
    let Some(fs) = s.account.fs.as_mut() else {
        return Ok(());
    };
    match fs.fs().utime(&path, t) {
        Ok(()) => {
            let mut msg = format!("Modify={timeval}; ").into_bytes();
            msg.extend_from_slice(&wire(s, &path));
            msg.push(b'.');
            s.reply_bytes(213, &msg)
        }
        Err(e) => fs_error(s, &e),
    }
}

/// SITE CHMOD sets permission bits only: setuid, setgid and sticky bits are refused (a
/// root-run server would otherwise hand out setuid-root files), the root directory is never
/// changed, and the anonymous user never makes a file executable (vsftpd lets anonymous
/// users use no SITE CHMOD at all).
pub(super) fn site_chmod(s: &mut Session, req: &Request) -> io::Result<()> {
    let mode = req.extra.clone().unwrap_or_default();
    let valid =
        !mode.is_empty() && mode.len() <= 4 && mode.bytes().all(|b| (b'0'..=b'7').contains(&b));
    let Some(mode) = valid.then(|| u32::from_str_radix(&mode, 8).ok()).flatten() else {
        return s.reply(501, "Invalid SITE CHMOD format.");
    };
    let path = target(req);
    if mode & !0o777 != 0 {
        log::warn!(
            "{} SITE CHMOD {mode:o} refused: setuid, setgid and sticky bits",
            s.ctrl.prefix
        );
        return s.reply(
            550,
            &format!("Mode {mode:04o} refused: only permission bits (0777) can be set."),
        );
    }
    if is_root(path) {
        log::warn!("{} SITE CHMOD refused on the root directory", s.ctrl.prefix);
        return s.reply(550, "Can't change the mode of the root directory.");
    }
    let anonymous = s.account.username == "anonymous";
    let Some(fs) = s.account.fs.as_mut() else {
        return Ok(());
    };
    if anonymous && mode & 0o111 != 0 && !matches!(fs.fs().stat(path), Ok(st) if st.is_dir()) {
        log::warn!(
            "{} SITE CHMOD {mode:o} refused: anonymous files are never executable",
            s.ctrl.prefix
        );
        return s.reply(550, "Anonymous users can't make files executable.");
    }
    match fs.fs().chmod(path, mode) {
        Ok(()) => s.reply(200, "SITE CHMOD successful."),
        Err(e) => fs_error(s, &e),
    }
}
