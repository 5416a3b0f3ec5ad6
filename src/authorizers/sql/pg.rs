//! The PostgreSQL backend (`postgres://…`, cargo feature `postgres`): the blocking
//! `postgres` client, one per pooled connection, statements prepared once per connection.
//! Its tokio runtime is private to each call (current-thread), so no thread outlives it.
//! Connections are plain TCP or a Unix socket (`?host=/run/postgresql`): no TLS to the
//! database server.

use std::collections::HashMap;
use std::str::FromStr;

use ::postgres::error::SqlState;
use ::postgres::types::ToSql;
use ::postgres::{Client, Config, NoTls, Statement};

use super::pool::Connect;
use super::schema::{
    migrate_from, pending, SchemaChecked, CURRENT_VERSION_SQL, RECORD_SQL, VERSION_TABLE_POSTGRES,
};
use super::{redact, Conn, DbError, RawRow, SqlOptions, Value};
use crate::error::AuthorizerError;

/// Taken by every ftpdlib migrating a database, so servers starting together migrate once.
const MIGRATION_LOCK: i64 = 0x0066_7470_646c_6962; // "ftpdlib" in ASCII

/// Opens connections to one PostgreSQL database.
pub(crate) struct Connector {
    config: Config,
    url: String,
    schema_ok: SchemaChecked,
}

impl Connector {
    /// A connector for a libpq-style URL; nothing is opened yet.
    pub(crate) fn new(url: &str, opts: &SqlOptions) -> Result<Connector, AuthorizerError> {
        let mut config =
            Config::from_str(url).map_err(|e| AuthorizerError(format!("{}: {e}", redact(url))))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(opts.connect_timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("ftpdlib");
        }
        // A query stuck behind a lock, or a server gone silent, ends in 421 rather than
        // holding a pooled connection (and a login) forever.
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(opts.query_timeout);
        }
        let options = config.get_options().unwrap_or("").to_owned();
        if !options.contains("statement_timeout") {
            let ms = opts.query_timeout.as_millis().max(1);
            config.options(format!("{options} -c statement_timeout={ms}").trim());
        }
        Ok(Connector {
            config,
            url: redact(url),
            schema_ok: SchemaChecked::default(),
        })
    }
}

impl Connect for Connector {
    fn connect(&self) -> Result<Box<dyn Conn>, DbError> {
        let client = self
            .config
            .connect(NoTls)
            .map_err(|e| DbError::connection(format!("{}: {}", self.url, describe(&e))))?;
        let mut c = PgConn {
            client,
            statements: HashMap::new(),
        };
        self.schema_ok.ensure(&mut c)?;
        Ok(Box::new(c))
    }
}

struct PgConn {
    client: Client,
    statements: HashMap<String, Statement>,
}

/// The error with its cause (the client's own text is often just "error connecting").
fn describe(e: &::postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(s) => format!("{e}: {s}"),
        None => e.to_string(),
    }
}

/// A closed connection, a server shutting down or not accepting yet, an I/O error: the
/// connection is replaced. A statement the server refused: the statement.
fn classify(e: ::postgres::Error) -> DbError {
    let msg = format!("PostgreSQL: {}", describe(&e));
    if e.is_closed() {
        return DbError::connection(msg);
    }
    match e.code() {
        Some(c)
            if *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
                || c.code().starts_with("08") =>
        {
            DbError::connection(msg)
        }
        Some(c) if *c == SqlState::QUERY_CANCELED || *c == SqlState::TOO_MANY_CONNECTIONS => {
            DbError::unavailable(msg)
        }
        Some(_) => DbError::query(msg),
        None => DbError::connection(msg),
    }
}

fn boxed(params: &[Value]) -> Vec<Box<dyn ToSql + Sync>> {
    params
        .iter()
        .map(|v| -> Box<dyn ToSql + Sync> {
            match v {
                Value::Text(s) => Box::new(s.clone()),
                Value::Int(i) => Box::new(*i),
                Value::Bool(b) => Box::new(*b),
            }
        })
        .collect()
}

impl PgConn {
    fn statement(&mut self, sql: &str) -> Result<Statement, DbError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).map_err(classify)?;
        self.statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }
}

impl Conn for PgConn {
    fn query_users(&mut self, sql: &str, params: &[Value]) -> Result<Vec<RawRow>, DbError> {
        let stmt = self.statement(sql)?;
        let owned = boxed(params);
        let refs: Vec<&(dyn ToSql + Sync)> = owned.iter().map(|b| b.as_ref()).collect();
        let rows = self.client.query(&stmt, &refs).map_err(classify)?;
        rows.iter().map(row).collect()
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        let stmt = self.statement(sql)?;
        let owned = boxed(params);
        let refs: Vec<&(dyn ToSql + Sync)> = owned.iter().map(|b| b.as_ref()).collect();
        self.client.execute(&stmt, &refs).map_err(classify)
    }

    fn migrate(&mut self) -> Result<i64, DbError> {
        if let Ok(r) = self.client.query_one(CURRENT_VERSION_SQL, &[]) {
            let v = i64::from(r.get::<_, i32>(0));
            if pending(v)?.next().is_none() {
                return Ok(v);
            }
        }
        let mut tx = self.client.transaction().map_err(classify)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(classify)?;
        tx.batch_execute(VERSION_TABLE_POSTGRES).map_err(classify)?;
        let found = i64::from(
            tx.query_one(CURRENT_VERSION_SQL, &[])
                .map_err(classify)?
                .get::<_, i32>(0),
        );
        migrate_from(found, |m| {
            tx.batch_execute(m.postgres).map_err(classify)?;
            let version = i32::try_from(m.version).unwrap_or(i32::MAX);
            tx.execute(RECORD_SQL, &[&version, &m.description])
                .map_err(classify)?;
            Ok(())
        })?;
        tx.commit().map_err(classify)?;
        Ok(found)
    }
}

fn row(r: &::postgres::Row) -> Result<RawRow, DbError> {
    let get = |e: ::postgres::Error| DbError::query(format!("PostgreSQL row: {e}"));
    let dir: Option<String> = r.try_get(11).map_err(get)?;
    let over = match dir {
        Some(d) => Some((d, r.try_get(12).map_err(get)?, r.try_get(13).map_err(get)?)),
        None => None,
    };
    Ok(RawRow {
        name: r.try_get(0).map_err(get)?,
        password: r.try_get(1).map_err(get)?,
        home: r.try_get(2).map_err(get)?,
        perm: r.try_get(3).map_err(get)?,
        msg_login: r.try_get(4).map_err(get)?,
        msg_quit: r.try_get(5).map_err(get)?,
        limits: [
            r.try_get(6).map_err(get)?,
            r.try_get(7).map_err(get)?,
            r.try_get(8).map_err(get)?,
            r.try_get(9).map_err(get)?,
        ],
        enabled: r.try_get(10).map_err(get)?,
        over,
    })
}
