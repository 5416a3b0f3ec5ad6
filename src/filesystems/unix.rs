//! `UnixFilesystem`: the real filesystem with no jail, the session starting in the user's
//! home (pyftpdlib `UnixFilesystem`), meant for [`UnixAuthorizer`](crate::authorizers::UnixAuthorizer)
//! users whose access the operating system decides under their own identity. With
//! [`FtpHandler::chroot_local_user`] each user is jailed in their home instead (vsftpd's
//! `chroot_local_user`).

use std::path::PathBuf;
use std::sync::Arc;

use super::OsFilesystem;
use crate::handlers::FtpHandler;

/// The real filesystem, unjailed: `/` is the session's root and login lands in the home.
/// Paths are resolved as the kernel always does (absolute symlinks work), except that /proc
/// "magic" links are never followed.
#[derive(Debug, Default, Clone, Copy)]
pub struct UnixFilesystem;

impl UnixFilesystem {
    /// Makes `handler` serve the real filesystem: root `/`, sessions starting in the
    /// user's home, files opened with the session thread's (impersonated) identity. Setting
    /// [`FtpHandler::chroot_local_user`] as well jails each user in their home.
    pub fn install(handler: &mut FtpHandler) {
        handler.root_dir = Some(PathBuf::from("/"));
        handler.filesystem = Arc::new(|_, root| Ok(Box::new(OsFilesystem::new(root)?)));
    }
}
