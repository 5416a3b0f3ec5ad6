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
use crate::handlers::session::{Ending, Listing, Plan, Work};
use crate::handlers::table::Channel;
use crate::handlers::{Encoding, Request, Session};

/// Directories up to this many names are sorted before listing; larger ones stream unsorted.
pub const SORT_LIMIT: usize = 4096;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    List,
    Nlst,
    Mlsd,
}

/// Produces listing lines one entry at a time, from the filesystem lent at each step.
struct Lister {
    dir: PathBuf,
    /// The directory opened once, so entries are stat'ed with fstatat(2) by name (when the
    /// filesystem offers it).
    dirfd: Option<std::fs::File>,
    first: std::vec::IntoIter<OsString>,
    rest: Option<DirIter>,
    kind: Kind,
    names: NameCache,
    now: SystemTime,
    style: Style,
}

/// How a session shows entries: its time zone, wire encoding, the user's MLSx permission
/// facts and the facts chosen with OPTS MLST.
struct Style {
    use_gmt: bool,
    enc: Encoding,
    perms: (String, String),
    facts: Vec<String>,
}

impl Style {
    fn of(s: &Session) -> Style {
        Style {
            use_gmt: s.h.use_gmt_times,
            enc: s.h.encoding,
            perms: listing::mlsx_perms(s.h.authorizer.get_perms(&s.account.username)),
            facts: s.facts.clone(),
        }
    }
}

