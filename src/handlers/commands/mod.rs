//! The built-in command table (pyftpdlib `proto_cmds`: permission letter, login, argument
//! rule, help text) and the helpers the command functions share.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use super::{Arg, Command, Request, Session};
use crate::authorizers::Perm;
use crate::beneath::Escape;
use crate::filesystems::strerror;
use crate::proto;

mod datachan;
mod fsops;
mod listing;
mod login;
mod misc;
mod nav;
mod tls;
mod transfer;

type Builtin = fn(&mut Session, &Request) -> io::Result<()>;

fn row(name: &str, perm: Option<Perm>, auth: bool, arg: Arg, help: &str, f: Builtin) -> Command {
    Command {
        name: name.to_owned(),
        auth,
        arg,
        perm,
        help: help.to_owned(),
        feat: None,
        run: Arc::new(f),
    }
}

/// Every built-in command, with pyftpdlib's properties and help texts.
pub(super) fn builtin() -> Vec<Command> {
    use Arg::{Forbidden as F, Optional as O, Required as R};
    use Perm::*;
    vec![
        row(
            "ABOR",
            None,
            true,
            F,
            "Syntax: ABOR (abort transfer).",
            transfer::abor,
        ),
        row(
            "ALLO",
            None,
            true,
            R,
            "Syntax: ALLO <SP> bytes (noop; allocate storage).",
            transfer::allo,
        ),
        row(
            "APPE",
            Some(Append),
            true,
            R,
            "Syntax: APPE <SP> file-name (append data to file).",
            transfer::appe,
        ),
        row(
            "AUTH",
            None,
            false,
            R,
            "Syntax: AUTH <SP> TLS|SSL (set up secure control channel).",
            tls::auth,
        )
        .feat("AUTH TLS"),
        row(
            "CCC",
            None,
            false,
            F,
            "Syntax: CCC (clear command channel: back to plaintext).",
            tls::ccc,
        ),
        row(
            "CDUP",
            Some(ChangeDir),
            true,
            F,
            "Syntax: CDUP (go to parent directory).",
            nav::cwd,
        ),
        row(
            "CWD",
            Some(ChangeDir),
            true,
            O,
            "Syntax: CWD [<SP> dir-name] (change working directory).",
            nav::cwd,
        ),
        row(
            "DELE",
            Some(Delete),
            true,
            R,
            "Syntax: DELE <SP> file-name (delete file).",
            fsops::dele,
        ),
        row(
            "EPRT",
            None,
            true,
            R,
            "Syntax: EPRT <SP> |proto|ip|port| (extended active mode).",
            datachan::eprt,
        )
        .feat("EPRT"),
        row(
            "EPSV",
            None,
            true,
            O,
            "Syntax: EPSV [<SP> proto/\"ALL\"] (extended passive mode).",
            datachan::epsv,
        )
        .feat("EPSV"),
        row(
            "FEAT",
            None,
            false,
            F,
            "Syntax: FEAT (list all new features supported).",
            misc::feat,
        ),
        row(
            "HELP",
            None,
            false,
            O,
            "Syntax: HELP [<SP> cmd] (show help).",
            misc::help,
        ),
        row(
            "LIST",
            Some(List),
            true,
            O,
            "Syntax: LIST [<SP> path] (list files).",
            listing::list,
        ),
        row(
            "MDTM",
            Some(List),
            true,
            R,
            "Syntax: MDTM [<SP> path] (file last modification time).",
            fsops::mdtm,
        )
        .feat("MDTM"),
        row(
            "MFMT",
            Some(Mtime),
            true,
            R,
            "Syntax: MFMT <SP> timeval <SP> path (file update last modification time).",
            fsops::mfmt,
        )
        .feat("MFMT"),
        row(
            "MLSD",
            Some(List),
            true,
            O,
            "Syntax: MLSD [<SP> path] (list directory).",
            listing::mlsd,
        ),
        row(
            "MLST",
            Some(List),
            true,
            O,
            "Syntax: MLST [<SP> path] (show information about path).",
            listing::mlst,
        ),
        row(
            "MODE",
            None,
            true,
            R,
            "Syntax: MODE <SP> mode (noop; set data transfer mode).",
            transfer::mode,
        ),
        row(
            "MKD",
            Some(Mkdir),
            true,
            R,
            "Syntax: MKD <SP> path (create directory).",
            fsops::mkd,
        ),
        row(
            "NLST",
            Some(List),
            true,
            O,
            "Syntax: NLST [<SP> path] (list path in a compact form).",
            listing::nlst,
        ),
        row(
            "NOOP",
            None,
            false,
            F,
            "Syntax: NOOP (just do nothing).",
            misc::noop,
        ),
        row(
            "OPTS",
            None,
            true,
            R,
            "Syntax: OPTS <SP> cmd [<SP> option] (set option for command).",
            misc::opts,
        ),
        row(
            "PASS",
            None,
            false,
            O,
            "Syntax: PASS [<SP> password] (set user password).",
            login::pass,
        ),
        row(
            "PASV",
            None,
            true,
            F,
            "Syntax: PASV (open passive data connection).",
            datachan::pasv,
        ),
        row(
            "PBSZ",
            None,
            false,
            R,
            "Syntax: PBSZ <SP> 0 (negotiate size of buffer for secure data transfer).",
            tls::pbsz,
        )
        .feat("PBSZ"),
        row(
            "PORT",
            None,
            true,
            R,
            "Syntax: PORT <sp> h,h,h,h,p,p (open active data connection).",
            datachan::port,
        ),
        row(
            "PROT",
            None,
            false,
            R,
            "Syntax: PROT <SP> [C|P] (set up un/secure data channel).",
            tls::prot,
        )
        .feat("PROT"),
        row(
            "PWD",
            None,
            true,
            F,
            "Syntax: PWD (get current working directory).",
            nav::pwd,
        ),
        row(
            "QUIT",
            None,
            false,
            F,
            "Syntax: QUIT (quit current session).",
            login::quit,
        ),
        row(
            "REIN",
            None,
            true,
            F,
            "Syntax: REIN (flush account).",
            login::rein,
        ),
        row(
            "REST",
            None,
            true,
            R,
            "Syntax: REST <SP> offset (set file offset).",
            transfer::rest,
        )
        .feat("REST STREAM"),
        row(
            "RETR",
            Some(Retrieve),
            true,
            R,
            "Syntax: RETR <SP> file-name (retrieve a file).",
            transfer::retr,
        ),
        row(
            "RMD",
            Some(Delete),
            true,
            R,
            "Syntax: RMD <SP> dir-name (remove directory).",
            fsops::rmd,
        ),
        row(
            "RNFR",
            Some(Rename),
            true,
            R,
            "Syntax: RNFR <SP> file-name (rename (source name)).",
            fsops::rnfr,
        ),
        row(
            "RNTO",
            Some(Rename),
            true,
            R,
            "Syntax: RNTO <SP> file-name (rename (destination name)).",
            fsops::rnto,
        ),
        row(
            "SITE",
            None,
            false,
            R,
            "Syntax: SITE <SP> site-command (execute SITE command).",
            misc::site,
        ),
        row(
            "SITE CHMOD",
            Some(Chmod),
            true,
            R,
            "Syntax: SITE CHMOD <SP> mode path (change file mode).",
            fsops::site_chmod,
        ),
        row(
            "SITE HELP",
            None,
            false,
            O,
            "Syntax: SITE HELP [<SP> cmd] (show SITE command help).",
            misc::site_help,
        ),
        row(
            "SIZE",
            Some(List),
            true,
            R,
            "Syntax: SIZE <SP> file-name (get file size).",
            fsops::size,
        )
        .feat("SIZE"),
        row(
            "STAT",
            Some(List),
            false,
            O,
            "Syntax: STAT [<SP> path name] (server stats [list files]).",
            listing::stat,
        ),
        row(
            "STOR",
            Some(Store),
            true,
            R,
            "Syntax: STOR <SP> file-name (store a file).",
            transfer::stor,
        ),
        row(
            "STOU",
            Some(Store),
            true,
            O,
            "Syntax: STOU [<SP> name] (store a file with a unique name).",
            transfer::stou,
        ),
        row(
            "STRU",
            None,
            true,
            R,
            "Syntax: STRU <SP> type (noop; set file structure).",
            transfer::stru,
        ),
        row(
            "SYST",
            None,
            false,
            F,
            "Syntax: SYST (get operating system type).",
            misc::syst,
        ),
        row(
            "TYPE",
            None,
            true,
            R,
            "Syntax: TYPE <SP> [A | I] (set transfer type).",
            transfer::type_,
        ),
        row(
            "USER",
            None,
            false,
            R,
            "Syntax: USER <SP> user-name (set username).",
            login::user,
        ),
        row(
            "XCUP",
            Some(ChangeDir),
            true,
            F,
            "Syntax: XCUP (obsolete; go to parent directory).",
            nav::cwd,
        ),
        row(
            "XCWD",
            Some(ChangeDir),
            true,
            O,
            "Syntax: XCWD [<SP> dir-name] (obsolete; change directory).",
            nav::cwd,
        ),
        row(
            "XMKD",
            Some(Mkdir),
            true,
            R,
            "Syntax: XMKD <SP> dir-name (obsolete; create directory).",
            fsops::mkd,
        ),
        row(
            "XPWD",
            None,
            true,
            F,
            "Syntax: XPWD (obsolete; get current dir).",
            nav::pwd,
        ),
        row(
            "XRMD",
            Some(Delete),
            true,
            R,
            "Syntax: XRMD <SP> dir-name (obsolete; remove directory).",
            fsops::rmd,
        ),
    ]
}

