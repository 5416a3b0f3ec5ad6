//! The built-in command table (pyftpdlib `proto_cmds`: one row per verb, every rule in a named
//! column; see table.rs) and the helpers the command functions share.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use super::session::ControlChannel;
use super::table::Arg::*;
use super::table::Busy::*;
use super::table::Channel::*;
use super::table::Creates::*;
use super::table::Login::*;
use super::table::PathArg::*;
use super::table::Telnet::*;
use super::table::Tls::*;
use super::table::{Arg, Busy, Channel, Command, Creates, Login, PathArg, Request, Telnet, Tls};
use super::Session;
use crate::authorizers::Perm;
use crate::authorizers::Perm::*;
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

/// One row; `help` gets its `Syntax: ` prefix here.
#[allow(clippy::too_many_arguments)]
fn row(
    name: &str,
    login: Login,
    perm: Option<Perm>,
    arg: Arg,
    path: PathArg,
    busy: Busy,
    channel: Channel,
    tls: Tls,
    creates: Creates,
    telnet: Telnet,
    f: Builtin,
    help: &str,
) -> Command {
    Command {
        name: name.to_owned(),
        login,
        arg,
        perm,
        path,
        busy,
        channel,
        tls,
        creates,
        telnet,
        help: format!("Syntax: {help}"),
        feat: None,
        run: Arc::new(f),
    }
}

