//! `ftpdlib users …`: managing the users of a database without writing SQL (add, del,
//! list, show, passwd, perm, set, enable, disable, init). Passwords come from a prompt with
//! echo off or from stdin (`--password-stdin`), never from the command line, where `ps`
//! would show them.

use std::ffi::OsString;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use crate::authorizers::sql::{hash_password, UserDb, UserRecord};
use crate::authorizers::{PermSet, UserLimits};

const USAGE: &str = "Usage: ftpdlib users COMMAND [ARGS] --users-db URL [options]

Manage the users of a database (URL: sqlite:PATH or postgres://USER@HOST/DB, or @FILE
to read the URL from a file). The database and its tables are created when missing.

Commands:
  add NAME         add a user (the password is asked for, or read with --password-stdin;
                   `anonymous` needs none: it logs in with any password)
  del NAME         remove a user
  list             list the users
  show NAME        show one user, with its directory permissions
  passwd NAME      set a user's password
  perm NAME PERM   set the permissions at home (letters of elradfmwMT)
  perm NAME PERM --dir DIR [--recursive]
                   other permissions in DIR (relative to the home)
  perm NAME --dir DIR --remove
                   drop the permissions of DIR
  set NAME [--home DIR] [--msg-login TEXT] [--msg-quit TEXT] [limits]
  enable NAME, disable NAME
  init             create or upgrade the tables only";

fn opts() -> getopts::Options {
    let mut o = getopts::Options::new();
    o.optopt("", "users-db", "the user database", "URL");
    o.optopt(
        "",
        "home",
        "home directory: absolute, or relative to the server's -d (default: -d itself)",
        "DIR",
    );
    o.optopt("", "perm", "permissions at home (default elr)", "LETTERS");
    o.optflag(
        "",
        "password-stdin",
        "read the password from the first line of stdin",
    );
    o.optflag(
        "",
        "hash-stdin",
        "read a ready-made hash from stdin ($argon2id$…, or crypt(3): $y$, $6$, $5$, $2b$)",
    );
    o.optopt("", "msg-login", "text of the 230 reply", "TEXT");
    o.optopt("", "msg-quit", "text of the 221 reply", "TEXT");
    for (name, what) in LIMIT_FLAGS {
        o.optopt("", name, what, "RATE|default");
    }
    o.optopt("", "dir", "the directory of a permission override", "DIR");
    o.optflag("", "recursive", "the override also applies below DIR");
    o.optflag("", "remove", "remove the override of --dir");
    o.optflag("", "disabled", "add the user disabled");
    o.optflag("h", "help", "show this help and exit");
    o
}

const LIMIT_FLAGS: [(&str, &str); 4] = [
    (
        "read-limit",
        "upload bytes/s of each session (500K, 10M; 0 unlimited)",
    ),
    ("write-limit", "download bytes/s of each session"),
    (
        "user-read-limit",
        "upload bytes/s shared by the user's sessions",
    ),
    (
        "user-write-limit",
        "download bytes/s shared by the user's sessions",
    ),
];

/// Runs `ftpdlib users ARGS`. Exit codes: 0 done, 1 the database refused or failed (no
/// such user, user exists, unreachable), 2 a bad command line.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let o = opts();
    let m = match o.parse(args) {
        Ok(m) => m,
        Err(e) => return usage_error(&e.to_string()),
    };
    if m.opt_present("h") || m.free.is_empty() {
        println!("{}", o.usage(USAGE));
        return ExitCode::SUCCESS;
    }
    match run(&m) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => usage_error(&e),
        Err(Failure::Db(e)) => {
            eprintln!("ftpdlib users: {e}");
            ExitCode::from(1)
        }
    }
}

fn usage_error(e: &str) -> ExitCode {
    eprintln!("ftpdlib users: error: {e}\nTry 'ftpdlib users --help' for more information.");
    ExitCode::from(2)
}

enum Failure {
    /// A bad command line (exit 2).
    Usage(String),
    /// The database refused or failed (exit 1).
    Db(String),
}

type Res<T> = Result<T, Failure>;

fn db_err(e: impl std::fmt::Display) -> Failure {
    Failure::Db(e.to_string())
}

/// The `--users-db` value, or the first line of FILE for `@FILE` (keeps a database
/// password out of `ps`).
pub(crate) fn users_db_url(value: &str) -> Result<String, String> {
    match value.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file)
            .map_err(|e| format!("--users-db @{file}: {e}"))
            .map(|s| s.lines().next().unwrap_or("").trim().to_owned()),
        None => Ok(value.to_owned()),
    }
}

