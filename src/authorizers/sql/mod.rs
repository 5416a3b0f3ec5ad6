//! Users in a database: [`SqlAuthorizer`] (the [`Authorizer`](super::Authorizer) that reads
//! them) and [`UserDb`] (the table's management, behind `ftpdlib users`), on SQLite (cargo
//! feature `sqlite`, on by default: one file, SQLite compiled in) or PostgreSQL (feature
//! `postgres`: one database shared by several servers), through blocking drivers and a
//! small pool of connections (pool.rs). proftpd's mod_sql and pure-ftpd's MySQL/PostgreSQL
//! back ends are the models; pyftpdlib has none.
//!
//! The schema belongs to ftpdlib (schema.rs: versioned migrations recorded in the database
//! itself) and is stable enough to be managed with plain SQL; the README documents it.
//!
//! # How the server uses them
//!
//! * **Homes and `-d`.** A home is an absolute path, or a path relative to the server's `-d`
//!   directory (default: the current directory), which is also the home of users added without
//!   `--home`. Relative homes let servers that mount the same tree at different places share one
//!   database. The home must exist on the server when the user logs in (otherwise the login is
//!   refused and logged); each user is jailed in it as with `-u`.
//! * **anonymous** logs in only if a user named `anonymous` exists (and is enabled), and then,
//!   as pyftpdlib's `add_anonymous`, with any password; `users add anonymous` asks for none.
//!   Without it: `530 Anonymous access not allowed.`
//! * **Passwords.** New hashes are argon2id PHC strings (RFC 9106; m = 19 MiB, t = 2, p = 1,
//!   OWASP's recommended minimum); crypt(3) hashes are checked by the system's libxcrypt. A
//!   plain-text value in the column never matches. Comparisons are constant-time. An unknown
//!   user is checked against a dummy argon2id hash of the same parameters, and a disabled user's
//!   password is checked before the refusal, so neither answers faster than a wrong password.
//!   At most one verification per CPU runs at once, each in a work area allocated once and
//!   reused (so 500 simultaneous PASS commands do not ask for 10 GB, and resident memory stays
//!   flat: 46 MB after 30 concurrent logins, where fresh areas left 180 MB after ten).
//! * **One query per login.** The login reads the user's row and its directory permissions in
//!   one query, on a pooled connection held only for that query (the hash is checked after the
//!   connection is back in the pool). The row is then kept for as long as the user has a
//!   session: permission checks, messages and limits never touch the database. Each login of
//!   a user reads the row again and refreshes it for all of that user's sessions; a changed,
//!   disabled or deleted user keeps the sessions already open (as with pyftpdlib's
//!   authorizers, nothing ends them).
//! * **Limits** (`read_limit` … `user_write_limit`, bytes/s) replace the server's
//!   `--read-limit` … `--user-write-limit` for that user; NULL keeps the server's.
//! * **A slow database** delays only the login that waits for it: the pool (8 connections by
//!   default) bounds the queries running at once, a login that finds none free waits up to 30 s,
//!   and every other session goes on (tested: 50 logins against queries made 200 ms slow with
//!   `pg_sleep` take at least 10 × 200 ms on a pool of 5, while a logged-in session's LIST answers
//!   at once). SQLite readers wait up to 5 s for a writer's lock; a PostgreSQL query is
//!   cancelled after 10 s (`statement_timeout`) and a server that stops acknowledging is given
//!   up after 10 s (`tcp_user_timeout`); either way that login gets 421.
//! * **A database that is down** (unreachable, locked too long, no connection free in time):
//!   the login gets `421 Service not available, try later.` and the connection closes (not a
//!   530: the password was not wrong, so the attempt is not counted and `on_login_failed` does
//!   not fire). The first failure is logged at once, then at most one line a minute with a
//!   count, and the recovery once. Sessions already logged in keep working. Nothing needs
//!   restarting: a broken connection is replaced at the next login. A server started while its
//!   PostgreSQL is down starts anyway (logins get 421 until it answers); a missing SQLite file
//!   or a database with a newer schema than the server knows is refused at start (exit 2).
//! * **Concurrency models.** No pool thread exists (r2d2 would start three, which `fork()`
//!   forbids): in the Pool and Thread models one pool serves every session; in Fork each
//!   session process opens a connection for its login and closes it right after (500 forked
//!   sessions do not hold 500 PostgreSQL connections); in PreFork each worker has its own
//!   pool (workers × pool size connections at most). The server never uses a connection across
//!   `fork()`. Error reports are counted per process: in Fork each session process reports its
//!   own failure.
//! * **`--user NAME`**: the database file (SQLite) must then be readable and writable by NAME,
//!   as connections are opened after the switch. Keep the database outside the served tree.
//!
//! # The schema
//!
//! ftpdlib creates and upgrades its tables itself: `ftpd_schema_version` records each applied
//! migration (`src/authorizers/sql/schema/*.sql`); a newer ftpdlib upgrades an older database
//! in one transaction (under a lock on PostgreSQL, so servers starting together migrate once),
//! and an older ftpdlib refuses a newer database. Version 1 (SQLite; PostgreSQL has `BOOLEAN`
//! for `enabled`/`recursive`, `BIGINT` limits and `perm ~ '^[elradfmwMT]*$'`):
//!
//! ```sql
//! CREATE TABLE ftpd_users (
//!     name             TEXT    NOT NULL PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 255),
//!     password         TEXT    NOT NULL DEFAULT '',   -- argon2 PHC or crypt(3) hash; '' never matches
//!     home             TEXT    NOT NULL DEFAULT '.' CHECK (home <> ''),  -- absolute, or relative to -d
//!     perm             TEXT    NOT NULL DEFAULT 'elr' CHECK (perm NOT GLOB '*[^elradfmwMT]*'),
//!     msg_login        TEXT    NOT NULL DEFAULT 'Login successful.',
//!     msg_quit         TEXT    NOT NULL DEFAULT 'Goodbye.',
//!     read_limit       INTEGER CHECK (read_limit >= 0),        -- bytes/s; NULL: the server's
//!     write_limit      INTEGER CHECK (write_limit >= 0),
//!     user_read_limit  INTEGER CHECK (user_read_limit >= 0),
//!     user_write_limit INTEGER CHECK (user_write_limit >= 0),
//!     enabled          INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1))
//! );
//! CREATE TABLE ftpd_perm_overrides (
//!     name      TEXT    NOT NULL REFERENCES ftpd_users (name) ON DELETE CASCADE ON UPDATE CASCADE,
//!     directory TEXT    NOT NULL CHECK (directory <> ''),  -- relative to the home (or absolute inside it)
//!     perm      TEXT    NOT NULL CHECK (perm NOT GLOB '*[^elradfmwMT]*'),
//!     recursive INTEGER NOT NULL DEFAULT 0 CHECK (recursive IN (0, 1)),
//!     PRIMARY KEY (name, directory)
//! );
//! ```
//!
//! Managing users with SQL is fine (the next login sees the change):
//!
//! ```sql
//! INSERT INTO ftpd_users (name, password, home, perm)
//!     VALUES ('bob', '$6$…', '/srv/ftp/bob', 'elr');     -- a hash from `openssl passwd -6`
//! INSERT INTO ftpd_perm_overrides (name, directory, perm, recursive)
//!     VALUES ('bob', 'incoming', 'elrw', 0);
//! UPDATE ftpd_users SET enabled = 0 WHERE name = 'bob';  -- FALSE on PostgreSQL
//! DELETE FROM ftpd_users WHERE name = 'bob';             -- sqlite3: PRAGMA foreign_keys = ON first
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{PermSet, UserLimits};
use crate::error::AuthorizerError;

