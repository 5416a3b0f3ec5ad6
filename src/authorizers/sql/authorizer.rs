//! [`SqlAuthorizer`]: logs in the users of a [`UserDb`]. The database is asked once per
//! login (one query, on a pooled connection held only for the query); the row is then
//! cached for as long as the user has a session, so permission checks, messages and limits
//! never touch the database, and each login refreshes it.
//!
//! A database that cannot answer (down, unreachable, locked too long, no free connection)
//! gives `421 Service not available, try later.` instead of 530, logs one error per
//! interval, and recovers by itself: the pool replaces broken connections on the next
//! login. Sessions already logged in keep working meanwhile.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::password::Verifier;
use super::{resolve, DbError, SqlOptions, UserDb, UserRecord};
use crate::authorizers::{
    has_perm_with, is_subpath, Authorizer, Overrides, Perm, PermSet, UserLimits,
};
use crate::error::{AuthenticationFailed, AuthorizerError};
use crate::process::ProcessKind;

const MSG_AUTH_FAILED: &str = "Authentication failed.";
const MSG_ANON_NOT_ALLOWED: &str = "Anonymous access not allowed.";

/// Users from a SQLite or PostgreSQL database (see the module docs of
/// [`authorizers::sql`](super)). `anonymous`, when it is a user, logs in with any password
/// (as pyftpdlib's `add_anonymous`); every other user needs the password whose hash is
/// stored. Relative homes are relative to [`SqlOptions::base_dir`].
///
/// ```no_run
/// use std::sync::Arc;
/// use ftpdlib::authorizers::SqlAuthorizer;
/// use ftpdlib::handlers::FtpHandler;
/// let auth = SqlAuthorizer::open("sqlite:/var/lib/ftpdlib/users.db").unwrap();
/// let handler = FtpHandler::new(Arc::new(auth));
/// ```
pub struct SqlAuthorizer {
    db: UserDb,
    base_dir: PathBuf,
    verifier: Verifier,
    cache: RwLock<HashMap<String, Cached>>,
    outage: Outage,
}

impl std::fmt::Debug for SqlAuthorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlAuthorizer")
            .field("db", &self.db)
            .field("base_dir", &self.base_dir)
            .finish_non_exhaustive()
    }
}

/// A logged-in user's row, resolved (real home, real override directories).
#[derive(Debug)]
struct Account {
    home: PathBuf,
    perm: PermSet,
    overrides: Overrides,
    msg_login: String,
    msg_quit: String,
    limits: UserLimits,
}

#[derive(Debug)]
struct Cached {
    account: Arc<Account>,
    /// Logins validated and not yet ended (terminate_impersonation).
    sessions: usize,
}

impl SqlAuthorizer {
    /// Opens the users at `url` (`sqlite:PATH`, `postgres://…`) with default options.
    ///
    /// # Errors
    /// As [`open_with`](Self::open_with).
    pub fn open(url: &str) -> Result<SqlAuthorizer, AuthorizerError> {
        Self::open_with(url, SqlOptions::default())
    }

    /// Opens the users at `url`. The database is tried once now: a schema it cannot use or
    /// a missing SQLite file is an error; an unreachable database is only logged (logins
    /// get 421 until it answers).
    ///
    /// # Errors
    /// A bad URL, a backend this build lacks, a missing SQLite file, a schema newer than
    /// this ftpdlib, or no random source for the dummy hash.
    pub fn open_with(url: &str, opts: SqlOptions) -> Result<SqlAuthorizer, AuthorizerError> {
        let db = UserDb::open_with(url, &opts, false)?;
        match db.schema_version() {
            Ok(_) => {}
            Err(e) if e.is_transient() => log::error!(
                "user database {} unavailable: {e}; logins get 421 until it answers",
                db.url()
            ),
            Err(e) => return Err(e.into()),
        }
        // Forked children must not share the parent's connection: none stays open.
        db.close_idle();
        let base_dir = match opts.base_dir {
            Some(d) => d,
            None => std::env::current_dir()
                .map_err(|e| AuthorizerError(format!("current directory: {e}")))?,
        };
        Ok(SqlAuthorizer {
            db,
            base_dir,
            verifier: Verifier::new()?,
            cache: RwLock::new(HashMap::new()),
            outage: Outage::new(opts.error_log_interval),
        })
    }

    /// The database, to manage users from a program.
    pub fn db(&self) -> &UserDb {
        &self.db
    }

