//! Listings: LIST, NLST, MLSD over the data connection, MLST and `STAT path` over the control
//! connection (RFC 959 §4.1.3, RFC 3659 §7). Entries stream one at a time: a directory of a
//! million names is never held whole. Small directories (up to [`SORT_LIMIT`] names) are
//! sorted, as RFC 959 recommends and pyftpdlib does.

use std::borrow::Cow;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{fs_error, quoted};
use crate::beneath::Escape;
use crate::filesystems::listing::{self, NameCache};
use crate::filesystems::{AbstractedFs, DirIter, FileKind, Stat};
use crate::handlers::data::Source;
use crate::handlers::{Encoding, Request, Session};

/// Directories up to this many names are sorted before listing; larger ones stream unsorted.
pub const SORT_LIMIT: usize = 4096;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    List,
    Nlst,
    Mlsd,
}

/// Produces listing lines one entry at a time.
struct Lister<'a> {
    fs: &'a mut AbstractedFs,
    dir: PathBuf,
    /// The directory opened once, so entries are stat'ed with fstatat(2) by name (when the
    /// filesystem offers it).
    dirfd: Option<std::fs::File>,
    first: std::vec::IntoIter<OsString>,
    rest: Option<DirIter>,
    kind: Kind,
    names: NameCache,
    now: SystemTime,
    use_gmt: bool,
    enc: Encoding,
    perms: (String, String),
    facts: Vec<String>,
}

impl<'a> Lister<'a> {
    /// A listing of directory `dir`, or of the single entry `only` inside it.
    fn new(
        s: &Session,
        fs: &'a mut AbstractedFs,
        dir: PathBuf,
        only: Option<OsString>,
        kind: Kind,
    ) -> io::Result<Self> {
        let (first, rest) = match only {
            Some(name) => (vec![name], None),
            None => {
                let mut it = fs.fs().listdir(&dir)?;
                let mut first = Vec::new();
                for n in it.by_ref() {
                    first.push(n?);
                    if first.len() >= SORT_LIMIT {
                        break;
                    }
                }
                if first.len() < SORT_LIMIT {
                    first.sort();
                    (first, None)
                } else {
                    (first, Some(it))
                }
            }
        };
        let dirfd = match kind {
            Kind::Nlst => None,
            _ => fs.fs().open_dir(&dir).ok().flatten(),
        };
        Ok(Lister {
            fs,
            dir,
            dirfd,
            first: first.into_iter(),
            rest,
            kind,
            names: NameCache::default(),
            now: SystemTime::now(),
            use_gmt: s.h.use_gmt_times,
            enc: s.h.encoding,
            perms: listing::mlsx_perms(s.h.authorizer.get_perms(&s.username)),
            facts: s.facts.clone(),
        })
    }

    /// Appends the next entry's line; false once every entry is out.
    fn fill(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        loop {
            let name = match self.first.next() {
                Some(n) => n,
                None => match self.rest.as_mut().and_then(|r| r.next()) {
                    Some(Ok(n)) => n,
                    Some(Err(_)) => continue,
                    None => return Ok(false),
                },
            };
            // An entry that vanished or cannot be read is left out, as pyftpdlib does.
            if self.entry(&name, out).is_ok() {
                return Ok(true);
            }
        }
    }

