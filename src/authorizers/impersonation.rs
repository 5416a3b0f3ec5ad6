//! [`Impersonation`]: a user's identity held for one login, given back when dropped, so no
//! path out of a session (logout, REIN, a new USER, disconnect, a panic unwinding) can leave
//! a pool thread acting as the last user it served.

use std::sync::Arc;

use super::Authorizer;
use crate::error::AuthorizerError;
use crate::process::ProcessKind;

/// The identity a session took on at login ([`Authorizer::impersonate_user`]); dropping it
/// calls [`Authorizer::terminate_impersonation`] on the dropping thread. With
/// [`UnixAuthorizer`](super::UnixAuthorizer): in a process shared with other sessions the
/// thread's filesystem ids (setfsuid/setfsgid) return to the process's, in a process of the
/// session's own the drop to the user was for good and stays.
///
/// Held by the session for as long as the user is logged in; drop it on the session's own
/// thread (the ids it restores are that thread's).
#[must_use = "dropping the guard ends the impersonation at once"]
pub struct Impersonation {
    authorizer: Arc<dyn Authorizer>,
    username: String,
}

impl Impersonation {
    /// Takes on `username`'s identity on the calling thread (or for the whole process when
    /// `process` is [`ProcessKind::SingleSession`] and the authorizer does so).
    ///
    /// # Errors
    /// The authorizer's, when it cannot take the identity on; nothing is held then.
    pub fn begin(
        authorizer: &Arc<dyn Authorizer>,
        username: &str,
        password: &str,
        process: ProcessKind,
    ) -> Result<Impersonation, AuthorizerError> {
        authorizer.impersonate_user(username, password, process)?;
        Ok(Impersonation {
            authorizer: authorizer.clone(),
            username: username.to_owned(),
        })
    }

    /// The user whose identity is held.
    pub fn username(&self) -> &str {
        &self.username
    }
}

impl std::fmt::Debug for Impersonation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Impersonation")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Drop for Impersonation {
    fn drop(&mut self) {
        if let Err(e) = self.authorizer.terminate_impersonation(&self.username) {
            log::error!("terminate_impersonation({:?}): {e}", self.username);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    use super::*;
    use crate::authorizers::{Perm, PermSet};
    use crate::error::AuthenticationFailed;

    /// Records the impersonation calls it gets.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Authorizer for Recorder {
        fn validate_authentication(
            &self,
            _: &str,
            _: &str,
            _: SocketAddr,
        ) -> Result<(), AuthenticationFailed> {
            Ok(())
        }
        fn get_home_dir(&self, _: &str) -> Result<PathBuf, AuthorizerError> {
            Ok(PathBuf::from("/"))
        }
        fn has_perm(&self, _: &str, _: Perm, _: Option<&Path>) -> bool {
            true
        }
        fn get_perms(&self, _: &str) -> PermSet {
            PermSet::all()
        }
        fn get_msg_login(&self, _: &str) -> String {
            String::new()
        }
        fn get_msg_quit(&self, _: &str) -> String {
            String::new()
        }
        fn impersonate_user(
            &self,
            user: &str,
            _: &str,
            process: ProcessKind,
        ) -> Result<(), AuthorizerError> {
            if user == "nobody" {
                return Err(AuthorizerError("no such user".into()));
            }
            self.0
                .lock()
                .unwrap()
                .push(format!("begin {user} {process:?}"));
            Ok(())
        }
        fn terminate_impersonation(&self, user: &str) -> Result<(), AuthorizerError> {
            self.0.lock().unwrap().push(format!("end {user}"));
            Ok(())
        }
    }

    #[test]
    fn the_guard_ends_what_it_began_once() {
        let rec = Arc::new(Recorder::default());
        let auth: Arc<dyn Authorizer> = rec.clone();
        let g = Impersonation::begin(&auth, "matt", "pw", ProcessKind::SingleSession).unwrap();
        assert_eq!(g.username(), "matt");
        assert_eq!(*rec.0.lock().unwrap(), ["begin matt SingleSession"]);
        drop(g);
        assert!(Impersonation::begin(&auth, "nobody", "pw", ProcessKind::Shared).is_err());
        // A panic that unwinds through the holder gives the identity back too.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _g = Impersonation::begin(&auth, "ann", "pw", ProcessKind::Shared).unwrap();
            panic!("a session panics");
        }));
        assert!(r.is_err());
        assert_eq!(
            *rec.0.lock().unwrap(),
            [
                "begin matt SingleSession",
                "end matt",
                "begin ann Shared",
                "end ann"
            ]
        );
    }
}
