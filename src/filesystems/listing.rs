//! Listing formats: `ls -l` lines for LIST and STAT (pyftpdlib `format_list`, matched with
//! proftpd's output), MLSx fact lines (RFC 3659 §7, pyftpdlib `format_mlsx`) and the
//! `YYYYMMDDHHMMSS` time values of MDTM/MFMT (RFC 3659 §2.3). Pure formatters.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{FileKind, Stat};
use crate::authorizers::{Perm, PermSet};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Entries older than this show the year instead of the time (pyftpdlib `SIX_MONTHS`).
const SIX_MONTHS: i64 = 180 * 24 * 60 * 60;

/// A broken-down time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tm {
    /// Full year.
    pub year: i64,
    /// 1–12.
    pub month: u32,
    /// 1–31.
    pub day: u32,
    /// 0–23.
    pub hour: u32,
    /// 0–59.
    pub min: u32,
    /// 0–60.
    pub sec: u32,
}

/// Seconds since the epoch (negative before 1970).
pub fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// UTC broken-down time (Howard Hinnant's `civil_from_days`).
pub fn gmtime(secs: i64) -> Tm {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Tm {
        year,
        month,
        day,
        hour: (rem / 3600) as u32,
        min: (rem % 3600 / 60) as u32,
        sec: (rem % 60) as u32,
    }
}

/// Days since the epoch of a civil date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The local time zone's offset from UTC at `secs`, in seconds.
#[allow(unsafe_code)]
pub fn local_offset(secs: i64) -> i64 {
    let t = secs as nix::libc::time_t;
    // SAFETY: localtime_r only writes into the `tm` we own and reads `t`; both outlive the
    // call. A zeroed `tm` is a valid value of that plain C struct.
    let mut tm: nix::libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !nix::libc::localtime_r(&t, &mut tm).is_null() };
    if ok {
        tm.tm_gmtoff
    } else {
        0
    }
}

/// Broken-down time in UTC or in the local zone.
pub fn breakdown(t: SystemTime, use_gmt: bool) -> Tm {
    let s = unix_secs(t);
    if use_gmt {
        gmtime(s)
    } else {
        gmtime(s + local_offset(s))
    }
}

/// `YYYYMMDDHHMMSS` (RFC 3659 §2.3), in UTC or local time.
pub fn format_timeval(t: SystemTime, use_gmt: bool) -> String {
    let tm = breakdown(t, use_gmt);
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        tm.year, tm.month, tm.day, tm.hour, tm.min, tm.sec
    )
}

/// Parses `YYYYMMDDHHMMSS` (fractions after a `.` ignored) as UTC (RFC 3659 §2.3).
pub fn parse_timeval(s: &str) -> Option<SystemTime> {
    let s = s.split('.').next()?;
    if s.len() != 14 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |a: usize, b: usize| s[a..b].parse::<u32>().ok();
    let (y, mo, d, h, mi, se) = (
        n(0, 4)?,
        n(4, 6)?,
        n(6, 8)?,
        n(8, 10)?,
        n(10, 12)?,
        n(12, 14)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = days_from_civil(i64::from(y), mo, d);
    // Reject dates like Feb 31 that roll over into the next month.
    if gmtime(days * 86_400).day != d {
        return None;
    }
    let secs = days * 86_400 + i64::from(h * 3600 + mi * 60 + se);
    if secs >= 0 {
        Some(UNIX_EPOCH + Duration::from_secs(secs as u64))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    }
}

/// `drwxr-xr-x` from a mode (Python's `stat.filemode`).
pub fn filemode(mode: u32, kind: FileKind) -> [u8; 10] {
    let mut s = *b"----------";
    s[0] = match mode & 0o170000 {
        0o040000 => b'd',
        0o120000 => b'l',
        0o100000 => b'-',
        0o020000 => b'c',
        0o060000 => b'b',
        0o010000 => b'p',
        0o140000 => b's',
        _ => match kind {
            FileKind::Dir => b'd',
            FileKind::Symlink => b'l',
            _ => b'-',
        },
    };
    let bits = [
        (0o400, b'r'),
        (0o200, b'w'),
        (0o100, b'x'),
        (0o040, b'r'),
        (0o020, b'w'),
        (0o010, b'x'),
        (0o004, b'r'),
        (0o002, b'w'),
        (0o001, b'x'),
    ];
    for (i, (bit, c)) in bits.iter().enumerate() {
        if mode & bit != 0 {
            s[i + 1] = *c;
        }
    }
    let special = [
        (0o4000, 3, b's', b'S'),
        (0o2000, 6, b's', b'S'),
        (0o1000, 9, b't', b'T'),
    ];
    for (bit, i, x, nox) in special {
        if mode & bit != 0 {
            s[i] = if s[i] == b'x' { x } else { nox };
        }
    }
    s
}

/// Caches uid/gid → name lookups for one listing (the account database is read once per id).
#[derive(Debug, Default)]
pub struct NameCache {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl NameCache {
    /// The user name for `uid`, or the number.
    pub fn user(&mut self, uid: u32) -> &str {
        self.users.entry(uid).or_insert_with(|| {
            match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
                Ok(Some(u)) => u.name,
                _ => uid.to_string(),
            }
        })
    }

    /// The owner and group names of an entry, each looked up once per listing.
    pub fn owner_group(&mut self, uid: u32, gid: u32) -> (&str, &str) {
        self.user(uid);
        self.group(gid);
        (
            self.users.get(&uid).map(String::as_str).unwrap_or(""),
            self.groups.get(&gid).map(String::as_str).unwrap_or(""),
        )
    }

    /// The group name for `gid`, or the number.
    pub fn group(&mut self, gid: u32) -> &str {
        self.groups.entry(gid).or_insert_with(|| {
            match nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)) {
                Ok(Some(g)) => g.name,
                _ => gid.to_string(),
            }
        })
    }
}

