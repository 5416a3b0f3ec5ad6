//! `UnixFilesystem`: the real filesystem with no jail, the session starting in the user's
//! home (pyftpdlib `UnixFilesystem`), meant for [`UnixAuthorizer`](crate::authorizers::UnixAuthorizer)
//! users whose access the operating system decides under their own identity.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use super::{
    DirIter, Filesystem, OsFilesystem, ReadStream, Stat, UploadOptions, UploadSink, WriteMode,
};
use crate::handlers::FtpHandler;

/// The real filesystem, unjailed: `/` is the real root and login lands in the home.
#[derive(Debug, Default, Clone, Copy)]
pub struct UnixFilesystem;

impl UnixFilesystem {
    /// Makes `handler` serve the real filesystem: root `/`, sessions starting in the
    /// user's home, files opened with the session thread's (impersonated) identity.
    pub fn install(handler: &mut FtpHandler) {
        handler.root_dir = Some(PathBuf::from("/"));
        handler.filesystem = Arc::new(|_, _| Ok(Box::new(UnixFilesystem)));
    }
}

impl Filesystem for UnixFilesystem {
    fn open_read(&mut self, path: &Path, offset: u64) -> io::Result<ReadStream> {
        OsFilesystem.open_read(path, offset)
    }
    fn open_write(&mut self, path: &Path, mode: WriteMode) -> io::Result<Box<dyn Write + Send>> {
        OsFilesystem.open_write(path, mode)
    }
    fn open_upload(
        &mut self,
        path: &Path,
        mode: WriteMode,
        opts: UploadOptions,
    ) -> io::Result<Box<dyn UploadSink>> {
        OsFilesystem.open_upload(path, mode, opts)
    }
    fn mkdir(&mut self, path: &Path) -> io::Result<()> {
        OsFilesystem.mkdir(path)
    }
    fn rmdir(&mut self, path: &Path) -> io::Result<()> {
        OsFilesystem.rmdir(path)
    }
    fn remove(&mut self, path: &Path) -> io::Result<()> {
        OsFilesystem.remove(path)
    }
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        OsFilesystem.rename(from, to)
    }
    fn chmod(&mut self, path: &Path, mode: u32) -> io::Result<()> {
        OsFilesystem.chmod(path, mode)
    }
    fn utime(&mut self, path: &Path, mtime: SystemTime) -> io::Result<()> {
        OsFilesystem.utime(path, mtime)
    }
    fn stat(&mut self, path: &Path) -> io::Result<Stat> {
        OsFilesystem.stat(path)
    }
    fn lstat(&mut self, path: &Path) -> io::Result<Stat> {
        OsFilesystem.lstat(path)
    }
    fn listdir(&mut self, path: &Path) -> io::Result<DirIter> {
        OsFilesystem.listdir(path)
    }
    fn readlink(&mut self, path: &Path) -> io::Result<PathBuf> {
        OsFilesystem.readlink(path)
    }
}