    /// Facts about one entry: fstatat(2) on the open directory (never following a
    /// symlink), or the filesystem's lstat of the joined path. With `follow`, a symlink's
    /// target is then stat'ed through the filesystem, beneath the root; a link leading out
    /// of it keeps its own facts (never the target's size, time or inode).
    fn stat_entry(&mut self, name: &OsStr, follow: bool) -> io::Result<Stat> {
        let path = self.dir.join(name);
        let st = match &self.dirfd {
            Some(d) => {
                use nix::fcntl::AtFlags;
                nix::sys::stat::fstatat(d, name, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map(|st| Stat::from_raw(&st))?
            }
            None => self.fs.fs().lstat(&path)?,
        };
        if !follow || st.kind != FileKind::Symlink {
            return Ok(st);
        }
        match self.fs.fs().stat(&path) {
            Err(e) if Escape::of(&e).is_some() => Ok(st),
            r => r,
        }
    }

    fn link_target(&mut self, name: &OsStr) -> Option<Vec<u8>> {
        let t = match &self.dirfd {
            Some(d) => nix::fcntl::readlinkat(d, name).ok()?,
            None => self.fs.fs().readlink(&self.dir.join(name)).ok()?.into(),
        };
        Some(self.enc.encode(t.as_bytes()))
    }

    fn entry(&mut self, name: &OsString, out: &mut Vec<u8>) -> io::Result<()> {
        // UTF-8 names go out as they are: no copy per entry.
        let wire: Cow<'_, [u8]> = match self.enc {
            Encoding::Utf8 => Cow::Borrowed(name.as_bytes()),
            enc => Cow::Owned(enc.encode(name.as_bytes())),
        };
        match self.kind {
            Kind::Nlst => {
                out.extend_from_slice(&wire);
                out.extend_from_slice(b"\r\n");
            }
            Kind::List => {
                let st = self.stat_entry(name, false)?;
                let target = if st.kind == FileKind::Symlink {
                    self.link_target(name)
                } else {
                    None
                };
                let (owner, group) = self.names.owner_group(st.uid, st.gid);
                listing::list_line(
                    out,
                    &wire,
                    &st,
                    owner,
                    group,
                    target.as_deref(),
                    self.now,
                    self.use_gmt,
                );
            }
            Kind::Mlsd => {
                // RFC 3659 §7.5.2: `unique` follows symlinks, so MLSx uses stat.
                let st = self.stat_entry(name, true)?;
                listing::mlsx_line(out, &wire, &st, &self.facts, &self.perms, self.use_gmt);
            }
        }
        Ok(())
    }
}

/// Splits a virtual path into (directory to list, single entry) the way pyftpdlib's LIST
/// does; a path leading out of the root is refused.
fn what_to_list(
    fs: &mut AbstractedFs,
    path: &Path,
    follow: bool,
) -> io::Result<(PathBuf, Option<OsString>)> {
    match fs.fs().stat(path) {
        Ok(st) if st.is_dir() => return Ok((path.to_path_buf(), None)),
        Err(e) if follow || Escape::of(&e).is_some() => return Err(e),
        _ if follow => {}
        _ => {
            fs.fs().lstat(path)?;
        }
    }
    let dir = path.parent().unwrap_or(path).to_path_buf();
    let name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    Ok((dir, Some(name)))
}

fn list_over_data(s: &mut Session, req: &Request, kind: Kind) -> io::Result<()> {
    let (Some(path), Some(real)) = (req.vpath.clone(), req.path.clone()) else {
        return Ok(());
    };
    let Some((mut fs, epoch)) = s.take_fs() else {
        return Ok(());
    };
    let r = list_with(s, &mut fs, &path, kind);
    s.restore_fs(fs, epoch);
    match r {
        Ok(Some(outcome)) => s.finish_transfer(&req.verb, &real, false, outcome),
        Ok(None) => Ok(()),
        Err(ListError::Fs(e)) => fs_error(s, &e),
        Err(ListError::NotDir) => s.reply(501, "No such directory."),
        Err(ListError::Ctrl(e)) => Err(e),
    }
}

enum ListError {
    Fs(io::Error),
    NotDir,
    Ctrl(io::Error),
}

fn list_with(
    s: &mut Session,
    fs: &mut AbstractedFs,
    path: &Path,
    kind: Kind,
) -> Result<Option<crate::handlers::data::Outcome>, ListError> {
    let (dir, only) = match what_to_list(fs, path, kind == Kind::Mlsd) {
        Ok(v) => v,
        // pyftpdlib `ftp_MLSD`: anything that is not a directory, missing or not, is 501.
        Err(_) if kind == Kind::Mlsd => return Err(ListError::NotDir),
        Err(e) => return Err(ListError::Fs(e)),
    };
    if kind == Kind::Mlsd && only.is_some() {
        return Err(ListError::NotDir);
    }
    let mut lister = Lister::new(s, fs, dir, only, kind).map_err(ListError::Fs)?;
    let Some(mut conn) = s.open_data(None).map_err(ListError::Ctrl)? else {
        return Ok(None);
    };
    let mut fill = |out: &mut Vec<u8>| lister.fill(out);
    Ok(Some(s.send_data(&mut conn, Source::Lines(&mut fill))))
}

