//! `AbstractedFs` (pyftpdlib `AbstractedFS`): the virtual working directory of a session, the
//! arithmetic between the client's paths, virtual paths and host paths, and the session's
//! [`Filesystem`].

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{path, Filesystem};

/// A session's view of its files: a real root that is the virtual `/`, the virtual working
/// directory, and the [`Filesystem`] that every operation goes through (with virtual paths).
pub struct AbstractedFs {
    root: PathBuf,
    cwd: Vec<u8>,
    fs: Box<dyn Filesystem>,
}

impl AbstractedFs {
    /// A session rooted at `root` (made absolute and canonical, for display and permission
    /// checks only: the filesystem holds its own root) with the working directory `/`.
    ///
    /// # Errors
    /// `root` cannot be resolved.
    pub fn new(root: &Path, fs: Box<dyn Filesystem>) -> io::Result<Self> {
        let root = path::realpath(&path::absolute(root)?)
            .ok_or_else(|| io::Error::other("symlink loop in root"))?;
        Ok(AbstractedFs {
            root,
            cwd: b"/".to_vec(),
            fs,
        })
    }

    /// The real root directory (its host path).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The virtual working directory.
    pub fn cwd(&self) -> &[u8] {
        &self.cwd
    }

    /// Normalizes a client path against the working directory: the virtual path, as bytes.
    pub fn ftpnorm(&self, vpath: &[u8]) -> Vec<u8> {
        path::ftpnorm(&self.cwd, vpath)
    }

    /// Normalizes a client path against the working directory: the virtual path a
    /// [`Filesystem`] receives.
    pub fn vpath(&self, arg: &[u8]) -> PathBuf {
        PathBuf::from(OsStr::from_bytes(&self.ftpnorm(arg)))
    }

    /// Client path → host path (the root joined with the virtual path; symlinks are not
    /// resolved, so it is for display, permissions and callbacks, never for opening).
    pub fn ftp2fs(&self, vpath: &[u8]) -> PathBuf {
        path::ftp2fs(&self.root, &self.cwd, vpath)
    }

    /// Host path → virtual path (`/` for a path outside the root).
    pub fn fs2ftp(&self, real: &Path) -> Vec<u8> {
        path::fs2ftp(&self.root, real)
    }

    /// Changes the working directory to the virtual path `vpath`, which must be a directory
    /// (resolved by the filesystem, beneath the root).
    ///
    /// # Errors
    /// `ENOTDIR` or the error of `stat`.
    pub fn chdir(&mut self, vpath: &Path) -> io::Result<()> {
        let st = self.fs.stat(vpath)?;
        if !st.is_dir() {
            return Err(io::Error::from_raw_os_error(nix::libc::ENOTDIR));
        }
        self.cwd = path::ftpnorm(b"/", vpath.as_os_str().as_bytes());
        Ok(())
    }

    /// The filesystem operations.
    pub fn fs(&mut self) -> &mut dyn Filesystem {
        self.fs.as_mut()
    }
}
