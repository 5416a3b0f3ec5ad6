//! Navigation: CWD/XCWD, CDUP/XCUP, PWD/XPWD (RFC 959 §4.1.1, §4.1.3).

use std::io;

use super::{fs_error, quoted};
use crate::handlers::{Request, Session};

pub(super) fn cwd(s: &mut Session, req: &Request) -> io::Result<()> {
    let (Some(fs), Some(path)) = (s.account.fs.as_mut(), req.vpath.as_deref()) else {
        return Ok(());
    };
    match fs.chdir(path) {
        Ok(()) => {
            let cwd = fs.cwd().to_vec();
            let mut msg = quoted(s, &cwd);
            msg.extend_from_slice(b" is the current directory.");
            s.reply_bytes(250, &msg)
        }
        Err(e) => fs_error(s, &e),
    }
}

pub(super) fn pwd(s: &mut Session, _req: &Request) -> io::Result<()> {
    let cwd = s
        .account
        .fs
        .as_ref()
        .map(|f| f.cwd().to_vec())
        .unwrap_or_else(|| b"/".to_vec());
    let mut msg = quoted(s, &cwd);
    msg.extend_from_slice(b" is the current directory.");
    s.reply_bytes(257, &msg)
}