mod authorizer;
mod db;
mod password;
#[cfg(feature = "postgres")]
mod pg;
mod pool;
mod schema;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use authorizer::SqlAuthorizer;
pub use db::UserDb;
#[cfg(feature = "cli")]
pub(crate) use password::is_known_hash;
pub use password::{hash_password, verify_password_hash};
pub use schema::SCHEMA_VERSION;

/// A user as stored in the database (table `ftpd_users`, with its rows of
/// `ftpd_perm_overrides`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserRecord {
    /// Login name (case-sensitive). `anonymous` logs in with any password.
    pub name: String,
    /// argon2id PHC string (`$argon2id$v=19$…`) or a crypt(3) hash (`$y$`, `$6$`, `$5$`,
    /// `$2b$`); empty: no password can match.
    pub password_hash: String,
    /// Home directory: absolute, or relative to the server's base directory (`-d`).
    pub home: PathBuf,
    /// Permission letters at home (`elradfmwMT`).
    pub perm: PermSet,
    /// Other permissions below the home (pyftpdlib `override_perm`).
    pub overrides: Vec<PermOverride>,
    /// Text of the 230 reply.
    pub msg_login: String,
    /// Text of the 221 reply.
    pub msg_quit: String,
    /// Transfer-rate limits (`None`: the server's own).
    pub limits: UserLimits,
    /// A disabled user cannot log in; the row stays.
    pub enabled: bool,
}