fn run(m: &getopts::Matches) -> Res<()> {
    let cmd = m.free[0].as_str();
    let args = &m.free[1..];
    let url = m
        .opt_str("users-db")
        .ok_or_else(|| Failure::Usage("--users-db URL is required".into()))?;
    let url = users_db_url(&url).map_err(Failure::Usage)?;
    let want = |n: usize, shape: &str| {
        if args.len() == n {
            Ok(())
        } else {
            Err(Failure::Usage(format!(
                "usage: ftpdlib users {cmd} {shape}"
            )))
        }
    };
    match cmd {
        "add" | "del" | "show" | "passwd" | "set" | "enable" | "disable" => want(1, "NAME")?,
        "list" | "init" => want(0, "")?,
        "perm" if m.opt_present("remove") => want(1, "NAME --dir DIR --remove")?,
        "perm" => want(2, "NAME LETTERS [--dir DIR [--recursive]]")?,
        other => return Err(Failure::Usage(format!("unknown command {other:?}"))),
    }
    let db = UserDb::open(&url).map_err(db_err)?;
    let name = args.first().map(String::as_str).unwrap_or("");
    match cmd {
        "add" => add(&db, name, m),
        "del" => found(db.remove(name), name).map(|()| println!("removed {name}")),
        "list" => list(&db),
        "show" => show(&db, name),
        "passwd" if name == "anonymous" => Err(Failure::Usage(
            "anonymous logs in with any password: it has none to set".into(),
        )),
        "passwd" => {
            let hash = password(name, m, true)?;
            found(db.set_password_hash(name, &hash), name)
        }
        "perm" => perm(&db, name, args.get(1).map(String::as_str), m),
        "set" => set(&db, name, m),
        "enable" => found(db.set_enabled(name, true), name),
        "disable" => found(db.set_enabled(name, false), name),
        _ => {
            let v = db.schema_version().map_err(db_err)?;
            println!("{}: schema version {v}", db.url());
            Ok(())
        }
    }
}

fn found(r: Result<bool, crate::authorizers::sql::DbError>, name: &str) -> Res<()> {
    match r {
        Ok(true) => Ok(()),
        Ok(false) => Err(Failure::Db(format!("no such user {name:?}"))),
        Err(e) => Err(db_err(e)),
    }
}

fn parse_perm(s: &str) -> Res<PermSet> {
    PermSet::parse(s).map_err(|e| Failure::Usage(format!("{e} (use letters of elradfmwMT)")))
}

fn add(db: &UserDb, name: &str, m: &getopts::Matches) -> Res<()> {
    if name.is_empty() || name.len() > 255 || name.contains(char::is_control) {
        return Err(Failure::Usage(format!("invalid user name {name:?}")));
    }
    let home = PathBuf::from(m.opt_str("home").unwrap_or_else(|| ".".into()));
    if home.is_absolute() && !home.is_dir() {
        eprintln!(
            "warning: {} is not a directory here; {name} cannot log in until it is one on \
             the server",
            home.display()
        );
    }
    let mut u = UserRecord::new(name, home);
    if let Some(p) = m.opt_str("perm") {
        u.perm = parse_perm(&p)?;
    }
    if name == "anonymous" && u.perm.has_write() {
        eprintln!("warning: write permissions assigned to anonymous user.");
    }
    if let Some(t) = m.opt_str("msg-login") {
        u.msg_login = t;
    }
    if let Some(t) = m.opt_str("msg-quit") {
        u.msg_quit = t;
    }
    u.limits = limits(m, UserLimits::default())?;
    u.enabled = !m.opt_present("disabled");
    if db.get(name).map_err(db_err)?.is_some() {
        return Err(Failure::Db(format!("user {name:?} already exists")));
    }
    // pyftpdlib: anonymous logs in with any password, so it has none.
    if name != "anonymous" {
        u.password_hash = password(name, m, false)?;
    }
    db.add(&u).map_err(db_err)?;
    let rel = if u.home.is_absolute() {
        ""
    } else {
        " (relative to the server's -d directory)"
    };
    println!(
        "added {name}: home {}{rel}, permissions {}",
        u.home.display(),
        u.perm
    );
    Ok(())
}

/// The hash to store: from `--hash-stdin`, or a password from stdin or a prompt.
fn password(name: &str, m: &getopts::Matches, changing: bool) -> Res<String> {
    if m.opt_present("hash-stdin") {
        let h = stdin_line()?;
        if !crate::authorizers::sql::is_known_hash(&h) {
            return Err(Failure::Usage(
                "not a hash this system can check (expected $argon2id$…, $y$, $6$, $5$, $2b$…)"
                    .into(),
            ));
        }
        return Ok(h);
    }
    let pw = if m.opt_present("password-stdin") {
        stdin_line()?
    } else if std::io::stdin().is_terminal() {
        let verb = if changing { "New password" } else { "Password" };
        let a = prompt(&format!("{verb} for {name}: "))?;
        let b = prompt("Retype it: ")?;
        if a != b {
            return Err(Failure::Usage("the passwords differ".into()));
        }
        a
    } else {
        return Err(Failure::Usage(
            "no terminal to ask the password on: use --password-stdin".into(),
        ));
    };
    if pw.is_empty() {
        return Err(Failure::Usage("empty password".into()));
    }
    hash_password(&pw).map_err(db_err)
}

fn stdin_line() -> Res<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::Usage(format!("stdin: {e}")))?;
    let line = line.strip_suffix('\n').unwrap_or(&line);
    Ok(line.strip_suffix('\r').unwrap_or(line).to_owned())
}