impl Lister {
    /// A listing of directory `dir`, or of the single entry `only` inside it.
    fn new(
        style: Style,
        fs: &mut AbstractedFs,
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
            dir,
            dirfd,
            first: first.into_iter(),
            rest,
            kind,
            names: NameCache::default(),
            now: SystemTime::now(),
            style,
        })
    }

    /// Appends the next entry's line; false once every entry is out.
    fn next_line(&mut self, fs: &mut AbstractedFs, out: &mut Vec<u8>) -> io::Result<bool> {
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
            if self.entry(fs, &name, out).is_ok() {
                return Ok(true);
            }
        }
    }

    /// Facts about one entry: fstatat(2) on the open directory (never following a
    /// symlink), or the filesystem's lstat of the joined path. With `follow`, a symlink's
    /// target is then stat'ed through the filesystem, beneath the root; a link leading out
    /// of it keeps its own facts (never the target's size, time or inode).
    fn stat_entry(&self, fs: &mut AbstractedFs, name: &OsStr, follow: bool) -> io::Result<Stat> {
        let path = self.dir.join(name);
        let st = match &self.dirfd {
            Some(d) => {
                use nix::fcntl::AtFlags;
                nix::sys::stat::fstatat(d, name, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map(|st| Stat::from_raw(&st))?
            }
            None => fs.fs().lstat(&path)?,
        };
        if !follow || st.kind != FileKind::Symlink {
            return Ok(st);
        }
        match fs.fs().stat(&path) {
            Err(e) if Escape::of(&e).is_some() => Ok(st),
            r => r,
        }
    }

    fn link_target(&self, fs: &mut AbstractedFs, name: &OsStr) -> Option<Vec<u8>> {
        let t = match &self.dirfd {
            Some(d) => nix::fcntl::readlinkat(d, name).ok()?,
            None => fs.fs().readlink(&self.dir.join(name)).ok()?.into(),
        };
        Some(self.style.enc.encode(t.as_bytes()))
    }

    fn entry(
        &mut self,
        fs: &mut AbstractedFs,
        name: &OsString,
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        // UTF-8 names go out as they are: no copy per entry.
        let wire: Cow<'_, [u8]> = match self.style.enc {
            Encoding::Utf8 => Cow::Borrowed(name.as_bytes()),
            enc => Cow::Owned(enc.encode(name.as_bytes())),
        };
        match self.kind {
            Kind::Nlst => {
                out.extend_from_slice(&wire);
                out.extend_from_slice(b"\r\n");
            }
            Kind::List => {
                let st = self.stat_entry(fs, name, false)?;
                let target = if st.kind == FileKind::Symlink {
                    self.link_target(fs, name)
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
                    self.style.use_gmt,
                );
            }
            Kind::Mlsd => {
                // RFC 3659 §7.5.2: `unique` follows symlinks, so MLSx uses stat.
                let st = self.stat_entry(fs, name, true)?;
                let sty = &self.style;
                listing::mlsx_line(out, &wire, &st, &sty.facts, &sty.perms, sty.use_gmt);
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

impl Listing for Lister {
    fn fill(&mut self, fs: &mut AbstractedFs, out: &mut Vec<u8>) -> io::Result<bool> {
        self.next_line(fs, out)
    }
}

/// LIST, NLST, MLSD: the listing is prepared here (a missing directory is answered at once)
/// and sent by the session loop over the data connection.
fn list_over_data(s: &mut Session, req: &Request, kind: Kind) -> io::Result<()> {
    let (Some(path), Some(real)) = (req.vpath.clone(), req.path.clone()) else {
        return Ok(());
    };
    let lister = match prepare(s, &path, kind) {
        Ok(Some(l)) => l,
        Ok(None) => return s.reply(501, "No such directory."),
        Err(e) => return fs_error(s, &e),
    };
    s.start_transfer(Plan {
        end: Ending {
            cmd: req.verb.clone(),
            path: real,
            channel: Channel::Listing,
            reserved: None,
        },
        work: Work::List(Box::new(lister)),
        mark: None,
    })
}

/// The lister of `path`; `None` for an MLSD of anything but a directory (pyftpdlib
/// `ftp_MLSD`: 501, missing or not).
fn prepare(s: &mut Session, path: &Path, kind: Kind) -> io::Result<Option<Lister>> {
    let style = Style::of(s);
    let Some(fs) = s.account.fs.as_mut() else {
        return Err(io::Error::other("not logged in"));
    };
    let (dir, only) = match what_to_list(fs, path, kind == Kind::Mlsd) {
        Ok(v) => v,
        Err(_) if kind == Kind::Mlsd => return Ok(None),
        Err(e) => return Err(e),
    };
    if kind == Kind::Mlsd && only.is_some() {
        return Ok(None);
    }
    Lister::new(style, fs, dir, only, kind).map(Some)
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
    let Some(fs) = s.account.fs.as_mut() else {
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
    let perms = listing::mlsx_perms(s.h.authorizer.get_perms(&s.account.username));
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
    s.ctrl.send_raw(&out)
}

pub(super) fn stat(s: &mut Session, req: &Request) -> io::Result<()> {
    let Some(path) = req.vpath.clone() else {
        return s.status_reply();
    };
    match stat_listing(s, &path) {
        Ok(out) => s.ctrl.send_raw(&out),
        Err(e) => fs_error(s, &e),
    }
}

/// `STAT path`: an `ls -l` listing over the control connection (213), sent in pieces of
/// 64 KiB; the last piece is returned.
fn stat_listing(s: &mut Session, path: &Path) -> io::Result<Vec<u8>> {
    let v = path.as_os_str().as_bytes().to_vec();
    let mut out = b"213-Status of ".to_vec();
    out.extend_from_slice(&quoted(s, &v));
    out.extend_from_slice(b":\r\n");
    let style = Style::of(s);
    let Some(fs) = s.account.fs.as_mut() else {
        return Err(io::Error::other("not logged in"));
    };
    let (dir, only) = what_to_list(fs, path, true)?;
    let mut lister = Lister::new(style, fs, dir, only, Kind::List)?;
    let mut line = Vec::new();
    while lister.next_line(fs, &mut line)? {
        // One `ls -l` line per entry over the control connection: names (and link
        // targets) with CR or LF must stay inside it, or they would forge replies.
        let entry = line.strip_suffix(b"\r\n").unwrap_or(&line);
        out.extend_from_slice(&crate::proto::escape_line(entry));
        out.extend_from_slice(b"\r\n");
        line.clear();
        if out.len() > 1 << 16 {
            s.ctrl.send_raw(&out)?;
            out.clear();
        }
    }
    out.extend_from_slice(b"213 End of status.\r\n");
    Ok(out)
}
