//! The command table (pyftpdlib `proto_cmds`): one [`Command`] row per verb, and in its named
//! columns every rule the session applies to the verb — login, permission, argument rule,
//! the shape of its path argument, what happens to it while a transfer runs, its use of the
//! data channel, the TLS it needs, whether it creates a name, whether it may arrive behind
//! Telnet bytes. Dispatch (session/dispatch.rs) and the service of commands during a
//! transfer read these columns and nothing else: no list of names anywhere decides what a
//! verb does. The built-in rows are commands/mod.rs; the FTPS rows (AUTH, PBSZ, PROT, CCC)
//! join the table only when the handler has TLS, as pyftpdlib's `TLS_FTPHandler` extends
//! its table.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use super::Session;
use crate::authorizers::Perm;

/// How a command treats its argument (pyftpdlib `proto_cmds[...]['arg']`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg {
    /// An argument is needed (501 without one).
    Required,
    /// No argument is accepted (501 with one).
    Forbidden,
    /// Either.
    Optional,
}

/// Whether a command needs a logged-in user (pyftpdlib `proto_cmds[...]['auth']`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    /// 530 before login.
    Needed,
    /// Anyone may send it.
    Free,
    /// Free without an argument, needed with one (STAT: the server's status is public, a
    /// listing is not).
    WithArg,
}

/// What a command's argument is as a path: how dispatch turns it into the virtual path the
/// operation resolves beneath the root (and the host path the permission check sees).
/// Only rows with a permission letter are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathArg {
    /// Not a path.
    NotAPath,
    /// The argument is the path; none is the working directory.
    Plain,
    /// CWD: none is the root.
    Cwd,
    /// CDUP: the parent of the working directory.
    Parent,
    /// LIST, NLST: the `ls` options many clients put first are dropped (`LIST -la dir`).
    LsArgs,
    /// STAT: as [`LsArgs`](PathArg::LsArgs), no path without an argument (the server's
    /// status), and no glob characters (550).
    Status,
    /// SITE CHMOD, MFMT: the path follows a first word, which the command gets as
    /// [`Request::extra`] (501 without a second word).
    AfterWord,
    /// STOU: the command makes its own unique name and checks the permission on it.
    Unique,
}

/// What happens to a command that arrives while a transfer runs (or waits for its passive
/// connection), RFC 959 §4.1.3 and RFC 1123 §4.1.3.4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// Runs at once, ahead of any line still waiting, without the login and argument
    /// checks: a client's way into a running transfer (ABOR).
    Urgent,
    /// As [`Urgent`](Busy::Urgent) without an argument, as [`Run`](Busy::Run) with one
    /// (STAT: the transfer's progress, or a listing over the control connection).
    UrgentBare,
    /// Answered at once unless earlier lines wait (replies stay in order), as pyftpdlib
    /// answers USER, TYPE, SIZE … during a transfer.
    Run,
    /// Waits until the transfer ends: it needs the data channel or changes its protection.
    Wait,
}

/// What a command does with the data channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Nothing: it is answered over the control connection.
    Unused,
    /// Sets the next data connection up (PORT, EPRT, PASV, EPSV): refused without `PROT P`
    /// when TLS is required on data, and a refusal makes the next transfer command fail at
    /// once instead of waiting for a channel.
    Setup,
    /// Moves a file (RETR, STOR, APPE, STOU): the file callbacks fire when it ends.
    File,
    /// Sends a listing (LIST, NLST, MLSD).
    Listing,
}

/// The TLS a command needs when the handler requires it ([`TlsConfig`](super::TlsConfig)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// None.
    Any,
    /// An encrypted control connection when `tls_control_required` (USER, PASS): 550.
    Control,
    /// `PROT P` when `tls_data_required` (the data channel setup): 522.
    Data,
}

/// Whether a command creates the name it is given: a CR, LF or NUL in it is refused with
/// 553 (RFC 959 "File name not allowed"), since every reply and listing that shows the name
/// would carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Creates {
    /// It names something that exists (or nothing).
    Nothing,
    /// It creates the name (MKD, STOR, APPE, STOU, RNTO).
    Name,
}

/// Whether a verb is found with stray bytes in front of it: clients that send ABOR, STAT and
/// QUIT behind Telnet "Interrupt Process" and "Synch" sometimes leave some (pyftpdlib checks
/// the last four characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Telnet {
    /// The verb as sent.
    Exact,
    /// Also the verb's last four characters.
    Tail,
}

