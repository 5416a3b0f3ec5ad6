//! The schema of the user database and its versioned migrations. Each migration is a
//! script per backend (schema/NNNN_*.sql, readable by an administrator); the table
//! `ftpd_schema_version` records which ones a database has, so a newer ftpdlib upgrades an
//! older database in place (in one transaction, under a lock, so servers starting together
//! migrate once) and an older ftpdlib refuses a newer database instead of misreading it.

use std::sync::atomic::{AtomicBool, Ordering};

use super::{Conn, DbError};

/// The schema version this ftpdlib writes and reads.
pub const SCHEMA_VERSION: i64 = 1;

/// One step of the schema's history.
pub(crate) struct Migration {
    /// Its number: 1, 2, … with no gaps.
    pub version: i64,
    /// What it does, recorded next to the number.
    pub description: &'static str,
    /// Its statements for SQLite.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub sqlite: &'static str,
    /// Its statements for PostgreSQL.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub postgres: &'static str,
}

/// The bookkeeping table (created if missing before any migration runs).
#[cfg(feature = "sqlite")]
pub(crate) const VERSION_TABLE_SQLITE: &str = include_str!("schema/0000_schema_version.sqlite.sql");
/// The bookkeeping table, PostgreSQL.
#[cfg(feature = "postgres")]
pub(crate) const VERSION_TABLE_POSTGRES: &str =
    include_str!("schema/0000_schema_version.postgres.sql");

/// Every migration, in order.
pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "users and per-directory permissions",
    sqlite: include_str!("schema/0001_users.sqlite.sql"),
    postgres: include_str!("schema/0001_users.postgres.sql"),
}];

/// The highest version recorded.
pub(crate) const CURRENT_VERSION_SQL: &str =
    "SELECT COALESCE(MAX(version), 0) FROM ftpd_schema_version";

/// Records an applied migration.
pub(crate) const RECORD_SQL: &str =
    "INSERT INTO ftpd_schema_version (version, description) VALUES ($1, $2)";

/// The migrations a database at version `found` still needs.
///
/// # Errors
/// The database is newer than this ftpdlib.
pub(crate) fn pending(found: i64) -> Result<impl Iterator<Item = &'static Migration>, DbError> {
    if found > SCHEMA_VERSION {
        return Err(DbError::query(format!(
            "the user database has schema version {found}, newer than this ftpdlib \
             knows ({SCHEMA_VERSION}): upgrade ftpdlib"
        )));
    }
    Ok(MIGRATIONS.iter().filter(move |m| m.version > found))
}

/// Runs, through `apply` (its statements and its record, in the caller's transaction),
/// every migration a database at version `found` still needs, logging each.
///
/// # Errors
/// The database is newer than this ftpdlib, or `apply`'s.
pub(crate) fn migrate_from(
    found: i64,
    mut apply: impl FnMut(&Migration) -> Result<(), DbError>,
) -> Result<(), DbError> {
    for m in pending(found)? {
        apply(m)?;
        log::info!(
            "user database: schema migrated to version {} ({})",
            m.version,
            m.description
        );
    }
    Ok(())
}

/// Whether a connector has found its database's schema up to date: migrated on its first
/// connection, not asked again on the next ones.
#[derive(Default)]
pub(crate) struct SchemaChecked(AtomicBool);

impl SchemaChecked {
    /// Migrates the database through `conn` unless that was done already.
    pub(crate) fn ensure(&self, conn: &mut dyn Conn) -> Result<(), DbError> {
        if !self.0.load(Ordering::Relaxed) {
            conn.migrate()?;
            self.0.store(true, Ordering::Relaxed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_without_gaps() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1);
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.version), Some(SCHEMA_VERSION));
        assert_eq!(pending(0).unwrap().count(), MIGRATIONS.len());
        assert_eq!(pending(SCHEMA_VERSION).unwrap().count(), 0);
        assert!(pending(SCHEMA_VERSION + 1).is_err());
    }
}
