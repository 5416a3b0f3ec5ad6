//! Transfers and their parameters: RETR, STOR, APPE, STOU, REST, ABOR, ALLO, TYPE, MODE, STRU
//! (RFC 959 §4.1.2–4.1.3, RFC 1123 §4.1.2.9 for STOU's `FILE:` mark, RFC 3659 §5 for REST).

use std::io;
use std::path::Path;

use super::fs_error;
use crate::beneath::Escape;
use crate::filesystems::{try_lock, ReadStream, UploadOptions, UploadSink, WriteMode};
use crate::handlers::data::DataSetup;
use crate::handlers::{FtpHandler, Request, Session};
use crate::proto::{self, TransferType};

pub(super) fn retr(s: &mut Session, req: &Request) -> io::Result<()> {
    let rest = std::mem::take(&mut s.rest);
    let (Some(path), Some(real)) = (req.vpath.clone(), req.path.clone()) else {
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
    s.finish_transfer("RETR", &real, false, outcome)
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
    let (Some(path), Some(real)) = (req.vpath.clone(), req.path.clone()) else {
        return Ok(());
    };
    let perm = upload_perm(s, 0o666);
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
    let sink = match fs.fs().open_upload(&path, mode, perm, upload_options(&s.h)) {
        Ok(f) => f,
        Err(e) => return busy(s, &e, "another session is transferring it"),
    };
    let cmd = if append { "APPE" } else { "STOR" };
    receive(s, cmd, &real, sink, None, None)
}

/// The permission bits of a new upload: `base` less the handler's umask.
fn upload_perm(s: &Session, base: u32) -> u32 {
    base & !s.h.umask
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
/// renamed into place) before the reply. `real` is the host form of the name, for the log
/// and the callbacks. When the upload does not complete, `reserved` (the virtual path of an
/// atomic STOU's unique name) is removed before the reply.
fn receive(
    s: &mut Session,
    cmd: &str,
    real: &Path,
    sink: Box<dyn UploadSink>,
    mark: Option<&[u8]>,
    reserved: Option<&Path>,
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
    if let (Some(vpath), false) = (reserved, complete) {
        if let Some(fs) = s.fs.as_mut() {
            let _ = fs.fs().remove(vpath);
        }
    }
    match outcome {
        Some(o) => s.finish_transfer(cmd, real, true, o),
        None => Ok(()),
    }
}

pub(super) fn stou(s: &mut Session, req: &Request) -> io::Result<()> {
    if s.rest > 0 {
        return s.reply(450, "Can't STOU while REST request is pending.");
    }
    if req.arg.contains(&0) {
        return s.reply(550, "Path points outside the user's root directory.");
    }
    // pyftpdlib creates STOU files with tempfile.mkstemp: mode 0600.
    let perm = upload_perm(s, 0o600);
    let Some(fs) = s.fs.as_mut() else {
        return Ok(());
    };
    // The directory and the name prefix: `ftpd.` in the working directory, or `<name>.`
    // next to the name the client suggested.
    let (dir, prefix): (Vec<u8>, Vec<u8>) = if req.arg.is_empty() {
        (fs.cwd().to_vec(), b"ftpd.".to_vec())
    } else {
        let v = fs.ftpnorm(&req.arg);
        let mut prefix = match crate::filesystems::path::basename(&v) {
            b"/" => b"ftpd".to_vec(),
            name => name.to_vec(),
        };
        prefix.push(b'.');
        let cut = v.iter().rposition(|&b| b == b'/').unwrap_or(0);
        (v[..cut.max(1)].to_vec(), prefix)
    };
    let mut seed = unique_seed();
    let mut created = None;
    for _ in 0..100 {
        let mut name = dir.clone();
        if name != b"/" {
            name.push(b'/');
        }
        name.extend_from_slice(&prefix);
        name.extend_from_slice(random_suffix(&mut seed).as_bytes());
        let vpath = crate::filesystems::path::bytes_path(&name);
        // Not atomic here: the new name itself is the reservation (O_EXCL), locked so no
        // download reads it half written.
        let reserve = UploadOptions {
            lock: s.h.lock_upload_files,
            atomic: false,
        };
        match fs
            .fs()
            .open_upload(&vpath, WriteMode::CreateNew, perm, reserve)
        {
            Ok(f) => {
                created = Some((name, f));
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) if Escape::of(&e).is_some() => {
                return s.reply(550, "Path points outside the user's root directory.");
            }
            Err(e) => {
                let why = crate::filesystems::strerror(&e);
                return s.reply(450, &format!("{why}."));
            }
        }
    }
    let Some((vname, sink)) = created else {
        return s.reply(450, "No usable unique file name found.");
    };
    let real = fs.ftp2fs(&vname);
    if !s
        .h
        .authorizer
        .has_perm(&s.username, crate::authorizers::Perm::Store, Some(&real))
    {
        drop(sink);
        if let Some(fs) = s.fs.as_mut() {
            let _ = fs
                .fs()
                .remove(&crate::filesystems::path::bytes_path(&vname));
        }
        return s.reply(550, "Not enough privileges.");
    }
    let name = crate::filesystems::path::basename(&vname).to_vec();
    // RFC 1123 §4.1.2.9: the preliminary reply is "FILE: <name>".
    let mut mark = b"FILE: ".to_vec();
    mark.extend_from_slice(&s.h.encoding.encode(&name));
    if !s.h.atomic_uploads {
        return receive(s, "STOU", &real, sink, Some(&mark), None);
    }
    drop(sink);
    let vpath = crate::filesystems::path::bytes_path(&vname);
    stou_atomic(s, &vpath, &real, perm, &mark)
}

/// Atomic STOU: the unique name `vpath` stays reserved (empty, mode 0600 less the umask)
/// while the upload goes to a temporary file that replaces it when complete; a failed
/// upload removes both.
fn stou_atomic(
    s: &mut Session,
    vpath: &Path,
    real: &Path,
    perm: u32,
    mark: &[u8],
) -> io::Result<()> {
    let opts = upload_options(&s.h);
    let Some(fs) = s.fs.as_mut() else {
        return Ok(());
    };
    match fs.fs().open_upload(vpath, WriteMode::Truncate, perm, opts) {
        Ok(up) => receive(s, "STOU", real, up, Some(mark), Some(vpath)),
        Err(e) => {
            let _ = fs.fs().remove(vpath);
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
    // Outside a transfer (ABOR during one is answered by the transfer loop). The channel is
    // closed before the reply, so its passive port is free once the client reads it.
    let had_channel = !matches!(std::mem::take(&mut s.data), DataSetup::None);
    if had_channel {
        s.reply(225, "ABOR command successful; data channel closed.")
    } else {
        s.reply(225, "No transfer to abort.")
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
        None => match crate::proto::echoable(&req.arg_str()) {
            Some(t) => s.reply(504, &format!("Unsupported type \"{t}\".")),
            None => s.reply(504, "Unsupported type."),
        },
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
