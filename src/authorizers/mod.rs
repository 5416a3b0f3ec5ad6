//! Who may log in and what they may do: the [`Authorizer`] trait and the permission letters
//! `elradfmwMT`, mirroring pyftpdlib's `authorizers` module.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::error::{AuthenticationFailed, AuthorizerError};
use crate::process::ProcessKind;

mod dummy;
mod impersonation;
#[cfg(feature = "sql")]
pub mod sql;
mod system;
mod unix;
pub use dummy::DummyAuthorizer;
pub use impersonation::Impersonation;
#[cfg(feature = "sql")]
pub use sql::SqlAuthorizer;
pub use system::{crypt, drop_privileges, verify_password};
pub use unix::UnixAuthorizer;

/// One permission letter, with pyftpdlib's meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Perm {
    /// `e`: change directory (CWD, CDUP).
    ChangeDir,
    /// `l`: list files (LIST, NLST, STAT, MLSD, MLST, SIZE, MDTM).
    List,
    /// `r`: retrieve files (RETR).
    Retrieve,
    /// `a`: append data to an existing file (APPE).
    Append,
    /// `d`: delete files or directories (DELE, RMD).
    Delete,
    /// `f`: rename (RNFR, RNTO).
    Rename,
    /// `m`: create directories (MKD).
    Mkdir,
    /// `w`: store files (STOR, STOU).
    Store,
    /// `M`: change file mode (SITE CHMOD).
    Chmod,
    /// `T`: change file modification time (MFMT).
    Mtime,
}

impl Perm {
    /// Every letter, in pyftpdlib's order.
    pub const ALL: [Perm; 10] = [
        Perm::ChangeDir,
        Perm::List,
        Perm::Retrieve,
        Perm::Append,
        Perm::Delete,
        Perm::Rename,
        Perm::Mkdir,
        Perm::Store,
        Perm::Chmod,
        Perm::Mtime,
    ];

    /// The permission's letter.
    pub fn letter(self) -> char {
        match self {
            Perm::ChangeDir => 'e',
            Perm::List => 'l',
            Perm::Retrieve => 'r',
            Perm::Append => 'a',
            Perm::Delete => 'd',
            Perm::Rename => 'f',
            Perm::Mkdir => 'm',
            Perm::Store => 'w',
            Perm::Chmod => 'M',
            Perm::Mtime => 'T',
        }
    }

    /// The permission for a letter, if it is one of `elradfmwMT`.
    pub fn from_letter(c: char) -> Option<Perm> {
        Perm::ALL.into_iter().find(|p| p.letter() == c)
    }

    /// True for the write letters `adfmwMT` (pyftpdlib `write_perms`).
    pub fn is_write(self) -> bool {
        !matches!(self, Perm::ChangeDir | Perm::List | Perm::Retrieve)
    }
}

/// A set of permissions, written as a string of letters (`"elr"`, `"elradfmwMT"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct PermSet(u16);

impl PermSet {
    /// pyftpdlib's `read_perms`.
    pub const READ: &'static str = "elr";
    /// pyftpdlib's `write_perms`.
    pub const WRITE: &'static str = "adfmwMT";

    /// Parses a permission string.
    ///
    /// # Errors
    /// An [`AuthorizerError`] naming the first letter that is not one of `elradfmwMT`.
    pub fn parse(s: &str) -> Result<PermSet, AuthorizerError> {
        let mut set = PermSet(0);
        for c in s.chars() {
            let p = Perm::from_letter(c)
                .ok_or_else(|| AuthorizerError(format!("no such permission {c:?}")))?;
            set.0 |= 1 << (p as u16);
        }
        Ok(set)
    }

    /// Every permission (`"elradfmwMT"`).
    pub fn all() -> PermSet {
        PermSet((1 << Perm::ALL.len()) - 1)
    }

    /// True if `p` is in the set.
    pub fn contains(self, p: Perm) -> bool {
        self.0 & (1 << (p as u16)) != 0
    }

    /// True if any write letter is in the set.
    pub fn has_write(self) -> bool {
        Perm::ALL
            .into_iter()
            .any(|p| p.is_write() && self.contains(p))
    }
}

impl fmt::Display for PermSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in Perm::ALL {
            if self.contains(p) {
                write!(f, "{}", p.letter())?;
            }
        }
        Ok(())
    }
}

/// Transfer-rate limits of one user, in bytes per second (0 = unlimited), as an authorizer
/// gives them ([`Authorizer::get_limits`]). `None` keeps the handler's setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserLimits {
    /// Upload rate of each of the user's sessions (`FtpHandler::read_limit`).
    pub read_limit: Option<u64>,
    /// Download rate of each of the user's sessions (`FtpHandler::write_limit`).
    pub write_limit: Option<u64>,
    /// Upload rate shared by all of the user's sessions (`FtpHandler::user_read_limit`).
    pub user_read_limit: Option<u64>,
    /// Download rate shared by all of the user's sessions (`FtpHandler::user_write_limit`).
    pub user_write_limit: Option<u64>,
}