/// Every built-in command, with pyftpdlib's properties and help texts, and the rules ftpdlib
/// adds (the columns are explained in table.rs).
#[rustfmt::skip]
pub(super) fn builtin() -> Vec<Command> {
    vec![
    //  verb          login    perm             arg        path       busy        channel  tls      creates  telnet function            help
    row("ABOR",       Needed,  None,            Forbidden, NotAPath,  Urgent,     Unused,  Any,     Nothing, Tail,  transfer::abor,     "ABOR (abort transfer)."),
    row("ALLO",       Needed,  None,            Required,  NotAPath,  Run,        Unused,  Any,     Nothing, Exact, transfer::allo,     "ALLO <SP> bytes (noop; allocate storage)."),
    row("APPE",       Needed,  Some(Append),    Required,  Plain,     Wait,       File,    Any,     Name,    Exact, transfer::appe,     "APPE <SP> file-name (append data to file)."),
    row("CDUP",       Needed,  Some(ChangeDir), Forbidden, Parent,    Run,        Unused,  Any,     Nothing, Exact, nav::cwd,           "CDUP (go to parent directory)."),
    row("CWD",        Needed,  Some(ChangeDir), Optional,  Cwd,       Run,        Unused,  Any,     Nothing, Exact, nav::cwd,           "CWD [<SP> dir-name] (change working directory)."),
    row("DELE",       Needed,  Some(Delete),    Required,  Plain,     Run,        Unused,  Any,     Nothing, Exact, fsops::dele,        "DELE <SP> file-name (delete file)."),
    row("EPRT",       Needed,  None,            Required,  NotAPath,  Wait,       Setup,   Data,    Nothing, Exact, datachan::eprt,     "EPRT <SP> |proto|ip|port| (extended active mode).").feat("EPRT"),
    row("EPSV",       Needed,  None,            Optional,  NotAPath,  Wait,       Setup,   Data,    Nothing, Exact, datachan::epsv,     "EPSV [<SP> proto/\"ALL\"] (extended passive mode).").feat("EPSV"),
    row("FEAT",       Free,    None,            Forbidden, NotAPath,  Run,        Unused,  Any,     Nothing, Exact, misc::feat,         "FEAT (list all new features supported)."),
    row("HELP",       Free,    None,            Optional,  NotAPath,  Run,        Unused,  Any,     Nothing, Exact, misc::help,         "HELP [<SP> cmd] (show help)."),
    row("LIST",       Needed,  Some(List),      Optional,  LsArgs,    Wait,       Listing, Any,     Nothing, Exact, listing::list,      "LIST [<SP> path] (list files)."),
    row("MDTM",       Needed,  Some(List),      Required,  Plain,     Run,        Unused,  Any,     Nothing, Exact, fsops::mdtm,        "MDTM [<SP> path] (file last modification time).").feat("MDTM"),
    row("MFMT",       Needed,  Some(Mtime),     Required,  AfterWord, Run,        Unused,  Any,     Nothing, Exact, fsops::mfmt,        "MFMT <SP> timeval <SP> path (file update last modification time).").feat("MFMT"),
    row("MLSD",       Needed,  Some(List),      Optional,  Plain,     Wait,       Listing, Any,     Nothing, Exact, listing::mlsd,      "MLSD [<SP> path] (list directory)."),
    row("MLST",       Needed,  Some(List),      Optional,  Plain,     Run,        Unused,  Any,     Nothing, Exact, listing::mlst,      "MLST [<SP> path] (show information about path)."),
    row("MODE",       Needed,  None,            Required,  NotAPath,  Run,        Unused,  Any,     Nothing, Exact, transfer::mode,     "MODE <SP> mode (noop; set data transfer mode)."),
    row("MKD",        Needed,  Some(Mkdir),     Required,  Plain,     Run,        Unused,  Any,     Name,    Exact, fsops::mkd,         "MKD <SP> path (create directory)."),
    row("NLST",       Needed,  Some(List),      Optional,  LsArgs,    Wait,       Listing, Any,     Nothing, Exact, listing::nlst,      "NLST [<SP> path] (list path in a compact form)."),
    row("NOOP",       Free,    None,            Forbidden, NotAPath,  Run,        Unused,  Any,     Nothing, Exact, misc::noop,         "NOOP (just do nothing)."),
    row("OPTS",       Needed,  None,            Required,  NotAPath,  Run,        Unused,  Any,     Nothing, Exact, misc::opts,         "OPTS <SP> cmd [<SP> option] (set option for command)."),
    row("PASS",       Free,    None,            Optional,  NotAPath,  Run,        Unused,  Control, Nothing, Exact, login::pass,        "PASS [<SP> password] (set user password)."),
    row("PASV",       Needed,  None,            Forbidden, NotAPath,  Wait,       Setup,   Data,    Nothing, Exact, datachan::pasv,     "PASV (open passive data connection)."),
    row("PORT",       Needed,  None,            Required,  NotAPath,  Wait,       Setup,   Data,    Nothing, Exact, datachan::port,     "PORT <sp> h,h,h,h,p,p (open active data connection)."),
    row("PWD",        Needed,  None,            Forbidden, NotAPath,  Run,        Unused,  Any,     Nothing, Exact, nav::pwd,           "PWD (get current working directory)."),
    row("QUIT",       Free,    None,            Forbidden, NotAPath,  Run,        Unused,  Any,     Nothing, Tail,  login::quit,        "QUIT (quit current session)."),
    row("REIN",       Needed,  None,            Forbidden, NotAPath,  Run,        Unused,  Any,     Nothing, Exact, login::rein,        "REIN (flush account)."),
    row("REST",       Needed,  None,            Required,  NotAPath,  Run,        Unused,  Any,     Nothing, Exact, transfer::rest,     "REST <SP> offset (set file offset).").feat("REST STREAM"),
    row("RETR",       Needed,  Some(Retrieve),  Required,  Plain,     Wait,       File,    Any,     Nothing, Exact, transfer::retr,     "RETR <SP> file-name (retrieve a file)."),
    row("RMD",        Needed,  Some(Delete),    Required,  Plain,     Run,        Unused,  Any,     Nothing, Exact, fsops::rmd,         "RMD <SP> dir-name (remove directory)."),
    row("RNFR",       Needed,  Some(Rename),    Required,  Plain,     Run,        Unused,  Any,     Nothing, Exact, fsops::rnfr,        "RNFR <SP> file-name (rename (source name))."),
    row("RNTO",       Needed,  Some(Rename),    Required,  Plain,     Run,        Unused,  Any,     Name,    Exact, fsops::rnto,        "RNTO <SP> file-name (rename (destination name))."),
    row("SITE",       Free,    None,            Required,  NotAPath,  Run,        Unused,  Any,     Nothing, Exact, misc::site,         "SITE <SP> site-command (execute SITE command)."),
    row("SITE CHMOD", Needed,  Some(Chmod),     Required,  AfterWord, Run,        Unused,  Any,     Nothing, Exact, fsops::site_chmod,  "SITE CHMOD <SP> mode path (change file mode)."),
    row("SITE HELP",  Free,    None,            Optional,  NotAPath,  Run,        Unused,  Any,     Nothing, Exact, misc::site_help,    "SITE HELP [<SP> cmd] (show SITE command help)."),
    row("SIZE",       Needed,  Some(List),      Required,  Plain,     Run,        Unused,  Any,     Nothing, Exact, fsops::size,        "SIZE <SP> file-name (get file size).").feat("SIZE"),
    row("STAT",       WithArg, Some(List),      Optional,  Status,    UrgentBare, Unused,  Any,     Nothing, Tail,  listing::stat,      "STAT [<SP> path name] (server stats [list files])."),
    row("STOR",       Needed,  Some(Store),     Required,  Plain,     Wait,       File,    Any,     Name,    Exact, transfer::stor,     "STOR <SP> file-name (store a file)."),
    row("STOU",       Needed,  Some(Store),     Optional,  Unique,    Wait,       File,    Any,     Name,    Exact, transfer::stou,     "STOU [<SP> name] (store a file with a unique name)."),
    row("STRU",       Needed,  None,            Required,  NotAPath,  Run,        Unused,  Any,     Nothing, Exact, transfer::stru,     "STRU <SP> type (noop; set file structure)."),
    row("SYST",       Free,    None,            Forbidden, NotAPath,  Run,        Unused,  Any,     Nothing, Exact, misc::syst,         "SYST (get operating system type)."),
    row("TYPE",       Needed,  None,            Required,  NotAPath,  Run,        Unused,  Any,     Nothing, Exact, transfer::type_,    "TYPE <SP> [A | I] (set transfer type)."),
    row("USER",       Free,    None,            Required,  NotAPath,  Run,        Unused,  Control, Nothing, Exact, login::user,        "USER <SP> user-name (set username)."),
    row("XCUP",       Needed,  Some(ChangeDir), Forbidden, Parent,    Run,        Unused,  Any,     Nothing, Exact, nav::cwd,           "XCUP (obsolete; go to parent directory)."),
    row("XCWD",       Needed,  Some(ChangeDir), Optional,  Cwd,       Run,        Unused,  Any,     Nothing, Exact, nav::cwd,           "XCWD [<SP> dir-name] (obsolete; change directory)."),
    row("XMKD",       Needed,  Some(Mkdir),     Required,  Plain,     Run,        Unused,  Any,     Name,    Exact, fsops::mkd,         "XMKD <SP> dir-name (obsolete; create directory)."),
    row("XPWD",       Needed,  None,            Forbidden, NotAPath,  Run,        Unused,  Any,     Nothing, Exact, nav::pwd,           "XPWD (obsolete; get current dir)."),
    row("XRMD",       Needed,  Some(Delete),    Required,  Plain,     Run,        Unused,  Any,     Nothing, Exact, fsops::rmd,         "XRMD <SP> dir-name (obsolete; remove directory)."),
    ]
}

