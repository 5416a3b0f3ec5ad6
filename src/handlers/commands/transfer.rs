//! Transfers and their parameters: RETR, STOR, APPE, STOU, REST, ABOR, ALLO, TYPE, MODE, STRU
//! (RFC 959 §4.1.2–4.1.3, RFC 1123 §4.1.2.9 for STOU's `FILE:` mark, RFC 3659 §5 for REST).
//! A transfer command checks and opens its file, then hands the session a plan; the session
//! loop opens the data connection and moves the bytes (session/drive.rs).

use std::io;
use std::path::{Path, PathBuf};

use super::fs_error;
use crate::beneath::Escape;
use crate::filesystems::{try_lock, ReadStream, UploadOptions, UploadSink, WriteMode};
use crate::handlers::dtp::{Outcome, Source};
use crate::handlers::session::{Ending, Phase, Plan, Setup, Work};
use crate::handlers::table::Channel;
use crate::handlers::{FtpHandler, Request, Session};
use crate::proto::{self, TransferType};

/// The plan of a file transfer.
fn plan(cmd: &str, real: PathBuf, work: Work, mark: Option<Vec<u8>>) -> Plan {
    Plan {
        end: Ending {
            cmd: cmd.to_string(),
            path: real,
            channel: Channel::File,
            reserved: None,
        },
        work,
        mark,
    }
}

/// REST's offset, taken; 554 when the file is shorter (RFC 1123 §4.1.3.4, pyftpdlib's
/// text). `None` when a reply refused the transfer.
fn rest_offset(s: &mut Session, vpath: &Path) -> io::Result<Option<u64>> {
    let rest = std::mem::take(&mut s.data.rest);
    if rest == 0 {
        return Ok(Some(0));
    }
    let Some(fs) = s.account.fs.as_mut() else {
        return Ok(None);
    };
    match fs.fs().stat(vpath) {
        Ok(st) if rest > st.size => {
            let msg = format!("REST position ({rest}) > file size ({}).", st.size);
            s.ctrl.reply(554, &msg)?;
            Ok(None)
        }
        Ok(_) => Ok(Some(rest)),
        Err(e) => fs_error(s, &e).map(|()| None),
    }
}

pub(super) fn retr(s: &mut Session, req: &Request) -> io::Result<()> {
    let (Some(path), Some(real)) = (req.vpath.clone(), req.path.clone()) else {
        s.data.rest = 0;
        return Ok(());
    };
    let Some(rest) = rest_offset(s, &path)? else {
        return Ok(());
    };
    let Some(fs) = s.account.fs.as_mut() else {
        return Ok(());
    };
    let file = match fs.fs().open_read(&path, rest) {
        Ok(f) => f,
        Err(e) => return fs_error(s, &e),
    };
    // The upload lock (vsftpd lock_upload_files): a file being uploaded is not served half
    // written. Atomic uploads write elsewhere, so there readers take no lock.
    if let (true, false, ReadStream::File(f)) = (s.h.lock_upload_files, s.h.atomic_uploads, &file) {
        if let Err(e) = try_lock(f, false) {
            return busy(s, &e, "it is being uploaded");
        }
    }
    s.start_transfer(plan(&req.verb, real, Work::Send(Source::File(file)), None))
}

pub(super) fn stor(s: &mut Session, req: &Request) -> io::Result<()> {
    store(s, req, false)
}

pub(super) fn appe(s: &mut Session, req: &Request) -> io::Result<()> {
    store(s, req, true)
}

fn store(s: &mut Session, req: &Request, append: bool) -> io::Result<()> {
    if append && s.data.rest > 0 {
        // pyftpdlib: APPE after REST makes no sense (the append point is the end).
        s.data.rest = 0;
        return s
            .ctrl
            .reply(450, "Can't APPE while REST request is pending.");
    }
    let (Some(path), Some(real)) = (req.vpath.clone(), req.path.clone()) else {
        s.data.rest = 0;
        return Ok(());
    };
    let Some(rest) = rest_offset(s, &path)? else {
        return Ok(());
    };
    let mode = match (rest, append) {
        (0, true) => WriteMode::Append,
        (0, false) => WriteMode::Truncate,
        (at, _) => WriteMode::At(at),
    };
    let (perm, opts) = (upload_perm(&s.h, 0o666), upload_options(&s.h));
    let Some(fs) = s.account.fs.as_mut() else {
        return Ok(());
    };
    let sink = match fs.fs().open_upload(&path, mode, perm, opts) {
        Ok(f) => f,
        Err(e) => return busy(s, &e, "another session is transferring it"),
    };
    s.start_transfer(plan(&req.verb, real, Work::Receive(sink), None))
}

/// The permission bits of a new upload: `base` less the handler's umask.
fn upload_perm(h: &FtpHandler, base: u32) -> u32 {
    base & !h.umask
}