    fn account(&self, username: &str) -> Option<Arc<Account>> {
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        cache.get(username).map(|c| c.account.clone())
    }

    /// The row for `username`, or `None` for an unknown user or a name no row can have.
    fn load(&self, username: &str) -> Result<Option<UserRecord>, DbError> {
        if username.is_empty() || username.len() > 255 || username.contains(char::is_control) {
            return Ok(None);
        }
        self.db.get(username)
    }

    /// The row resolved for a session: real home, real override directories inside it.
    fn resolve(&self, u: UserRecord) -> Account {
        let home = resolve(&self.base_dir, &u.home);
        let home = home.canonicalize().unwrap_or(home);
        let mut overrides: Overrides = Vec::new();
        for o in u.overrides {
            let dir = resolve(&home, &o.directory);
            let dir = dir.canonicalize().unwrap_or(dir);
            if dir == home || !is_subpath(&dir, &home) {
                log::warn!(
                    "user {:?}: permission override of {} ignored (not below the home {})",
                    u.name,
                    o.directory.display(),
                    home.display()
                );
                continue;
            }
            overrides.push((dir, o.perm, o.recursive));
        }
        // The most specific directory wins (as DummyAuthorizer::override_perm sorts).
        overrides.sort_by_key(|(d, _, _)| std::cmp::Reverse(d.components().count()));
        Account {
            home,
            perm: u.perm,
            overrides,
            msg_login: u.msg_login,
            msg_quit: u.msg_quit,
            limits: u.limits,
        }
    }

    fn remember(&self, username: &str, account: Account) {
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        let account = Arc::new(account);
        match cache.get_mut(username) {
            Some(c) => {
                c.account = account;
                c.sessions += 1;
            }
            None => {
                cache.insert(
                    username.to_owned(),
                    Cached {
                        account,
                        sessions: 1,
                    },
                );
            }
        }
    }
}

impl Authorizer for SqlAuthorizer {
    fn validate_authentication(
        &self,
        username: &str,
        password: &str,
        _peer: SocketAddr,
    ) -> Result<(), AuthenticationFailed> {
        let record = match self.load(username) {
            Ok(r) => {
                self.outage.recovered(&self.db);
                r
            }
            Err(e) => {
                self.outage.report(&self.db, &e);
                return Err(AuthenticationFailed::unavailable());
            }
        };
        let anonymous = username == "anonymous";
        let ok = match &record {
            // pyftpdlib: anonymous logs in with any password.
            Some(u) if anonymous => u.enabled,
            // The hash is checked even for a disabled user: every refusal costs the same.
            Some(u) => self.verifier.verify(password, Some(&u.password_hash)) && u.enabled,
            None if anonymous => false,
            None => {
                let _ = self.verifier.verify(password, None);
                false
            }
        };
        match record {
            Some(u) if ok => {
                let account = self.resolve(u);
                self.remember(username, account);
                Ok(())
            }
            r => {
                if r.is_some_and(|u| !u.enabled) {
                    log::info!("user {username:?} is disabled");
                }
                Err(AuthenticationFailed::new(if anonymous {
                    MSG_ANON_NOT_ALLOWED
                } else {
                    MSG_AUTH_FAILED
                }))
            }
        }
    }

    fn get_home_dir(&self, username: &str) -> Result<PathBuf, AuthorizerError> {
        self.account(username)
            .map(|a| a.home.clone())
            .ok_or_else(|| AuthorizerError(MSG_AUTH_FAILED.into()))
    }

    fn has_perm(&self, username: &str, perm: Perm, path: Option<&Path>) -> bool {
        self.account(username)
            .is_some_and(|a| has_perm_with(a.perm, &a.overrides, perm, path))
    }

    fn get_perms(&self, username: &str) -> PermSet {
        self.account(username).map(|a| a.perm).unwrap_or_default()
    }

    fn get_msg_login(&self, username: &str) -> String {
        self.account(username)
            .map(|a| a.msg_login.clone())
            .unwrap_or_default()
    }

    fn get_msg_quit(&self, username: &str) -> String {
        self.account(username)
            .map(|a| a.msg_quit.clone())
            .unwrap_or_else(|| "Goodbye.".into())
    }

    fn get_limits(&self, username: &str) -> UserLimits {
        self.account(username).map(|a| a.limits).unwrap_or_default()
    }