/// The FTPS commands (pyftpdlib `TLS_FTPHandler`'s additions to the table; RFC 4217). They
/// change the protection of the connections, so they wait for a running transfer to end.
#[rustfmt::skip]
pub(super) fn tls_rows() -> Vec<Command> {
    vec![
    //  verb          login    perm             arg        path       busy        channel  tls      creates  telnet function            help
    row("AUTH",       Free,    None,            Required,  NotAPath,  Wait,       Unused,  Any,     Nothing, Exact, tls::auth,          "AUTH <SP> TLS|SSL (set up secure control channel).").feat("AUTH TLS"),
    row("CCC",        Free,    None,            Forbidden, NotAPath,  Wait,       Unused,  Any,     Nothing, Exact, tls::ccc,           "CCC (clear command channel: back to plaintext)."),
    row("PBSZ",       Free,    None,            Required,  NotAPath,  Wait,       Unused,  Any,     Nothing, Exact, tls::pbsz,          "PBSZ <SP> 0 (negotiate size of buffer for secure data transfer).").feat("PBSZ"),
    row("PROT",       Free,    None,            Required,  NotAPath,  Wait,       Unused,  Any,     Nothing, Exact, tls::prot,          "PROT <SP> [C|P] (set up un/secure data channel).").feat("PROT"),
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

/// True for a full disk or an exhausted quota.
fn out_of_space(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::ENOSPC) | Some(nix::libc::EDQUOT)
    )
}

/// The reply to a local failure that is not the file's fault (RFC 959: 452 insufficient
/// storage for a full disk or quota, 451 local error in processing otherwise), with `then`
/// saying what happens next (`transfer aborted`, `try again later`).
pub(crate) fn reply_local_error(
    c: &mut ControlChannel,
    e: &io::Error,
    then: &str,
) -> io::Result<()> {
    if out_of_space(e) {
        return c.reply(452, "Insufficient storage space.");
    }
    c.reply(451, &format!("Local error: {}; {then}.", strerror(e)))
}

/// Replies to a filesystem error: pyftpdlib's `550 '<path>' points to a path which is
/// outside the user's root directory.` for a path leading out of the root (logged as a
/// warning), `452` for a full disk, `451` when out of descriptors, `550 <strerror>.`
/// otherwise (pyftpdlib `_strerror`).
pub(crate) fn fs_error(s: &mut Session, e: &io::Error) -> io::Result<()> {
    if let Some(esc) = Escape::of(e) {
        log::warn!(
            "{} refused: {:?} leads outside the user's root",
            s.ctrl.prefix,
            esc.path
        );
        // pyftpdlib quotes the path with Python's repr: '/path'.
        let mut msg = b"'".to_vec();
        msg.extend_from_slice(&proto::quote_path(&wire(s, &esc.path)));
        msg.extend_from_slice(b"' points to a path which is outside the user's root directory.");
        return s.ctrl.reply_bytes(550, &msg);
    }
    log::info!("{} filesystem error: {e}", s.ctrl.prefix);
    if out_of_space(e) || crate::handlers::dtp::out_of_descriptors(e) {
        // Transient, not the file's fault.
        return reply_local_error(&mut s.ctrl, e, "try again later");
    }
    s.ctrl.reply(550, &format!("{}.", strerror(e)))
}