/// `"path"` for a reply: wire-encoded, quotes doubled (RFC 959 §7).
pub(crate) fn quoted(s: &Session, vpath: &[u8]) -> Vec<u8> {
    let mut out = vec![b'"'];
    out.extend_from_slice(&proto::quote_path(&s.h.encoding.encode(vpath)));
    out.push(b'"');
    out
}

/// A virtual path, wire-encoded.
pub(crate) fn wire(s: &Session, vpath: &Path) -> Vec<u8> {
    s.h.encoding.encode(vpath.as_os_str().as_bytes())
}

/// Replies to a filesystem error: pyftpdlib's `550 '<path>' points to a path which is
/// outside the user's root directory.` for a path leading out of the root (logged as a
/// warning), `452` for a full disk, `550 <strerror>.` otherwise (pyftpdlib `_strerror`).
pub(crate) fn fs_error(s: &mut Session, e: &io::Error) -> io::Result<()> {
    if let Some(esc) = Escape::of(e) {
        log::warn!(
            "{} refused: {:?} leads outside the user's root",
            s.prefix,
            esc.path
        );
        // pyftpdlib quotes the path with Python's repr: '/path'.
        let mut msg = b"'".to_vec();
        msg.extend_from_slice(&proto::quote_path(&wire(s, &esc.path)));
        msg.extend_from_slice(b"' points to a path which is outside the user's root directory.");
        return s.reply_bytes(550, &msg);
    }
    log::info!("{} filesystem error: {e}", s.prefix);
    if e.raw_os_error() == Some(nix::libc::ENOSPC) || e.raw_os_error() == Some(nix::libc::EDQUOT) {
        return s.reply(452, "Insufficient storage space.");
    }
    if crate::handlers::data::out_of_descriptors(e) {
        // Transient, not the file's fault (RFC 959: 451 local error in processing).
        return s.reply(
            451,
            &format!("Local error: {}; try again later.", strerror(e)),
        );
    }
    s.reply(550, &format!("{}.", strerror(e)))
}
