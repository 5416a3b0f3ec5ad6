//! The account part of a session (pyftpdlib `FTPHandler`'s `username`, `authenticated`,
//! `fs`, `attempted_logins`, `_rnfr`): who is logged in, their jailed filesystem, their
//! rates, the login timer, and the rename in progress.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::authorizers::Impersonation;
use crate::filesystems::AbstractedFs;
use crate::handlers::rates::{RateTable, SessionRates};
use crate::handlers::{Callbacks, FtpHandler};
use crate::proto;

/// The account of one session.
pub(crate) struct Account {
    /// The name given with USER (logged in once `authenticated`).
    pub(crate) username: String,
    pub(crate) authenticated: bool,
    pub(crate) attempted_logins: u32,
    /// When the login timer started: at connect, and again at every logout (REIN).
    pub(crate) login_since: Instant,
    /// The user's jailed filesystem, once logged in.
    pub(crate) fs: Option<AbstractedFs>,
    /// Rate limits of the logged-in user (decided at login).
    pub(crate) rates: SessionRates,
    /// RNFR's path, waiting for RNTO.
    pub(crate) rnfr: Option<PathBuf>,
    /// The anonymous user's password (an e-mail address by custom: xferlog's
    /// identification string).
    pub(crate) anonymous_id: Option<String>,
    /// The user's identity, taken on at login; dropping it ends the impersonation.
    impersonation: Option<Impersonation>,
    /// A login to log once its command returns (`Session::announce_login`).
    pub(crate) announce: bool,
}

impl Account {
    /// Nobody logged in yet.
    pub(crate) fn new() -> Account {
        Account {
            username: String::new(),
            authenticated: false,
            attempted_logins: 0,
            login_since: Instant::now(),
            fs: None,
            rates: SessionRates::default(),
            rnfr: None,
            announce: false,
            anonymous_id: None,
            impersonation: None,
        }
    }

    /// The user named with USER is logged in with this filesystem.
    pub(crate) fn logged_in(
        &mut self,
        h: &FtpHandler,
        table: &Arc<RateTable>,
        fs: AbstractedFs,
        impersonation: Impersonation,
    ) {
        self.rates = SessionRates::at_login(h, table, &self.username);
        self.impersonation = Some(impersonation);
        self.fs = Some(fs);
        self.authenticated = true;
        self.attempted_logins = 0;
    }

    /// Forgets the logged-in user (REIN, USER again, QUIT, disconnect): the authorizer ends
    /// its impersonation and `on_logout` fires. Returns the user's filesystem, which a
    /// listing still running may go on with (RFC 959: a transfer finishes under the account
    /// it started with).
    pub(crate) fn logout(&mut self, cb: &mut dyn Callbacks, prefix: &str) -> Option<AbstractedFs> {
        if self.authenticated {
            let user = std::mem::take(&mut self.username);
            self.impersonation = None;
            cb.on_logout(&user);
            let shown = proto::log_escape(user.as_bytes());
            log::info!("{prefix} USER '{shown}' logged out.");
        }
        self.authenticated = false;
        self.login_since = Instant::now();
        self.username.clear();
        self.rates = SessionRates::default();
        self.rnfr = None;
        self.anonymous_id = None;
        self.fs.take()
    }

    /// When the login timer runs out, if it runs (`login_timeout`, until PASS succeeds).
    pub(crate) fn login_deadline(&self, h: &FtpHandler) -> Option<Instant> {
        match h.login_timeout {
            Some(t) if !self.authenticated => Some(self.login_since + t),
            _ => None,
        }
    }

    /// The logged-in user, if any.
    pub(crate) fn user(&self) -> Option<&str> {
        self.authenticated.then_some(self.username.as_str())
    }
}
