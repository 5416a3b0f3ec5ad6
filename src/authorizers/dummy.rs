//! `DummyAuthorizer`: virtual users kept in memory, mirroring pyftpdlib's `DummyAuthorizer`
//! (add_user, add_anonymous, remove_user, override_perm, validate_authentication, has_perm…).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::{has_perm_with, is_subpath, Authorizer, Overrides, Perm, PermSet, UserLimits};
use crate::error::{AuthenticationFailed, AuthorizerError};

#[derive(Debug, Clone)]
struct User {
    password: String,
    home: PathBuf,
    perm: PermSet,
    /// Directory → (permissions, recursive), from override_perm.
    operms: Overrides,
    msg_login: String,
    msg_quit: String,
    limits: UserLimits,
}

/// Virtual users with passwords, home directories and permissions held in memory.
///
/// ```
/// use ftpdlib::authorizers::DummyAuthorizer;
/// let dir = std::env::temp_dir();
/// let mut auth = DummyAuthorizer::new();
/// auth.add_user("user", "12345", &dir, "elradfmwMT").unwrap();
/// auth.add_anonymous(&dir, "elr").unwrap();
/// ```
#[derive(Debug, Clone, Default)]
pub struct DummyAuthorizer {
    users: HashMap<String, User>,
}

impl DummyAuthorizer {
    /// An authorizer with no users.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a user with pyftpdlib's default messages ("Login successful.", "Goodbye.").
    ///
    /// # Errors
    /// The user exists, `home` is not a directory, or `perm` has an unknown letter.
    pub fn add_user(
        &mut self,
        username: &str,
        password: &str,
        home: impl AsRef<Path>,
        perm: &str,
    ) -> Result<(), AuthorizerError> {
        self.add_user_with_msgs(
            username,
            password,
            home,
            perm,
            "Login successful.",
            "Goodbye.",
        )
    }

    /// Adds a user with its own login and quit messages.
    ///
    /// # Errors
    /// The user exists, `home` is not a directory, or `perm` has an unknown letter.
    pub fn add_user_with_msgs(
        &mut self,
        username: &str,
        password: &str,
        home: impl AsRef<Path>,
        perm: &str,
        msg_login: &str,
        msg_quit: &str,
    ) -> Result<(), AuthorizerError> {
        if self.users.contains_key(username) {
            return Err(AuthorizerError(format!("user {username:?} already exists")));
        }
        let home = real_dir(home.as_ref())?;
        let perm = check_perms(username, perm)?;
        self.users.insert(
            username.to_owned(),
            User {
                password: password.to_owned(),
                home,
                perm,
                operms: Vec::new(),
                msg_login: msg_login.to_owned(),
                msg_quit: msg_quit.to_owned(),
                limits: UserLimits::default(),
            },
        );
        Ok(())
    }

    /// Adds the `anonymous` user (any password). Write letters in `perm` are allowed but
    /// logged as a warning, as pyftpdlib warns.
    ///
    /// # Errors
    /// As [`add_user`](Self::add_user).
    pub fn add_anonymous(
        &mut self,
        home: impl AsRef<Path>,
        perm: &str,
    ) -> Result<(), AuthorizerError> {
        self.add_user("anonymous", "", home, perm)
    }

    /// Removes a user (no error if absent).
    pub fn remove_user(&mut self, username: &str) {
        self.users.remove(username);
    }

    /// Sets a user's transfer-rate limits (per session and shared by the user's sessions;
    /// see [`UserLimits`]). They apply from the user's next login.
    ///
    /// # Errors
    /// Unknown user.
    pub fn set_limits(
        &mut self,
        username: &str,
        limits: UserLimits,
    ) -> Result<(), AuthorizerError> {
        let user = self
            .users
            .get_mut(username)
            .ok_or_else(|| AuthorizerError(format!("no such user {username:?}")))?;
        user.limits = limits;
        Ok(())
    }

    /// True if the user exists.
    pub fn has_user(&self, username: &str) -> bool {
        self.users.contains_key(username)
    }

    /// Gives `username` other permissions in `directory` (and below it if `recursive`).
    ///
    /// # Errors
    /// Unknown user or letter, `directory` missing, equal to the home, or outside it.
    pub fn override_perm(
        &mut self,
        username: &str,
        directory: impl AsRef<Path>,
        perm: &str,
        recursive: bool,
    ) -> Result<(), AuthorizerError> {
        let perm = check_perms(username, perm)?;
        let dir = real_dir(directory.as_ref())?;
        let user = self
            .users
            .get_mut(username)
            .ok_or_else(|| AuthorizerError(format!("no such user {username:?}")))?;
        if dir == user.home {
            return Err(AuthorizerError(
                "can't override home directory permissions".into(),
            ));
        }
        if !is_subpath(&dir, &user.home) {
            return Err(AuthorizerError("path escapes user home directory".into()));
        }
        user.operms.retain(|(d, _, _)| d != &dir);
        user.operms.push((dir, perm, recursive));
        // The most specific directory wins.
        user.operms
            .sort_by_key(|(d, _, _)| std::cmp::Reverse(d.components().count()));
        Ok(())
    }
}