/// What a command function receives.
#[derive(Debug, Clone)]
pub struct Request {
    /// The verb, upper-cased (`"RETR"`, `"SITE CHMOD"`).
    pub verb: String,
    /// The argument as the client sent it (bytes: names need not be UTF-8).
    pub arg: Vec<u8>,
    /// For commands with a permission letter: the argument (or the working directory) as a
    /// virtual path, normalized (`/dir/file`): what the session's
    /// [`Filesystem`](crate::filesystems::Filesystem) receives, resolved beneath the root
    /// when the operation runs.
    pub vpath: Option<PathBuf>,
    /// The same path on the host: the root joined with `vpath`, symlinks not resolved (what
    /// [`Authorizer::has_perm`](crate::authorizers::Authorizer::has_perm) and the callbacks
    /// see). Opening it by name would bypass the jail; go through [`Session::fs`] with
    /// `vpath` instead.
    pub path: Option<PathBuf>,
    /// The first word of two-argument commands (the mode of SITE CHMOD, the time of MFMT).
    pub extra: Option<String>,
}

impl Request {
    /// The argument as text (bytes that are not UTF-8 replaced).
    pub fn arg_str(&self) -> String {
        String::from_utf8_lossy(&self.arg).into_owned()
    }
}

/// The function that runs a command. It returns `Err` only when the control connection is
/// dead; every protocol failure is a reply.
pub type CommandFn = Arc<dyn Fn(&mut Session, &Request) -> io::Result<()> + Send + Sync>;

/// One row of the command table (pyftpdlib `proto_cmds`).
#[derive(Clone)]
pub struct Command {
    /// The verb, upper case; SITE commands as `"SITE NAME"`.
    pub name: String,
    /// Login rule.
    pub login: Login,
    /// Argument rule.
    pub arg: Arg,
    /// Permission checked with
    /// [`Authorizer::has_perm`](crate::authorizers::Authorizer::has_perm) on the resolved
    /// path.
    pub perm: Option<Perm>,
    /// The shape of the path argument (rows with a permission letter).
    pub path: PathArg,
    /// While a transfer runs.
    pub busy: Busy,
    /// Its use of the data channel.
    pub channel: Channel,
    /// The TLS it needs when TLS is required.
    pub tls: Tls,
    /// Whether it creates the name it is given.
    pub creates: Creates,
    /// Whether it is found behind stray Telnet bytes.
    pub telnet: Telnet,
    /// HELP text: `"Syntax: RETR <SP> file-name (retrieve a file)."`.
    pub help: String,
    /// The line FEAT shows for this command, if any.
    pub feat: Option<String>,
    pub(crate) run: CommandFn,
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Command")
            .field("name", &self.name)
            .field("login", &self.login)
            .field("arg", &self.arg)
            .field("perm", &self.perm)
            .field("path", &self.path)
            .field("busy", &self.busy)
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl Command {
    /// A command that needs login, takes an optional argument that is not a path, and runs
    /// during a transfer like USER or SIZE; change it with the builder methods.
    pub fn new(
        name: &str,
        help: &str,
        run: impl Fn(&mut Session, &Request) -> io::Result<()> + Send + Sync + 'static,
    ) -> Command {
        Command {
            name: name.to_ascii_uppercase(),
            login: Login::Needed,
            arg: Arg::Optional,
            perm: None,
            path: PathArg::NotAPath,
            busy: Busy::Run,
            channel: Channel::Unused,
            tls: Tls::Any,
            creates: Creates::Nothing,
            telnet: Telnet::Exact,
            help: help.to_owned(),
            feat: None,
            run: Arc::new(run),
        }
    }

    /// Sets whether login is required.
    pub fn auth(mut self, auth: bool) -> Command {
        self.login = if auth { Login::Needed } else { Login::Free };
        self
    }

    /// Sets the argument rule.
    pub fn arg(mut self, arg: Arg) -> Command {
        self.arg = arg;
        self
    }

    /// Sets the permission letter; the argument is then resolved as a path (as
    /// [`PathArg::Plain`] unless [`path`](Self::path) chose another shape) and checked.
    pub fn perm(mut self, perm: Option<Perm>) -> Command {
        self.perm = perm;
        if perm.is_some() && self.path == PathArg::NotAPath {
            self.path = PathArg::Plain;
        }
        self
    }

    /// Sets the shape of the path argument.
    pub fn path(mut self, path: PathArg) -> Command {
        self.path = path;
        self
    }

    /// Sets what happens to the command during a transfer.
    pub fn busy(mut self, busy: Busy) -> Command {
        self.busy = busy;
        self
    }

    /// Marks the command as creating the name it is given.
    pub fn creates(mut self, creates: Creates) -> Command {
        self.creates = creates;
        self
    }

    /// Sets the FEAT line.
    pub fn feat(mut self, feat: &str) -> Command {
        self.feat = Some(feat.to_owned());
        self
    }
}

/// RFC 959 commands ftpdlib recognizes but does not implement: 502 (RFC 959 §4.2, as vsftpd
/// answers), where pyftpdlib, not knowing them, says 500. They have no row, so HELP does not
/// list them.
const NOT_IMPLEMENTED: &[&str] = &["ACCT", "SMNT"];

/// What looking a verb up found.
pub(crate) enum Found<'a> {
    /// A row.
    Row(&'a Command),
    /// A verb RFC 959 defines that ftpdlib does not implement (502).
    NotImplemented,
    /// Nothing (500).
    Unknown,
}

/// The commands a handler understands, by verb.
#[derive(Clone, Debug)]
pub struct CommandTable {
    cmds: BTreeMap<String, Command>,
}

impl CommandTable {
    /// The built-in commands (the FTPS ones join when the handler has TLS).
    pub fn builtin() -> CommandTable {
        Self::of(super::commands::builtin())
    }

