//! [`UserDb`]: reading and managing the users table through the pool, with bound
//! parameters only (the statements are constants; names, hashes and paths travel as
//! parameters, so no value can change a statement's meaning).

use std::path::Path;

use super::pool::Pool;
use super::{connector, DbError, PermOverride, RawRow, SqlOptions, Target, UserRecord, Value};
use crate::authorizers::{PermSet, UserLimits};
use crate::error::AuthorizerError;

/// Every user column and its override rows: one round trip, one consistent snapshot.
const SELECT_USERS: &str = "SELECT u.name, u.password, u.home, u.perm, u.msg_login, \
     u.msg_quit, u.read_limit, u.write_limit, u.user_read_limit, u.user_write_limit, \
     u.enabled, o.directory, o.perm, o.recursive \
     FROM ftpd_users u LEFT JOIN ftpd_perm_overrides o ON o.name = u.name";

/// The users table of a database: what `ftpdlib users` manages, what
/// [`SqlAuthorizer`](super::SqlAuthorizer) reads.
pub struct UserDb {
    pool: Pool,
    url: String,
}

impl std::fmt::Debug for UserDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserDb").field("url", &self.url).finish()
    }
}

impl UserDb {
    /// Opens (creating a missing SQLite file) the database at `url` (`sqlite:PATH`,
    /// `postgres://…`) and brings its schema up to date.
    ///
    /// # Errors
    /// A bad URL, a backend this build lacks, or an unreachable database.
    pub fn open(url: &str) -> Result<UserDb, AuthorizerError> {
        let db = Self::open_with(url, &SqlOptions::default(), true)?;
        db.schema_version()?;
        Ok(db)
    }

    /// Opens the database without touching it (connections open on first use). `create`:
    /// a missing SQLite file is created rather than refused.
    ///
    /// # Errors
    /// A bad URL, a backend this build lacks, a missing SQLite file (without `create`).
    pub fn open_with(
        url: &str,
        opts: &SqlOptions,
        create: bool,
    ) -> Result<UserDb, AuthorizerError> {
        let target = Target::parse(url)?;
        let connector = connector(&target, opts, create)?;
        Ok(UserDb {
            pool: Pool::new(connector, opts.pool_size, opts.acquire_timeout),
            url: super::redact(url),
        })
    }

    /// Closes the connections not in use (they reopen on demand).
    pub fn close_idle(&self) {
        self.pool.close_idle();
    }

    /// The URL (its password hidden).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The schema version, after bringing it up to date.
    ///
    /// # Errors
    /// The database is unreachable or newer than this ftpdlib.
    pub fn schema_version(&self) -> Result<i64, DbError> {
        self.pool
            .run(|c| c.migrate().map(|_| super::SCHEMA_VERSION))
    }

    /// One user, or `None`.
    ///
    /// # Errors
    /// The database failed, or the row is not valid (a bad permission letter).
    pub fn get(&self, name: &str) -> Result<Option<UserRecord>, DbError> {
        let sql = format!("{SELECT_USERS} WHERE u.name = $1 ORDER BY o.directory");
        let rows = self
            .pool
            .run(|c| c.query_users(&sql, &[Value::Text(name.to_owned())]))?;
        Ok(fold(rows)?.pop())
    }