fn real_dir(dir: &Path) -> Result<PathBuf, AuthorizerError> {
    if !dir.is_dir() {
        return Err(AuthorizerError(format!(
            "no such directory: {}",
            dir.display()
        )));
    }
    dir.canonicalize()
        .map_err(|e| AuthorizerError(format!("{}: {e}", dir.display())))
}

fn check_perms(username: &str, perm: &str) -> Result<PermSet, AuthorizerError> {
    let set = PermSet::parse(perm)?;
    if username == "anonymous" && set.has_write() {
        log::warn!("write permissions assigned to anonymous user.");
    }
    Ok(set)
}

impl Authorizer for DummyAuthorizer {
    fn validate_authentication(
        &self,
        username: &str,
        password: &str,
        _peer: SocketAddr,
    ) -> Result<(), AuthenticationFailed> {
        match self.users.get(username) {
            None if username == "anonymous" => {
                Err(AuthenticationFailed::new("Anonymous access not allowed."))
            }
            None => Err(AuthenticationFailed::new("Authentication failed.")),
            Some(_) if username == "anonymous" => Ok(()),
            Some(u) if constant_time_eq(u.password.as_bytes(), password.as_bytes()) => Ok(()),
            Some(_) => Err(AuthenticationFailed::new("Authentication failed.")),
        }
    }

    fn get_home_dir(&self, username: &str) -> Result<PathBuf, AuthorizerError> {
        self.users
            .get(username)
            .map(|u| u.home.clone())
            .ok_or_else(|| AuthorizerError(format!("no such user {username:?}")))
    }

    fn has_perm(&self, username: &str, perm: Perm, path: Option<&Path>) -> bool {
        self.users
            .get(username)
            .is_some_and(|u| has_perm_with(u.perm, &u.operms, perm, path))
    }

    fn get_perms(&self, username: &str) -> PermSet {
        self.users.get(username).map(|u| u.perm).unwrap_or_default()
    }

    fn get_msg_login(&self, username: &str) -> String {
        self.users
            .get(username)
            .map(|u| u.msg_login.clone())
            .unwrap_or_default()
    }

    fn get_msg_quit(&self, username: &str) -> String {
        self.users
            .get(username)
            .map(|u| u.msg_quit.clone())
            .unwrap_or_else(|| "Goodbye.".into())
    }

    fn get_limits(&self, username: &str) -> UserLimits {
        self.users
            .get(username)
            .map(|u| u.limits)
            .unwrap_or_default()
    }
}

/// Compares passwords without an early exit, so timing does not reveal a matching prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authorizers::tests::peer;

    #[test]
    fn users_and_passwords() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = DummyAuthorizer::new();
        a.add_user("u", "p", dir.path(), "elr").unwrap();
        assert!(a.add_user("u", "p", dir.path(), "elr").is_err());
        assert!(a
            .add_user("v", "p", dir.path().join("nope"), "elr")
            .is_err());
        assert!(a.add_user("v", "p", dir.path(), "elrz").is_err());
        assert!(a.validate_authentication("u", "p", peer()).is_ok());
        assert_eq!(
            a.validate_authentication("u", "x", peer()).unwrap_err().0,
            "Authentication failed."
        );
        assert_eq!(
            a.validate_authentication("anonymous", "", peer())
                .unwrap_err()
                .0,
            "Anonymous access not allowed."
        );
        a.add_anonymous(dir.path(), "elr").unwrap();
        assert!(a
            .validate_authentication("anonymous", "me@x", peer())
            .is_ok());
        a.remove_user("u");
        assert!(!a.has_user("u"));
    }

    #[test]
    fn override_perm_recursive_and_not() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(home.join("sub/deep")).unwrap();
        std::fs::write(home.join("sub/f"), b"").unwrap();
        let mut a = DummyAuthorizer::new();
        a.add_user("u", "p", &home, "elr").unwrap();
        assert!(a.override_perm("u", &home, "w", false).is_err());
        assert!(a.override_perm("u", "/", "w", false).is_err());
        a.override_perm("u", home.join("sub"), "elrw", false)
            .unwrap();
        assert!(a.has_perm("u", Perm::Store, Some(&home.join("sub"))));
        assert!(a.has_perm("u", Perm::Store, Some(&home.join("sub/f"))));
        assert!(!a.has_perm("u", Perm::Store, Some(&home.join("sub/deep/x"))));
        assert!(!a.has_perm("u", Perm::Store, Some(&home)));
        a.override_perm("u", home.join("sub"), "elrw", true)
            .unwrap();
        assert!(a.has_perm("u", Perm::Store, Some(&home.join("sub/deep/x"))));
        assert!(!a.has_perm("u", Perm::Store, None));
    }
}
