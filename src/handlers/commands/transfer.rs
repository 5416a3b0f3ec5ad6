//! Transfers and their parameters: RETR, STOR, APPE, STOU, REST, ABOR, ALLO, TYPE, MODE, STRU
//! (RFC 959 §4.1.2–4.1.3, RFC 1123 §4.1.2.9 for STOU's `FILE:` mark, RFC 3659 §5 for REST).

use std::io;
use std::path::{Path, PathBuf};

use super::fs_error;
use crate::filesystems::{try_lock, ReadStream, UploadOptions, UploadSink, WriteMode};
use crate::handlers::data::DataSetup;
use crate::handlers::{FtpHandler, Request, Session};
use crate::proto::{self, TransferType};

pub(super) fn retr(s: &mut Session, req: &Request) -> io::Result<()> {
    let rest = std::mem::take(&mut s.rest);
    let Some(path) = req.path.clone() else {
        return Ok(());
    };
    let Some(fs) = s.fs.as_mut() else {
        return Ok(());
    };
    if rest > 0 {
        // RFC 1123 §4.1.3.4 / pyftpdlib: 554 when the file cannot be positioned there.
        match fs.fs().stat(&path) {
            Ok(st) if rest > st.size => {
                return s.reply(
                    554,
                    &format!("REST position ({rest}) > file size ({}).", st.size),
                );
            }
            Ok(_) => {}
            Err(e) => return fs_error(s, &e),
        }
    }
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
    let Some(mut conn) = s.open_data(None)? else {
        return Ok(());
    };
    let outcome = s.send_data(&mut conn, crate::handlers::data::Source::File(file));
    drop(conn);
    s.finish_transfer("RETR", &path, false, outcome)
}

pub(super) fn stor(s: &mut Session, req: &Request) -> io::Result<()> {
    store(s, req, false)
}

pub(super) fn appe(s: &mut Session, req: &Request) -> io::Result<()> {
    store(s, req, true)
}

fn store(s: &mut Session, req: &Request, append: bool) -> io::Result<()> {
    if append && s.rest > 0 {
        // pyftpdlib: APPE after REST makes no sense (the append point is the end).
        s.rest = 0;
        return s.reply(450, "Can't APPE while REST request is pending.");
    }
    let rest = std::mem::take(&mut s.rest);
    let Some(path) = req.path.clone() else {
        return Ok(());
    };
    let Some(fs) = s.fs.as_mut() else {
        return Ok(());
    };
    let mode = if rest > 0 {
        match fs.fs().stat(&path) {
            Ok(st) if rest > st.size => {
                return s.reply(
                    554,
                    &format!("REST position ({rest}) > file size ({}).", st.size),
                );
            }
            Ok(_) => WriteMode::At(rest),
            Err(e) => return fs_error(s, &e),
        }
    } else if append {
        WriteMode::Append
    } else {
        WriteMode::Truncate
    };
    let sink = match fs.fs().open_upload(&path, mode, upload_options(&s.h)) {
        Ok(f) => f,
        Err(e) => return busy(s, &e, "another session is transferring it"),
    };
    let cmd = if append { "APPE" } else { "STOR" };
    receive(s, cmd, &path, sink, None, false)
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
        log::info!("{} file busy: {why}", s.prefix);
        return s.reply(450, &format!("File busy: {why}; try again later."));
    }
    fs_error(s, e)
}

/// Runs an upload into an opened sink and replies; the file is closed (an atomic upload
/// renamed into place) before the reply. When the upload does not complete, `reserved`
/// (an atomic STOU's unique name) is removed before the reply.
fn receive(
    s: &mut Session,
    cmd: &str,
    path: &Path,
    sink: Box<dyn UploadSink>,
    mark: Option<&[u8]>,
    reserved: bool,
) -> io::Result<()> {
    let outcome = match s.open_data(mark)? {
        Some(mut conn) => {
            let o = s.recv_data(&mut conn, sink);
            drop(conn);
            Some(o)
        }
        None => None,
    };
    let complete = matches!(outcome, Some(crate::handlers::data::Outcome::Complete));
    if reserved && !complete {
        if let Some(fs) = s.fs.as_mut() {
            let _ = fs.fs().remove(path);
        }
    }
    match outcome {
        Some(o) => s.finish_transfer(cmd, path, true, o),
        None => Ok(()),
    }
}