/// The handler's upload rules.
fn upload_options(h: &FtpHandler) -> UploadOptions {
    UploadOptions {
        lock: h.lock_upload_files,
        atomic: h.atomic_uploads,
    }
}

/// 450 when `e` says the file's lock is taken (`why` says by what), else the usual reply
/// for a filesystem error.
fn busy(s: &mut Session, e: &io::Error, why: &str) -> io::Result<()> {
    if e.kind() == io::ErrorKind::WouldBlock {
        log::info!("{} file busy: {why}", s.ctrl.prefix);
        return s
            .ctrl
            .reply(450, &format!("File busy: {why}; try again later."));
    }
    fs_error(s, e)
}

/// The directory and the name prefix of a STOU name: `ftpd.` in the working directory, or
/// `<name>.` next to the name the client suggested.
fn stou_pattern(cwd: &[u8], normalized: Option<Vec<u8>>) -> (Vec<u8>, Vec<u8>) {
    let Some(v) = normalized else {
        return (cwd.to_vec(), b"ftpd.".to_vec());
    };
    let mut prefix = match crate::filesystems::path::basename(&v) {
        b"/" => b"ftpd".to_vec(),
        name => name.to_vec(),
    };
    prefix.push(b'.');
    let cut = v.iter().rposition(|&b| b == b'/').unwrap_or(0);
    (v[..cut.max(1)].to_vec(), prefix)
}

/// A new file with a unique name: its virtual path and its sink.
type UniqueFile = (Vec<u8>, Box<dyn UploadSink>);

/// Creates a new file with a unique name (O_EXCL, locked so no download reads it half
/// written), or says the reply that refused it.
fn unique_file(s: &mut Session, dir: &[u8], prefix: &[u8]) -> Result<UniqueFile, (u16, String)> {
    // pyftpdlib creates STOU files with tempfile.mkstemp: mode 0600.
    let perm = upload_perm(&s.h, 0o600);
    // Not atomic here: the new name itself is the reservation.
    let reserve = UploadOptions {
        lock: s.h.lock_upload_files,
        atomic: false,
    };
    let fs = s
        .account
        .fs
        .as_mut()
        .ok_or((450, "Not logged in.".to_string()))?;
    let mut seed = unique_seed();
    for _ in 0..100 {
        let mut name = dir.to_vec();
        if name != b"/" {
            name.push(b'/');
        }
        name.extend_from_slice(prefix);
        name.extend_from_slice(random_suffix(&mut seed).as_bytes());
        let vpath = crate::filesystems::path::bytes_path(&name);
        match fs
            .fs()
            .open_upload(&vpath, WriteMode::CreateNew, perm, reserve)
        {
            Ok(f) => return Ok((name, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) if Escape::of(&e).is_some() => {
                return Err((550, "Path points outside the user's root directory.".into()))
            }
            Err(e) => return Err((450, format!("{}.", crate::filesystems::strerror(&e)))),
        }
    }
    Err((450, "No usable unique file name found.".into()))
}

pub(super) fn stou(s: &mut Session, req: &Request) -> io::Result<()> {
    if s.data.rest > 0 {
        return s
            .ctrl
            .reply(450, "Can't STOU while REST request is pending.");
    }
    if req.arg.contains(&0) {
        return s
            .ctrl
            .reply(550, "Path points outside the user's root directory.");
    }
    let Some(fs) = s.account.fs.as_ref() else {
        return Ok(());
    };
    let suggested = (!req.arg.is_empty()).then(|| fs.ftpnorm(&req.arg));
    let (dir, prefix) = stou_pattern(fs.cwd(), suggested);
    let (vname, sink) = match unique_file(s, &dir, &prefix) {
        Ok(v) => v,
        Err((code, text)) => return s.ctrl.reply(code, &text),
    };
    let vpath = crate::filesystems::path::bytes_path(&vname);
    let Some(fs) = s.account.fs.as_mut() else {
        return Ok(());
    };
    let real = fs.ftp2fs(&vname);
    let store = crate::authorizers::Perm::Store;
    if !s
        .h
        .authorizer
        .has_perm(&s.account.username, store, Some(&real))
    {
        drop(sink);
        let _ = fs.fs().remove(&vpath);
        return s.ctrl.reply(550, "Not enough privileges.");
    }
    // RFC 1123 §4.1.2.9: the preliminary reply is "FILE: <name>".
    let mut mark = b"FILE: ".to_vec();
    let name = crate::filesystems::path::basename(&vname);
    mark.extend_from_slice(&s.h.encoding.encode(name));
    if !s.h.atomic_uploads {
        return s.start_transfer(plan("STOU", real, Work::Receive(sink), Some(mark)));
    }
    drop(sink);
    stou_atomic(s, vpath, real, mark)
}

/// Atomic STOU: the unique name `vpath` stays reserved (empty, mode 0600 less the umask)
/// while the upload goes to a temporary file that replaces it when complete; a failed
/// upload removes both.
fn stou_atomic(s: &mut Session, vpath: PathBuf, real: PathBuf, mark: Vec<u8>) -> io::Result<()> {
    let (perm, opts) = (upload_perm(&s.h, 0o600), upload_options(&s.h));
    let Some(fs) = s.account.fs.as_mut() else {
        return Ok(());
    };
    match fs.fs().open_upload(&vpath, WriteMode::Truncate, perm, opts) {
        Ok(up) => {
            let mut p = plan("STOU", real, Work::Receive(up), Some(mark));
            p.end.reserved = Some(vpath);
            s.start_transfer(p)
        }
        Err(e) => {
            let _ = fs.fs().remove(&vpath);
            fs_error(s, &e)
        }
    }
}

fn unique_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ (u64::from(std::process::id()) << 32) ^ 0x9E37_79B9_7F4A_7C15
}

