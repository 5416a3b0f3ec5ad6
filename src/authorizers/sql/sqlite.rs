//! The SQLite backend (`sqlite:PATH`): rusqlite on SQLite compiled into the binary. Readers
//! share the file; a writer (`ftpdlib users …`, an administrator's `sqlite3`) locks it
//! briefly, and a query waits up to `busy_timeout` for the lock before the login gets 421.
//! The journal stays in SQLite's default mode, so the database remains one file.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::ToSqlOutput;
use rusqlite::{Connection, ErrorCode, OpenFlags, ToSql, TransactionBehavior};

use super::pool::Connect;
use super::schema::{
    migrate_from, pending, SchemaChecked, CURRENT_VERSION_SQL, RECORD_SQL, VERSION_TABLE_SQLITE,
};
use super::{Conn, DbError, RawRow, SqlOptions, Value, SCHEMA_VERSION};
use crate::error::AuthorizerError;

/// Opens connections to one SQLite file.
pub(crate) struct Connector {
    path: PathBuf,
    busy_timeout: Duration,
    /// Set once a connection found the schema up to date (no check per connection then).
    schema_ok: SchemaChecked,
}

impl Connector {
    /// A connector for `path` (made absolute now, so a later chdir changes nothing).
    /// `create`: a missing file is created, readable by its owner only (it holds password
    /// hashes); otherwise a missing file is an error.
    pub(crate) fn new(
        path: &Path,
        opts: &SqlOptions,
        create: bool,
    ) -> Result<Connector, AuthorizerError> {
        let path = std::path::absolute(path)
            .map_err(|e| AuthorizerError(format!("{}: {e}", path.display())))?;
        if !path.exists() {
            if !create {
                return Err(AuthorizerError(format!(
                    "no user database at {} (create it with `ftpdlib users add NAME \
                     --users-db sqlite:{}`)",
                    path.display(),
                    path.display()
                )));
            }
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| AuthorizerError(format!("{}: {e}", path.display())))?;
        }
        Ok(Connector {
            path,
            busy_timeout: opts.busy_timeout,
            schema_ok: SchemaChecked::default(),
        })
    }
}

impl Connect for Connector {
    fn connect(&self) -> Result<Box<dyn Conn>, DbError> {
        // No CREATE flag: a file removed under a running server is an error, not a new,
        // empty user list.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags)
            .map_err(|e| DbError::connection(format!("{}: {e}", self.path.display())))?;
        conn.busy_timeout(self.busy_timeout).map_err(classify)?;
        conn.execute_batch("PRAGMA foreign_keys = ON")
            .map_err(classify)?;
        let mut c = SqliteConn { conn };
        self.schema_ok.ensure(&mut c)?;
        Ok(Box::new(c))
    }
}

struct SqliteConn {
    conn: Connection,
}

/// `$1` → `?1`: the statements are written for PostgreSQL.
fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        match self {
            Value::Text(s) => s.to_sql(),
            Value::Int(i) => i.to_sql(),
            Value::Bool(b) => b.to_sql(),
        }
    }
}

/// Busy and locked: the database is there but held by a writer (a later try may work);
/// unopenable files: the connection; everything else: the statement.
fn classify(e: rusqlite::Error) -> DbError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            DbError::unavailable(format!("SQLite: {e}"))
        }
        Some(
            ErrorCode::CannotOpen
            | ErrorCode::NotADatabase
            | ErrorCode::SystemIoFailure
            | ErrorCode::DatabaseCorrupt
            | ErrorCode::PermissionDenied
            | ErrorCode::ReadOnly,
        ) => DbError::connection(format!("SQLite: {e}")),
        _ => DbError::query(format!("SQLite: {e}")),
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    let dir: Option<String> = r.get(11)?;
    let over = match dir {
        Some(d) => Some((d, r.get(12)?, r.get(13)?)),
        None => None,
    };
    Ok(RawRow {
        name: r.get(0)?,
        password: r.get(1)?,
        home: r.get(2)?,
        perm: r.get(3)?,
        msg_login: r.get(4)?,
        msg_quit: r.get(5)?,
        limits: [r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?],
        enabled: r.get(10)?,
        over,
    })
}

impl Conn for SqliteConn {
    fn query_users(&mut self, sql: &str, params: &[Value]) -> Result<Vec<RawRow>, DbError> {
        let mut stmt = self.conn.prepare(&placeholders(sql)).map_err(classify)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(params), row)
            .map_err(classify)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(classify)
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        self.conn
            .execute(&placeholders(sql), rusqlite::params_from_iter(params))
            .map(|n| n as u64)
            .map_err(classify)
    }

    fn migrate(&mut self) -> Result<i64, DbError> {
        // A read first: an up-to-date database is not locked for writing.
        if let Ok(v) = self
            .conn
            .query_row(CURRENT_VERSION_SQL, [], |r| r.get::<_, i64>(0))
        {
            if pending(v)?.next().is_none() {
                return Ok(v);
            }
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(classify)?;
        tx.execute_batch(VERSION_TABLE_SQLITE).map_err(classify)?;
        let found: i64 = tx
            .query_row(CURRENT_VERSION_SQL, [], |r| r.get(0))
            .map_err(classify)?;
        migrate_from(found, |m| {
            tx.execute_batch(m.sqlite).map_err(classify)?;
            tx.execute(
                &placeholders(RECORD_SQL),
                rusqlite::params![m.version, m.description],
            )
            .map_err(classify)?;
            Ok(())
        })?;
        tx.commit().map_err(classify)?;
        debug_assert!(found <= SCHEMA_VERSION);
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_rewritten() {
        assert_eq!(
            placeholders("UPDATE t SET a = $2 WHERE n = $1 AND x = '$'"),
            "UPDATE t SET a = ?2 WHERE n = ?1 AND x = '$'"
        );
    }
}