    /// Every user, by name.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn list(&self) -> Result<Vec<UserRecord>, DbError> {
        let sql = format!("{SELECT_USERS} ORDER BY u.name, o.directory");
        fold(self.pool.run(|c| c.query_users(&sql, &[]))?)
    }

    /// Adds a user with its overrides.
    ///
    /// # Errors
    /// The user exists, or the database refused the row.
    pub fn add(&self, u: &UserRecord) -> Result<(), DbError> {
        if self.get(&u.name)?.is_some() {
            return Err(DbError::query(format!("user {:?} already exists", u.name)));
        }
        let [rl, wl, url, uwl] = limits_params(&u.limits);
        self.exec(
            "INSERT INTO ftpd_users (name, password, home, perm, msg_login, msg_quit, \
             read_limit, write_limit, user_read_limit, user_write_limit, enabled) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            &[
                text(&u.name),
                text(&u.password_hash),
                path(&u.home),
                text(&u.perm.to_string()),
                text(&u.msg_login),
                text(&u.msg_quit),
                rl,
                wl,
                url,
                uwl,
                Value::Bool(u.enabled),
            ],
        )?;
        for o in &u.overrides {
            self.override_perm(&u.name, &o.directory, o.perm, o.recursive)?;
        }
        Ok(())
    }

    /// Removes a user and its overrides; false if there was none.
    ///
    /// # Errors
    /// The database failed.
    pub fn remove(&self, name: &str) -> Result<bool, DbError> {
        // Explicit, so a SQLite connection without `PRAGMA foreign_keys` leaves no orphans.
        self.exec(
            "DELETE FROM ftpd_perm_overrides WHERE name = $1",
            &[text(name)],
        )?;
        Ok(self.exec("DELETE FROM ftpd_users WHERE name = $1", &[text(name)])? > 0)
    }

    /// Replaces a user's password hash (from [`hash_password`](super::hash_password) or a
    /// crypt(3) hash); false if there is no such user.
    ///
    /// # Errors
    /// The database failed.
    pub fn set_password_hash(&self, name: &str, hash: &str) -> Result<bool, DbError> {
        self.set_column(name, "password", text(hash))
    }

    /// Sets a user's permissions at home; false if there is no such user.
    ///
    /// # Errors
    /// The database failed.
    pub fn set_perm(&self, name: &str, perm: PermSet) -> Result<bool, DbError> {
        self.set_column(name, "perm", text(&perm.to_string()))
    }

    /// Sets a user's home; false if there is no such user.
    ///
    /// # Errors
    /// The database failed.
    pub fn set_home(&self, name: &str, home: &Path) -> Result<bool, DbError> {
        self.set_column(name, "home", path(home))
    }

    /// Sets a user's login and/or quit message; false if there is no such user.
    ///
    /// # Errors
    /// The database failed.
    pub fn set_messages(
        &self,
        name: &str,
        msg_login: Option<&str>,
        msg_quit: Option<&str>,
    ) -> Result<bool, DbError> {
        let mut found = self.get(name)?.is_some();
        if let Some(m) = msg_login {
            found &= self.set_column(name, "msg_login", text(m))?;
        }
        if let Some(m) = msg_quit {
            found &= self.set_column(name, "msg_quit", text(m))?;
        }
        Ok(found)
    }

    /// Sets a user's rate limits (`None`: the server's); false if there is no such user.
    ///
    /// # Errors
    /// The database failed.
    pub fn set_limits(&self, name: &str, limits: &UserLimits) -> Result<bool, DbError> {
        let [rl, wl, url, uwl] = limits_params(limits);
        Ok(self.exec(
            "UPDATE ftpd_users SET read_limit = $2, write_limit = $3, user_read_limit = $4, \
             user_write_limit = $5 WHERE name = $1",
            &[text(name), rl, wl, url, uwl],
        )? > 0)
    }

    /// Enables or disables a user; false if there is no such user.
    ///
    /// # Errors
    /// The database failed.
    pub fn set_enabled(&self, name: &str, enabled: bool) -> Result<bool, DbError> {
        self.set_column(name, "enabled", Value::Bool(enabled))
    }

    /// Gives a user other permissions in `directory` (relative to the home, or absolute
    /// inside it), replacing an earlier override of it; false if there is no such user.
    ///
    /// # Errors
    /// The database failed.
    pub fn override_perm(
        &self,
        name: &str,
        directory: &Path,
        perm: PermSet,
        recursive: bool,
    ) -> Result<bool, DbError> {
        if self.get(name)?.is_none() {
            return Ok(false);
        }
        self.exec(
            "INSERT INTO ftpd_perm_overrides (name, directory, perm, recursive) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (name, directory) \
             DO UPDATE SET perm = excluded.perm, recursive = excluded.recursive",
            &[
                text(name),
                path(directory),
                text(&perm.to_string()),
                Value::Bool(recursive),
            ],
        )?;
        Ok(true)
    }

    /// Removes an override; false if there was none.
    ///
    /// # Errors
    /// The database failed.
    pub fn remove_override(&self, name: &str, directory: &Path) -> Result<bool, DbError> {
        Ok(self.exec(
            "DELETE FROM ftpd_perm_overrides WHERE name = $1 AND directory = $2",
            &[text(name), path(directory)],
        )? > 0)
    }

    /// `column` comes from the fixed names above, never from input.
    fn set_column(&self, name: &str, column: &str, v: Value) -> Result<bool, DbError> {
        let sql = format!("UPDATE ftpd_users SET {column} = $2 WHERE name = $1");
        Ok(self.exec(&sql, &[text(name), v])? > 0)
    }

    fn exec(&self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        self.pool.run(|c| c.execute(sql, params))
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn path(p: &Path) -> Value {
    Value::Text(p.to_string_lossy().into_owned())
}

fn limits_params(l: &UserLimits) -> [Value; 4] {
    let v = |x: Option<u64>| Value::Int(x.map(|n| i64::try_from(n).unwrap_or(i64::MAX)));
    [
        v(l.read_limit),
        v(l.write_limit),
        v(l.user_read_limit),
        v(l.user_write_limit),
    ]
}

/// Rows of the users ⟕ overrides query (ordered by name) into one record per user.
fn fold(rows: Vec<RawRow>) -> Result<Vec<UserRecord>, DbError> {
    let mut users: Vec<UserRecord> = Vec::new();
    for r in rows {
        let bad = |what: &str, v: &str| {
            DbError::query(format!("user {:?}: invalid {what} {v:?}", r.name))
        };
        if users.last().map(|u| u.name.as_str()) != Some(r.name.as_str()) {
            let perm = PermSet::parse(&r.perm).map_err(|_| bad("perm", &r.perm))?;
            let lim = |i: usize| r.limits[i].map(|n| n.max(0) as u64);
            users.push(UserRecord {
                name: r.name.clone(),
                password_hash: r.password.clone(),
                home: r.home.clone().into(),
                perm,
                overrides: Vec::new(),
                msg_login: r.msg_login.clone(),
                msg_quit: r.msg_quit.clone(),
                limits: UserLimits {
                    read_limit: lim(0),
                    write_limit: lim(1),
                    user_read_limit: lim(2),
                    user_write_limit: lim(3),
                },
                enabled: r.enabled,
            });
        }
        if let (Some((dir, perm, recursive)), Some(u)) = (&r.over, users.last_mut()) {
            u.overrides.push(PermOverride {
                directory: dir.into(),
                perm: PermSet::parse(perm).map_err(|_| bad("override perm", perm))?,
                recursive: *recursive,
            });
        }
    }
    Ok(users)
}