/// Decides who may log in, where their home is and what they may do.
///
/// Shared by every session (`Send + Sync`); methods may block (a database lookup is fine:
/// each session runs on its own thread). Mirrors pyftpdlib's authorizer interface.
pub trait Authorizer: Send + Sync {
    /// Checks a user's password. `peer` is the client's address.
    ///
    /// # Errors
    /// [`AuthenticationFailed`] with the text sent after `530 `.
    fn validate_authentication(
        &self,
        username: &str,
        password: &str,
        peer: SocketAddr,
    ) -> Result<(), AuthenticationFailed>;

    /// The user's home directory, which becomes the virtual `/`.
    ///
    /// # Errors
    /// [`AuthorizerError`] when the user is unknown.
    fn get_home_dir(&self, username: &str) -> Result<PathBuf, AuthorizerError>;

    /// Whether `username` has `perm`, on `path` (a real filesystem path) when given.
    fn has_perm(&self, username: &str, perm: Perm, path: Option<&Path>) -> bool;

    /// The user's permissions at home (used for MLSx `perm` facts).
    fn get_perms(&self, username: &str) -> PermSet;

    /// The text of the 230 reply after a successful login.
    fn get_msg_login(&self, username: &str) -> String;

    /// The text of the 221 reply to QUIT.
    fn get_msg_quit(&self, username: &str) -> String;

    /// Called after login, before any filesystem access, to take on the user's identity.
    /// `process` says where the session runs: in a process of its own
    /// ([`ProcessKind::SingleSession`]: the identity may be taken on for good) or in a
    /// process shared with other sessions ([`ProcessKind::Shared`]: only the calling
    /// thread's identity may change, e.g. Linux `setfsuid`). pyftpdlib's `impersonate_user`
    /// with the kind of process added, which pyftpdlib's single-threaded server has no need
    /// to tell. Sessions call it through [`Impersonation::begin`], whose guard calls
    /// [`terminate_impersonation`](Self::terminate_impersonation) when dropped. Default:
    /// nothing.
    ///
    /// # Errors
    /// [`AuthorizerError`] if the identity cannot be taken on; the login is refused.
    fn impersonate_user(
        &self,
        _username: &str,
        _password: &str,
        _process: ProcessKind,
    ) -> Result<(), AuthorizerError> {
        Ok(())
    }

    /// Called once for each successful [`impersonate_user`](Self::impersonate_user), when
    /// the session logs out or ends (also by a panic), to drop the user's identity on the
    /// calling thread. Default: nothing.
    ///
    /// # Errors
    /// [`AuthorizerError`] if the identity cannot be dropped.
    fn terminate_impersonation(&self, _username: &str) -> Result<(), AuthorizerError> {
        Ok(())
    }

    /// The user's transfer-rate limits, asked once at login. Default: none of its own (the
    /// handler's limits apply).
    fn get_limits(&self, _username: &str) -> UserLimits {
        UserLimits::default()
    }
}

/// True if `path` is `dir` or inside it (pyftpdlib `_issubpath`).
pub(crate) fn is_subpath(path: &Path, dir: &Path) -> bool {
    path.starts_with(dir)
}

/// A user's per-directory permissions (pyftpdlib `override_perm`): directory, letters,
/// recursive; the most specific directory first.
pub(crate) type Overrides = Vec<(PathBuf, PermSet, bool)>;

/// pyftpdlib `has_perm`: the letters of the most specific override covering `path` (a
/// recursive one covers everything below its directory; another only the directory and the
/// files directly in it), else `perm` at home.
pub(crate) fn has_perm_with(
    home_perm: PermSet,
    overrides: &[(PathBuf, PermSet, bool)],
    perm: Perm,
    path: Option<&Path>,
) -> bool {
    if let Some(path) = path {
        for (dir, operm, recursive) in overrides {
            if !is_subpath(path, dir) {
                continue;
            }
            if *recursive {
                return operm.contains(perm);
            }
            if path == dir || (path.parent() == Some(dir.as_path()) && !path.is_dir()) {
                return operm.contains(perm);
            }
        }
    }
    home_perm.contains(perm)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A client address for the authorizers' tests.
    pub(crate) fn peer() -> SocketAddr {
        "127.0.0.1:1".parse().unwrap()
    }

    #[test]
    fn perm_strings_round_trip() {
        let s = PermSet::parse("elradfmwMT").unwrap();
        assert_eq!(s, PermSet::all());
        assert_eq!(s.to_string(), "elradfmwMT");
        assert_eq!(PermSet::parse("rle").unwrap().to_string(), "elr");
        assert!(PermSet::parse("elx").is_err());
        assert!(!PermSet::parse("elr").unwrap().has_write());
        assert!(PermSet::parse("elrT").unwrap().has_write());
    }
}