/// Asks on the terminal with echo off (termios), restoring it even on error.
fn prompt(text: &str) -> Res<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    let err = |e: nix::Error| Failure::Usage(format!("terminal: {e}"));
    let saved = tcgetattr(&stdin).map_err(err)?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    eprint!("{text}");
    let _ = std::io::stderr().flush();
    tcsetattr(&stdin, SetArg::TCSAFLUSH, &quiet).map_err(err)?;
    let line = stdin_line();
    let restored = tcsetattr(&stdin, SetArg::TCSAFLUSH, &saved);
    let line = line?;
    restored.map_err(err)?;
    Ok(line)
}

/// The limit flags over `base`: a rate, or `default` for the server's own.
fn limits(m: &getopts::Matches, base: UserLimits) -> Res<UserLimits> {
    let get = |flag: &str, cur: Option<u64>| -> Res<Option<u64>> {
        match m.opt_str(flag).as_deref() {
            None => Ok(cur),
            Some("default") => Ok(None),
            Some(v) => super::parse_rate(v)
                .map(Some)
                .map_err(|e| Failure::Usage(format!("--{flag}: {e}"))),
        }
    };
    Ok(UserLimits {
        read_limit: get("read-limit", base.read_limit)?,
        write_limit: get("write-limit", base.write_limit)?,
        user_read_limit: get("user-read-limit", base.user_read_limit)?,
        user_write_limit: get("user-write-limit", base.user_write_limit)?,
    })
}

fn perm(db: &UserDb, name: &str, letters: Option<&str>, m: &getopts::Matches) -> Res<()> {
    let Some(dir) = m.opt_str("dir") else {
        if m.opt_present("recursive") || m.opt_present("remove") {
            return Err(Failure::Usage("--recursive and --remove need --dir".into()));
        }
        let perm = parse_perm(letters.unwrap_or(""))?;
        return found(db.set_perm(name, perm), name);
    };
    let dir = PathBuf::from(dir);
    if dir.as_os_str().is_empty()
        || dir
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(Failure::Usage(
            "--dir: a directory below the home, without . or ..".into(),
        ));
    }
    if m.opt_present("remove") {
        return match db.remove_override(name, &dir).map_err(db_err)? {
            true => Ok(()),
            false => Err(Failure::Db(format!(
                "{name:?} has no permissions of its own in {}",
                dir.display()
            ))),
        };
    }
    let perm = parse_perm(letters.unwrap_or(""))?;
    found(
        db.override_perm(name, &dir, perm, m.opt_present("recursive")),
        name,
    )
}

fn set(db: &UserDb, name: &str, m: &getopts::Matches) -> Res<()> {
    let u = db
        .get(name)
        .map_err(db_err)?
        .ok_or_else(|| Failure::Db(format!("no such user {name:?}")))?;
    if let Some(h) = m.opt_str("home") {
        found(db.set_home(name, Path::new(&h)), name)?;
    }
    if m.opt_present("msg-login") || m.opt_present("msg-quit") {
        let (l, q) = (m.opt_str("msg-login"), m.opt_str("msg-quit"));
        found(db.set_messages(name, l.as_deref(), q.as_deref()), name)?;
    }
    let lim = limits(m, u.limits)?;
    if lim != u.limits {
        found(db.set_limits(name, &lim), name)?;
    }
    Ok(())
}

fn rate(r: Option<u64>) -> String {
    r.map_or_else(|| "-".into(), |n| n.to_string())
}

fn list(db: &UserDb) -> Res<()> {
    let users = db.list().map_err(db_err)?;
    let w = users.iter().map(|u| u.name.len()).max().unwrap_or(4).max(4);
    println!("{:w$}  ENABLED  PERM        OVERRIDES  HOME", "NAME");
    for u in users {
        println!(
            "{:w$}  {:7}  {:10}  {:9}  {}",
            u.name,
            if u.enabled { "yes" } else { "no" },
            u.perm.to_string(),
            u.overrides.len(),
            u.home.display()
        );
    }
    Ok(())
}

fn show(db: &UserDb, name: &str) -> Res<()> {
    let u = db
        .get(name)
        .map_err(db_err)?
        .ok_or_else(|| Failure::Db(format!("no such user {name:?}")))?;
    let scheme = u
        .password_hash
        .split('$')
        .nth(1)
        .filter(|s| !s.is_empty())
        .unwrap_or("none");
    println!("name:        {}", u.name);
    println!("enabled:     {}", if u.enabled { "yes" } else { "no" });
    println!("password:    {scheme}");
    println!("home:        {}", u.home.display());
    println!("perm:        {}", u.perm);
    for o in &u.overrides {
        let rec = if o.recursive { " (recursive)" } else { "" };
        println!("  {}: {}{rec}", o.directory.display(), o.perm);
    }
    println!("msg_login:   {}", u.msg_login);
    println!("msg_quit:    {}", u.msg_quit);
    let l = u.limits;
    println!(
        "limits:      read {} write {} user_read {} user_write {} (bytes/s; - = server's)",
        rate(l.read_limit),
        rate(l.write_limit),
        rate(l.user_read_limit),
        rate(l.user_write_limit)
    );
    Ok(())
}