impl UserRecord {
    /// A user with pyftpdlib's defaults: read-only (`elr`), "Login successful." /
    /// "Goodbye.", the server's limits, enabled, no password yet.
    pub fn new(name: &str, home: impl Into<PathBuf>) -> UserRecord {
        UserRecord {
            name: name.to_owned(),
            password_hash: String::new(),
            home: home.into(),
            perm: PermSet::parse(PermSet::READ).unwrap_or_default(),
            overrides: Vec::new(),
            msg_login: "Login successful.".into(),
            msg_quit: "Goodbye.".into(),
            limits: UserLimits::default(),
            enabled: true,
        }
    }
}

/// Permissions of one directory below a user's home (pyftpdlib `override_perm`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermOverride {
    /// The directory: relative to the home, or absolute inside it.
    pub directory: PathBuf,
    /// Its permission letters.
    pub perm: PermSet,
    /// Whether they also apply to every directory below it.
    pub recursive: bool,
}

/// Settings of the pool and of the error reports.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SqlOptions {
    /// Most connections open at once (and so most queries running at once). Default: 8.
    pub pool_size: usize,
    /// How long a login waits for a free connection before `421`. Default: 30 s.
    pub acquire_timeout: Duration,
    /// PostgreSQL: how long opening a connection may take (unless the URL sets
    /// `connect_timeout`). Default: 5 s.
    pub connect_timeout: Duration,
    /// SQLite: how long a query waits for a lock held by a writer. Default: 5 s.
    pub busy_timeout: Duration,
    /// PostgreSQL: the longest a query may run (`statement_timeout`, unless the URL's
    /// `options` set one) and the longest sent data may stay unacknowledged before the
    /// connection is dropped (`tcp_user_timeout`, unless the URL sets it). Default: 10 s.
    pub query_timeout: Duration,
    /// At most one "database unavailable" error is logged per interval. Default: 60 s.
    pub error_log_interval: Duration,
    /// What relative homes are relative to. Default: the current directory at open.
    pub base_dir: Option<PathBuf>,
}

impl Default for SqlOptions {
    fn default() -> Self {
        SqlOptions {
            pool_size: 8,
            acquire_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
            query_timeout: Duration::from_secs(10),
            error_log_interval: Duration::from_secs(60),
            base_dir: None,
        }
    }
}

/// A database error: the message, and whether the connection is broken (to be replaced)
/// or the database unreachable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError {
    kind: Kind,
    msg: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The connection is unusable (closed, reset, refused).
    Connection,
    /// The database could not answer in time (no pool slot, a lock held too long).
    Unavailable,
    /// The statement failed (constraint, schema).
    Query,
}

impl DbError {
    pub(crate) fn connection(msg: impl Into<String>) -> Self {
        DbError {
            kind: Kind::Connection,
            msg: msg.into(),
        }
    }
    pub(crate) fn unavailable(msg: impl Into<String>) -> Self {
        DbError {
            kind: Kind::Unavailable,
            msg: msg.into(),
        }
    }
    pub(crate) fn query(msg: impl Into<String>) -> Self {
        DbError {
            kind: Kind::Query,
            msg: msg.into(),
        }
    }

    /// True when the connection broke or could not be opened.
    pub fn is_connection(&self) -> bool {
        self.kind == Kind::Connection
    }