/// Eight characters from a xorshift sequence: unpredictable enough for unique names, and the
/// open with O_EXCL makes the name safe whatever the sequence.
fn random_suffix(seed: &mut u64) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789_";
    let mut out = String::with_capacity(8);
    for _ in 0..8 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        out.push(ALPHABET[(*seed % ALPHABET.len() as u64) as usize] as char);
    }
    out
}

pub(super) fn rest(s: &mut Session, req: &Request) -> io::Result<()> {
    if s.data.ttype == TransferType::Ascii {
        return s
            .ctrl
            .reply(501, "Resuming transfers not allowed in ASCII mode.");
    }
    match proto::parse_rest(&req.arg_str()) {
        Some(n) => {
            s.data.rest = n;
            s.ctrl.reply(350, &format!("Restarting at position {n}."))
        }
        None => s.ctrl.reply(501, "Invalid parameter."),
    }
}

/// ABOR (RFC 959 §4.1.3; pyftpdlib `ftp_ABOR`), by where the transfer is: a running one
/// ends with 426 and 226; one waiting for its client, or an idle prepared channel, is
/// closed with 225 (before the reply, so its passive port is free once the client reads
/// it); otherwise there is nothing to abort.
pub(super) fn abor(s: &mut Session, _req: &Request) -> io::Result<()> {
    match s.data.phase {
        Phase::Running(_) => return s.end_transfer(Outcome::Aborted),
        Phase::Connecting(..) => {
            s.cancel_phase();
            return s
                .ctrl
                .reply(225, "ABOR command successful; data channel closed.");
        }
        Phase::Awaiting(_) => s.cancel_phase(),
        Phase::Idle => {}
    }
    let had_channel = !matches!(std::mem::take(&mut s.data.setup), Setup::None);
    if had_channel {
        s.ctrl
            .reply(225, "ABOR command successful; data channel closed.")
    } else {
        s.ctrl.reply(225, "No transfer to abort.")
    }
}

pub(super) fn allo(s: &mut Session, _req: &Request) -> io::Result<()> {
    s.ctrl.reply(202, "No storage allocation necessary.")
}

pub(super) fn type_(s: &mut Session, req: &Request) -> io::Result<()> {
    match proto::parse_type(&req.arg_str()) {
        Some(TransferType::Ascii) => {
            s.data.ttype = TransferType::Ascii;
            s.ctrl.reply(200, "Type set to: ASCII.")
        }
        Some(TransferType::Binary) => {
            s.data.ttype = TransferType::Binary;
            s.ctrl.reply(200, "Type set to: Binary.")
        }
        None => match crate::proto::echoable(&req.arg_str()) {
            Some(t) => s.ctrl.reply(504, &format!("Unsupported type \"{t}\".")),
            None => s.ctrl.reply(504, "Unsupported type."),
        },
    }
}

pub(super) fn mode(s: &mut Session, req: &Request) -> io::Result<()> {
    match req.arg_str().trim().to_ascii_uppercase().as_str() {
        "S" => s.ctrl.reply(200, "Transfer mode set to: S"),
        "B" | "C" => s.ctrl.reply(504, "Unimplemented MODE type."),
        _ => s.ctrl.reply(501, "Unrecognized MODE type."),
    }
}

pub(super) fn stru(s: &mut Session, req: &Request) -> io::Result<()> {
    match req.arg_str().trim().to_ascii_uppercase().as_str() {
        "F" => s.ctrl.reply(200, "File transfer structure set to: F."),
        "P" | "R" => s.ctrl.reply(504, "Unimplemented STRU type."),
        _ => s.ctrl.reply(501, "Unrecognized STRU type."),
    }
}