/// Appends one `ls -l` line, CR LF terminated (pyftpdlib `format_list`):
/// `-rw-r--r--   1 owner    group        1234 Jan 05 12:30 name`.
#[allow(clippy::too_many_arguments)]
pub fn list_line(
    out: &mut Vec<u8>,
    name: &[u8],
    st: &Stat,
    owner: &str,
    group: &str,
    link_target: Option<&[u8]>,
    now: SystemTime,
    use_gmt: bool,
) {
    let tm = breakdown(st.mtime, use_gmt);
    let mon = MONTHS[(tm.month as usize).saturating_sub(1) % 12];
    let mode = filemode(st.mode, st.kind);
    let nlink = st.nlink.max(1);
    // Written by hand rather than with write!: core::fmt's padding machinery was about 7 %
    // of the server's CPU time for a 10,000-entry listing.
    out.extend_from_slice(&mode);
    out.push(b' ');
    push_num(out, nlink, 3, b' ');
    out.push(b' ');
    push_left(out, owner, 8);
    out.push(b' ');
    push_left(out, group, 8);
    out.push(b' ');
    push_num(out, st.size, 8, b' ');
    out.push(b' ');
    out.extend_from_slice(mon.as_bytes());
    out.push(b' ');
    push_num(out, u64::from(tm.day), 2, b'0');
    out.push(b' ');
    if unix_secs(now) - unix_secs(st.mtime) > SIX_MONTHS {
        out.push(b' ');
        push_year(out, tm.year, 1);
    } else {
        push_num(out, u64::from(tm.hour), 2, b'0');
        out.push(b':');
        push_num(out, u64::from(tm.min), 2, b'0');
    }
    out.push(b' ');
    out.extend_from_slice(name);
    if let Some(t) = link_target {
        out.extend_from_slice(b" -> ");
        out.extend_from_slice(t);
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal, right-aligned in `width` columns padded with `fill`.
fn push_num(out: &mut Vec<u8>, n: u64, width: usize, fill: u8) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let len = digits.len() - i;
    out.resize(out.len() + width.saturating_sub(len), fill);
    out.extend_from_slice(&digits[i..]);
}

/// Appends `n` in base 16 or 8 (lower-case), no padding.
fn push_radix(out: &mut Vec<u8>, n: u64, radix: u64) {
    let mut digits = [0u8; 22];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[(n % radix) as usize];
        n /= radix;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends a year zero-padded to `width` digits (a year before 1 keeps its sign).
fn push_year(out: &mut Vec<u8>, year: i64, width: usize) {
    if year < 0 {
        out.push(b'-');
    }
    push_num(out, year.unsigned_abs(), width, b'0');
}

/// Appends `s` left-aligned in `width` columns.
fn push_left(out: &mut Vec<u8>, s: &str, width: usize) {
    out.extend_from_slice(s.as_bytes());
    out.resize(out.len() + width.saturating_sub(s.chars().count()), b' ');
}

/// The MLSx facts a server can show (RFC 3659 §7.5), in FEAT order.
pub const AVAILABLE_FACTS: [&str; 8] = [
    "type",
    "perm",
    "size",
    "modify",
    "unique",
    "unix.mode",
    "unix.uid",
    "unix.gid",
];

/// The facts shown until OPTS MLST changes them (pyftpdlib `_current_facts`, which adds
/// `unique` on POSIX systems).
pub const DEFAULT_FACTS: [&str; 5] = ["type", "perm", "size", "modify", "unique"];

/// The FEAT line for MLST: `type*;perm*;size*;modify*;unique*;unix.mode;unix.uid;unix.gid;`.
pub fn mlst_feat(current: &[String]) -> String {
    let mut s = String::from("MLST ");
    for f in AVAILABLE_FACTS {
        s.push_str(f);
        if current.iter().any(|c| c == f) {
            s.push('*');
        }
        s.push(';');
    }
    s
}

/// The `perm` fact strings for directories and files (pyftpdlib `format_mlsx`).
pub fn mlsx_perms(perms: PermSet) -> (String, String) {
    let letters = perms.to_string();
    let mut dir: String = letters.chars().filter(|c| !"arw".contains(*c)).collect();
    let file: String = letters.chars().filter(|c| !"celmp".contains(*c)).collect();
    if perms.contains(Perm::Store) || perms.contains(Perm::Append) || perms.contains(Perm::Rename) {
        dir.push('c');
    }
    if perms.contains(Perm::Delete) {
        dir.push('p');
    }
    (dir, file)
}

/// Appends one MLSx fact line: `fact=value;…; name` CR LF, facts sorted by name
/// (RFC 3659 §7.2). `name` is the basename for MLSD, the full path for MLST.
pub fn mlsx_line(
    out: &mut Vec<u8>,
    name: &[u8],
    st: &Stat,
    facts: &[String],
    perms: &(String, String),
    use_gmt: bool,
) {
    let has = |f: &str| facts.iter().any(|x| x == f);
    let isdir = st.is_dir();
    // Sorted by fact name: modify, perm, size, type, unique, unix.gid, unix.mode, unix.uid.
    if has("modify") {
        push_modify(out, st.mtime, use_gmt);
    }
    if has("perm") {
        out.extend_from_slice(b"perm=");
        out.extend_from_slice(if isdir { &perms.0 } else { &perms.1 }.as_bytes());
        out.push(b';');
    }
    if has("size") {
        out.extend_from_slice(b"size=");
        push_num(out, st.size, 0, b' ');
        out.push(b';');
    }
    if has("type") {
        out.extend_from_slice(b"type=");
        out.extend_from_slice(mlsx_type(name, st).as_bytes());
        out.push(b';');
    }
    if has("unique") {
        out.extend_from_slice(b"unique=");
        push_radix(out, st.dev, 16);
        out.push(b'g');
        push_radix(out, st.ino, 16);
        out.push(b';');
    }
    if has("unix.gid") {
        let _ = write!(out, "unix.gid={};", st.gid);
    }
    if has("unix.mode") {
        let _ = write!(out, "unix.mode=0{:o};", st.mode & 0o777);
    }
    if has("unix.uid") {
        let _ = write!(out, "unix.uid={};", st.uid);
    }
    out.push(b' ');
    out.extend_from_slice(name);
    out.extend_from_slice(b"\r\n");
}

/// The `modify=YYYYMMDDHHMMSS;` fact, as pyftpdlib's `format_timeval`, written in place (no
/// String per entry).
fn push_modify(out: &mut Vec<u8>, mtime: SystemTime, use_gmt: bool) {
    let tm = breakdown(mtime, use_gmt);
    out.extend_from_slice(b"modify=");
    push_year(out, tm.year, 4);
    for v in [tm.month, tm.day, tm.hour, tm.min, tm.sec] {
        push_num(out, u64::from(v), 2, b'0');
    }
    out.push(b';');
}

/// The `type` fact: `cdir`/`pdir` for `.`/`..`, `dir`, `file`; a symlink whose target is
/// outside the root keeps its own facts (RFC 3659 §7.5.1's OS-specific type); any other one
/// was followed.
fn mlsx_type(name: &[u8], st: &Stat) -> &'static str {
    if st.kind == FileKind::Symlink {
        "OS.unix=symlink"
    } else if !st.is_dir() {
        "file"
    } else if name == b"." {
        "cdir"
    } else if name == b".." {
        "pdir"
    } else {
        "dir"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(kind: FileKind, mode: u32, size: u64, mtime: i64) -> Stat {
        Stat {
            kind,
            size,
            mode,
            nlink: 1,
            uid: 1000,
            gid: 1000,
            mtime: UNIX_EPOCH + Duration::from_secs(mtime as u64),
            dev: 0x10,
            ino: 0xab,
        }
    }

    #[test]
    fn calendar() {
        assert_eq!(
            gmtime(0),
            Tm {
                year: 1970,
                month: 1,
                day: 1,
                hour: 0,
                min: 0,
                sec: 0
            }
        );
        // 2024-02-29 12:34:56 UTC
        assert_eq!(
            gmtime(1_709_210_096),
            Tm {
                year: 2024,
                month: 2,
                day: 29,
                hour: 12,
                min: 34,
                sec: 56
            }
        );
        let t = parse_timeval("20240229123456").unwrap();
        assert_eq!(unix_secs(t), 1_709_210_096);
        assert_eq!(format_timeval(t, true), "20240229123456");
        assert!(parse_timeval("20230229123456").is_none());
        assert!(parse_timeval("2024022912345").is_none());
        assert!(parse_timeval("2024022912345x").is_none());
        assert_eq!(
            unix_secs(parse_timeval("19600101000000").unwrap()),
            -315_619_200
        );
    }

    #[test]
    fn ls_lines_follow_the_six_month_rule() {
        let now = UNIX_EPOCH + Duration::from_secs(1_709_210_096);
        let mut out = Vec::new();
        let recent = st(FileKind::File, 0o100644, 1234, 1_709_210_096 - 3600);
        list_line(
            &mut out, b"a.txt", &recent, "user", "staff", None, now, true,
        );
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "-rw-r--r--   1 user     staff        1234 Feb 29 11:34 a.txt\r\n"
        );
        out.clear();
        let old = st(FileKind::Dir, 0o040755, 4096, 0);
        list_line(&mut out, b"d", &old, "root", "root", None, now, true);
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "drwxr-xr-x   1 root     root         4096 Jan 01  1970 d\r\n"
        );
        out.clear();
        let link = st(FileKind::Symlink, 0o120777, 3, 1_709_210_000);
        list_line(&mut out, b"l", &link, "u", "g", Some(b"dst"), now, true);
        assert!(out.starts_with(b"lrwxrwxrwx"));
        assert!(out.ends_with(b"l -> dst\r\n"));
    }

    #[test]
    fn filemodes() {
        assert_eq!(&filemode(0o104755, FileKind::File), b"-rwsr-xr-x");
        assert_eq!(&filemode(0o041777, FileKind::Dir), b"drwxrwxrwt");
        assert_eq!(&filemode(0o100000, FileKind::File), b"----------");
    }

    #[test]
    fn hand_formatting_matches_core_fmt() {
        let mut nums = vec![
            0u64,
            1,
            9,
            10,
            99,
            100,
            12_345,
            99_999_999,
            100_000_000,
            u64::MAX,
        ];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            nums.push(x >> (x % 64));
        }
        for n in nums {
            let mut v = Vec::new();
            push_num(&mut v, n, 8, b' ');
            assert_eq!(v, format!("{n:>8}").into_bytes());
            v.clear();
            push_num(&mut v, n, 2, b'0');
            assert_eq!(v, format!("{n:02}").into_bytes());
            v.clear();
            push_radix(&mut v, n, 16);
            assert_eq!(v, format!("{n:x}").into_bytes());
            v.clear();
            push_radix(&mut v, n, 8);
            assert_eq!(v, format!("{n:o}").into_bytes());
        }
        for s in ["", "ftp", "exactly8", "longer-than-8", "héllo"] {
            let mut v = Vec::new();
            push_left(&mut v, s, 8);
            assert_eq!(v, format!("{s:<8}").into_bytes());
        }
        let mut v = Vec::new();
        push_year(&mut v, 987, 4);
        assert_eq!(v, b"0987");
    }

    #[test]
    fn mlsx_facts_sorted() {
        let perms = mlsx_perms(PermSet::all());
        assert_eq!(perms.0, "eldfmMTcp");
        assert_eq!(perms.1, "radfwMT");
        let mut out = Vec::new();
        let facts: Vec<String> = AVAILABLE_FACTS.iter().map(|s| s.to_string()).collect();
        let f = st(FileKind::File, 0o100644, 5, 1_709_210_096);
        mlsx_line(&mut out, b"f", &f, &facts, &perms, true);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "modify=20240229123456;perm=radfwMT;size=5;type=file;unique=10gab;\
             unix.gid=1000;unix.mode=0644;unix.uid=1000; f\r\n"
        );
        let ro = mlsx_perms(PermSet::parse("elr").unwrap());
        assert_eq!(ro, ("el".to_string(), "r".to_string()));
        let cur: Vec<String> = DEFAULT_FACTS.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            mlst_feat(&cur),
            "MLST type*;perm*;size*;modify*;unique*;unix.mode;unix.uid;unix.gid;"
        );
    }
}