    fn of(rows: Vec<Command>) -> CommandTable {
        let cmds = rows.into_iter().map(|c| (c.name.clone(), c)).collect();
        CommandTable { cmds }
    }

    /// The FTPS commands (RFC 4217), shared by every handler with TLS.
    pub(crate) fn tls() -> &'static CommandTable {
        static TLS: OnceLock<CommandTable> = OnceLock::new();
        TLS.get_or_init(|| Self::of(super::commands::tls_rows()))
    }

    /// Adds or replaces a command.
    pub fn insert(&mut self, cmd: Command) {
        self.cmds.insert(cmd.name.clone(), cmd);
    }

    /// Removes a command (it then gets 500 like any unknown verb).
    pub fn remove(&mut self, name: &str) -> Option<Command> {
        self.cmds.remove(&name.to_ascii_uppercase())
    }

    /// Looks a command up.
    pub fn get(&self, name: &str) -> Option<&Command> {
        self.cmds.get(name)
    }

    /// Every command, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &Command> {
        self.cmds.values()
    }
}

impl super::FtpHandler {
    /// The row of `verb` in the table sessions read: the handler's rows, and the FTPS rows
    /// when the handler has TLS.
    pub fn command(&self, verb: &str) -> Option<&Command> {
        let tls = self.tls.as_ref().map(|_| CommandTable::tls());
        self.commands
            .get(verb)
            .or_else(|| tls.and_then(|t| t.get(verb)))
    }

    /// Every row sessions read (see [`command`](Self::command)), sorted by name: what FEAT,
    /// HELP and SITE HELP show.
    pub fn command_rows(&self) -> Vec<&Command> {
        let mut rows: BTreeMap<&str, &Command> =
            self.commands.iter().map(|c| (c.name.as_str(), c)).collect();
        if self.tls.is_some() {
            for c in CommandTable::tls().iter() {
                rows.entry(c.name.as_str()).or_insert(c);
            }
        }
        rows.into_values().collect()
    }

    /// Looks a verb up as dispatch does: the row of that name, else a verb ftpdlib knows but
    /// does not implement, else a row whose [`Telnet::Tail`] matches the verb's last four
    /// characters.
    pub(crate) fn lookup(&self, verb: &str) -> Found<'_> {
        if let Some(c) = self.command(verb) {
            return Found::Row(c);
        }
        if NOT_IMPLEMENTED.contains(&verb) {
            return Found::NotImplemented;
        }
        let tail = verb.get(verb.len().saturating_sub(4)..).unwrap_or("");
        match self.command(tail) {
            Some(c) if c.telnet == Telnet::Tail => Found::Row(c),
            _ => Found::Unknown,
        }
    }
}