pub(super) fn list(s: &mut Session, req: &Request) -> io::Result<()> {
    list_over_data(s, req, Kind::List)
}

pub(super) fn nlst(s: &mut Session, req: &Request) -> io::Result<()> {
    list_over_data(s, req, Kind::Nlst)
}

pub(super) fn mlsd(s: &mut Session, req: &Request) -> io::Result<()> {
    list_over_data(s, req, Kind::Mlsd)
}

pub(super) fn mlst(s: &mut Session, req: &Request) -> io::Result<()> {
    let Some(path) = req.vpath.clone() else {
        return Ok(());
    };
    let Some(fs) = s.fs.as_mut() else {
        return Ok(());
    };
    // RFC 3659 §7.5.2: facts follow a symlink, beneath the root; a link leading out of it
    // is described by its own facts.
    let st = match fs.fs().stat(&path) {
        Err(e) if Escape::of(&e).is_some() => fs.fs().lstat(&path),
        r => r,
    };
    let st = match st {
        Ok(st) => st,
        Err(e) => return fs_error(s, &e),
    };
    let v = path.as_os_str().as_bytes().to_vec();
    // The name ends the fact line: a CR or LF in it must not end the reply line.
    let wire = crate::proto::escape_line(&s.h.encoding.encode(&v)).into_owned();
    let perms = listing::mlsx_perms(s.h.authorizer.get_perms(&s.username));
    // RFC 3659 §7.2: with TVFS the fact line names the full path.
    let mut line = Vec::new();
    listing::mlsx_line(&mut line, &wire, &st, &s.facts, &perms, s.h.use_gmt_times);
    line.truncate(line.len().saturating_sub(2));
    let mut head = b"Listing ".to_vec();
    head.extend_from_slice(&quoted(s, &v));
    head.push(b':');
    let mut out = b"250-".to_vec();
    out.extend_from_slice(&head);
    out.extend_from_slice(b"\r\n ");
    out.extend_from_slice(&line);
    out.extend_from_slice(b"\r\n250 End MLST.\r\n");
    s.send_raw(&out)
}

pub(super) fn stat(s: &mut Session, req: &Request) -> io::Result<()> {
    let Some(path) = req.vpath.clone() else {
        return s.status_reply();
    };
    let Some((mut fs, epoch)) = s.take_fs() else {
        return Ok(());
    };
    let r = (|| -> io::Result<Vec<u8>> {
        let (dir, only) = what_to_list(&mut fs, &path, true)?;
        let v = path.as_os_str().as_bytes().to_vec();
        let mut out = b"213-Status of ".to_vec();
        out.extend_from_slice(&quoted(s, &v));
        out.extend_from_slice(b":\r\n");
        let mut lister = Lister::new(s, &mut fs, dir, only, Kind::List)?;
        let mut line = Vec::new();
        while lister.fill(&mut line)? {
            // One `ls -l` line per entry over the control connection: names (and link
            // targets) with CR or LF must stay inside it, or they would forge replies.
            let entry = line.strip_suffix(b"\r\n").unwrap_or(&line);
            out.extend_from_slice(&crate::proto::escape_line(entry));
            out.extend_from_slice(b"\r\n");
            line.clear();
            if out.len() > 1 << 16 {
                s.send_raw(&out)?;
                out.clear();
            }
        }
        out.extend_from_slice(b"213 End of status.\r\n");
        Ok(out)
    })();
    s.restore_fs(fs, epoch);
    match r {
        Ok(out) => s.send_raw(&out),
        Err(e) => fs_error(s, &e),
    }
}