pub(super) fn stou(s: &mut Session, req: &Request) -> io::Result<()> {
    if s.rest > 0 {
        return s.reply(450, "Can't STOU while REST request is pending.");
    }
    let Some(fs) = s.fs.as_mut() else {
        return Ok(());
    };
    let (dir, prefix): (PathBuf, Vec<u8>) = if req.arg.is_empty() {
        (fs.ftp2fs(b""), b"ftpd.".to_vec())
    } else {
        let p = fs.ftp2fs(&req.arg);
        let name = p
            .file_name()
            .map(|n| n.as_encoded_bytes().to_vec())
            .unwrap_or_default();
        let dir = p
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| fs.root().to_path_buf());
        let mut prefix = name;
        prefix.push(b'.');
        (dir, prefix)
    };
    if req.arg.contains(&0) || !fs.validpath(&dir) {
        return s.reply(550, "Path points outside the user's root directory.");
    }
    let mut seed = unique_seed();
    let mut created = None;
    for _ in 0..100 {
        let mut name = prefix.clone();
        name.extend_from_slice(random_suffix(&mut seed).as_bytes());
        let path = dir.join(crate::filesystems::path::bytes_path(&name));
        // Not atomic here: the new name itself is the reservation (O_EXCL), locked so no
        // download reads it half written.
        let reserve = UploadOptions {
            lock: s.h.lock_upload_files,
            atomic: false,
        };
        match fs.fs().open_upload(&path, WriteMode::CreateNew, reserve) {
            Ok(f) => {
                created = Some((path, f));
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                let why = crate::filesystems::strerror(&e);
                return s.reply(450, &format!("{why}."));
            }
        }
    }
    let Some((path, sink)) = created else {
        return s.reply(450, "No usable unique file name found.");
    };
    if !s
        .h
        .authorizer
        .has_perm(&s.username, crate::authorizers::Perm::Store, Some(&path))
    {
        drop(sink);
        if let Some(fs) = s.fs.as_mut() {
            let _ = fs.fs().remove(&path);
        }
        return s.reply(550, "Not enough privileges.");
    }
    let name = path
        .file_name()
        .map(|n| n.as_encoded_bytes().to_vec())
        .unwrap_or_default();
    // RFC 1123 §4.1.2.9: the preliminary reply is "FILE: <name>".
    let mut mark = b"FILE: ".to_vec();
    mark.extend_from_slice(&s.h.encoding.encode(&name));
    if !s.h.atomic_uploads {
        return receive(s, "STOU", &path, sink, Some(&mark), false);
    }
    drop(sink);
    stou_atomic(s, &path, &mark)
}

/// Atomic STOU: the unique name stays reserved (empty, mode 0600) while the upload goes to
/// a temporary file that replaces it when complete; a failed upload removes both.
fn stou_atomic(s: &mut Session, path: &Path, mark: &[u8]) -> io::Result<()> {
    let Some(fs) = s.fs.as_mut() else {
        return Ok(());
    };
    match fs
        .fs()
        .open_upload(path, WriteMode::Truncate, upload_options(&s.h))
    {
        Ok(up) => receive(s, "STOU", path, up, Some(mark), true),
        Err(e) => {
            let _ = fs.fs().remove(path);
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
    if s.ttype == TransferType::Ascii {
        return s.reply(501, "Resuming transfers not allowed in ASCII mode.");
    }
    match proto::parse_rest(&req.arg_str()) {
        Some(n) => {
            s.rest = n;
            s.reply(350, &format!("Restarting at position {n}."))
        }
        None => s.reply(501, "Invalid parameter."),
    }
}

pub(super) fn abor(s: &mut Session, _req: &Request) -> io::Result<()> {
    // Outside a transfer (ABOR during one is answered by the transfer loop).
    match std::mem::take(&mut s.data) {
        DataSetup::None => s.reply(225, "No transfer to abort."),
        _ => s.reply(225, "ABOR command successful; data channel closed."),
    }
}

pub(super) fn allo(s: &mut Session, _req: &Request) -> io::Result<()> {
    s.reply(202, "No storage allocation necessary.")
}

pub(super) fn type_(s: &mut Session, req: &Request) -> io::Result<()> {
    match proto::parse_type(&req.arg_str()) {
        Some(TransferType::Ascii) => {
            s.ttype = TransferType::Ascii;
            s.reply(200, "Type set to: ASCII.")
        }
        Some(TransferType::Binary) => {
            s.ttype = TransferType::Binary;
            s.reply(200, "Type set to: Binary.")
        }
        None => s.reply(504, &format!("Unsupported type \"{}\".", req.arg_str())),
    }
}

pub(super) fn mode(s: &mut Session, req: &Request) -> io::Result<()> {
    match req.arg_str().trim().to_ascii_uppercase().as_str() {
        "S" => s.reply(200, "Transfer mode set to: S"),
        "B" | "C" => s.reply(504, "Unimplemented MODE type."),
        _ => s.reply(501, "Unrecognized MODE type."),
    }
}

pub(super) fn stru(s: &mut Session, req: &Request) -> io::Result<()> {
    match req.arg_str().trim().to_ascii_uppercase().as_str() {
        "F" => s.reply(200, "File transfer structure set to: F."),
        "P" | "R" => s.reply(504, "Unimplemented STRU type."),
        _ => s.reply(501, "Unrecognized STRU type."),
    }
}