    fn impersonate_user(
        &self,
        _username: &str,
        _password: &str,
        process: ProcessKind,
    ) -> Result<(), AuthorizerError> {
        if process == ProcessKind::SingleSession {
            // This process serves one session (Fork, inetd "nowait") and, the user's row
            // cached, asks the database nothing more: 500 forked sessions must not hold 500
            // database connections. (A child whose logins failed keeps its connection until
            // its session ends.)
            self.db.close_idle();
        }
        Ok(())
    }

    fn terminate_impersonation(&self, username: &str) -> Result<(), AuthorizerError> {
        // The session ended: forget the row once the user's last session has.
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.get_mut(username) {
            c.sessions = c.sessions.saturating_sub(1);
            if c.sessions == 0 {
                cache.remove(username);
            }
        }
        Ok(())
    }
}

/// The database's availability as logins see it: the first failure is logged at once,
/// later ones at most once per interval with a count, the recovery once.
struct Outage {
    interval: Duration,
    down: AtomicBool,
    state: Mutex<OutageState>,
}

#[derive(Default)]
struct OutageState {
    since: Option<Instant>,
    last_log: Option<Instant>,
    failures: u64,
}

impl Outage {
    fn new(interval: Duration) -> Outage {
        Outage {
            interval,
            down: AtomicBool::new(false),
            state: Mutex::new(OutageState::default()),
        }
    }

    fn report(&self, db: &UserDb, e: &DbError) {
        self.down.store(true, Ordering::SeqCst);
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.failures += 1;
        let now = Instant::now();
        match (s.since, s.last_log) {
            (None, _) => {
                s.since = Some(now);
                s.last_log = Some(now);
                log::error!(
                    "user database {} unavailable: {e}; logins get 421 until it answers",
                    db.url()
                );
            }
            (Some(since), Some(last)) if now.duration_since(last) >= self.interval => {
                s.last_log = Some(now);
                log::error!(
                    "user database {} still unavailable after {:.0?} ({} logins refused): {e}",
                    db.url(),
                    now.duration_since(since),
                    s.failures
                );
            }
            _ => {}
        }
    }

    fn recovered(&self, db: &UserDb) {
        if !self.down.swap(false, Ordering::SeqCst) {
            return;
        }
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(since) = s.since.take() {
            log::warn!(
                "user database {} available again after {:.0?} ({} logins refused)",
                db.url(),
                since.elapsed(),
                s.failures
            );
        }
        *s = OutageState::default();
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;
    use crate::authorizers::sql::hash_password;
    use crate::authorizers::tests::peer;

    #[test]
    fn every_refusal_costs_one_hash_and_logins_are_cached_per_session() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("u.db").display());
        let db = UserDb::open(&url).unwrap();
        for (name, enabled) in [("on", true), ("off", false)] {
            let mut u = UserRecord::new(name, dir.path());
            u.password_hash = hash_password("pw").unwrap();
            u.enabled = enabled;
            db.add(&u).unwrap();
        }
        db.add(&UserRecord::new("anonymous", dir.path())).unwrap();
        let a = SqlAuthorizer::open(&url).unwrap();
        let v = &a.verifier;
        // Unknown, disabled, wrong password, a name no row can have: one hash each.
        for (user, pass) in [
            ("nobody", "pw"),
            ("off", "pw"),
            ("on", "bad"),
            ("a\0b", "pw"),
        ] {
            let before = v.computed();
            let e = a.validate_authentication(user, pass, peer()).unwrap_err();
            assert_eq!((e.0.as_str(), e.is_temporary()), (MSG_AUTH_FAILED, false));
            assert_eq!(v.computed(), before + 1, "{user}");
        }
        // anonymous: any password, no hash.
        let before = v.computed();
        a.validate_authentication("anonymous", "x@y", peer())
            .unwrap();
        assert_eq!(v.computed(), before);
        // Two sessions of one user share the row; it goes when the last one ends.
        a.validate_authentication("on", "pw", peer()).unwrap();
        a.validate_authentication("on", "pw", peer()).unwrap();
        assert!(a.has_perm("on", Perm::List, None));
        a.terminate_impersonation("on").unwrap();
        assert!(a.has_perm("on", Perm::List, None));
        a.terminate_impersonation("on").unwrap();
        assert!(!a.has_perm("on", Perm::List, None));
        assert!(a.get_home_dir("on").is_err());
    }
}