    /// True when the database is unreachable or too busy (a later try may succeed).
    pub fn is_transient(&self) -> bool {
        self.kind != Kind::Query
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for DbError {}

impl From<DbError> for AuthorizerError {
    fn from(e: DbError) -> Self {
        AuthorizerError(format!("user database: {e}"))
    }
}

/// A statement parameter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Text(String),
    Int(Option<i64>),
    Bool(bool),
}

/// One row of the users ⟕ overrides query (`db::SELECT_USERS`), in its column order.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawRow {
    pub name: String,
    pub password: String,
    pub home: String,
    pub perm: String,
    pub msg_login: String,
    pub msg_quit: String,
    /// read_limit, write_limit, user_read_limit, user_write_limit.
    pub limits: [Option<i64>; 4],
    pub enabled: bool,
    /// The override of this row, if any: directory, perm, recursive.
    pub over: Option<(String, String, bool)>,
}

/// One open connection. SQL is written with PostgreSQL's `$1` placeholders; the SQLite
/// backend rewrites them to `?1`. Parameters are always bound, never spliced into text.
pub(crate) trait Conn: Send {
    /// Runs a query returning rows shaped as [`RawRow`].
    fn query_users(&mut self, sql: &str, params: &[Value]) -> Result<Vec<RawRow>, DbError>;
    /// Runs a statement; the number of rows it changed.
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError>;
    /// Brings the schema to [`SCHEMA_VERSION`]; the version found before.
    fn migrate(&mut self) -> Result<i64, DbError>;
}

/// Where the users are, from a `--users-db` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// `sqlite:PATH` (or `sqlite://PATH`).
    Sqlite(PathBuf),
    /// `postgres://…` or `postgresql://…` (a libpq-style URL).
    Postgres(String),
}

impl Target {
    pub(crate) fn parse(url: &str) -> Result<Target, AuthorizerError> {
        if let Some(path) = url.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(AuthorizerError("sqlite: needs a file name".into()));
            }
            return Ok(Target::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Target::Postgres(url.to_owned()));
        }
        Err(AuthorizerError(format!(
            "unknown user database {:?}: use sqlite:PATH or postgres://USER@HOST/DB",
            redact(url)
        )))
    }
}

/// A URL for messages: a password in it replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..auth_end].rfind('@') {
        Some(at) => match rest[..at].split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***{}", &rest[at..]),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Opens the connector for `target`. `create`: a missing SQLite file is created (the
/// `users` commands); the server refuses to start on a missing file instead, so a typo in
/// the path is not an empty user list.
pub(crate) fn connector(
    target: &Target,
    opts: &SqlOptions,
    create: bool,
) -> Result<Box<dyn pool::Connect>, AuthorizerError> {
    match target {
        #[cfg(feature = "sqlite")]
        Target::Sqlite(path) => return Ok(Box::new(sqlite::Connector::new(path, opts, create)?)),
        #[cfg(feature = "postgres")]
        Target::Postgres(url) => return Ok(Box::new(pg::Connector::new(url, opts)?)),
        #[allow(unreachable_patterns)]
        _ => {}
    }
    let _ = (opts, create);
    let (name, feature) = match target {
        Target::Sqlite(_) => ("SQLite", "sqlite"),
        Target::Postgres(_) => ("PostgreSQL", "postgres"),
    };
    Err(AuthorizerError(format!(
        "this ftpdlib was built without {name} support (cargo feature `{feature}`)"
    )))
}

/// `dir` resolved against `base` when relative.
pub(crate) fn resolve(base: &Path, dir: &Path) -> PathBuf {
    if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        base.join(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        assert_eq!(
            Target::parse("sqlite:users.db").unwrap(),
            Target::Sqlite("users.db".into())
        );
        assert_eq!(
            Target::parse("sqlite:///var/lib/ftp/users.db").unwrap(),
            Target::Sqlite("/var/lib/ftp/users.db".into())
        );
        assert!(matches!(
            Target::parse("postgresql://ftp@db/ftp").unwrap(),
            Target::Postgres(_)
        ));
        assert!(Target::parse("sqlite:").is_err());
        assert!(Target::parse("users.db").is_err());
        let e = Target::parse("mysql://u:secret@h/db").unwrap_err();
        assert!(!e.0.contains("secret"), "{e}");
        assert_eq!(
            redact("postgres://ftp:pw@db:5432/ftp?x=1"),
            "postgres://ftp:***@db:5432/ftp?x=1"
        );
        assert_eq!(redact("postgres://ftp@db/ftp"), "postgres://ftp@db/ftp");
    }
}
