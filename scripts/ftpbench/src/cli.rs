//! ftpbench's command line: getopts flags modelled on pyftpdlib's scripts/ftpbench (-H -P -u
//! -p -b -n -s -k), sizes like its human2bytes, and the workload selection of -b.

/// The flags, pyftpdlib ftpbench's short ones plus ours.
pub fn options() -> getopts::Options {
    let mut o = getopts::Options::new();
    o.optopt(
        "H",
        "host",
        "server host, loopback only (default 127.0.0.1)",
        "HOST",
    );
    o.optopt("P", "port", "server port (default 21)", "PORT");
    o.optopt("u", "user", "user name (default anonymous)", "USER");
    o.optopt("p", "pass", "password (default ftpbench@)", "PASS");
    o.optopt(
        "b",
        "benchmark",
        "transfer | concurrence | all | ftps | sessions, or a comma list of stor,retr,list,logins,many-retr,many-stor (default transfer)",
        "WHAT",
    );
    o.optopt(
        "n",
        "clients",
        "clients of the concurrence benchmark (default 200)",
        "N",
    );
    o.optopt(
        "s",
        "filesize",
        "file size per client in concurrence (default 4M)",
        "SIZE",
    );
    o.optopt(
        "k",
        "pid",
        "server pid: report PSS of it and its descendants",
        "PID",
    );
    o.optopt(
        "",
        "cgroup",
        "the server's own cgroup (v1 cpuacct or v2 directory): its CPU from there",
        "DIR",
    );
    o.optopt(
        "t",
        "timeout",
        "socket timeout in seconds (default 30)",
        "SECS",
    );
    o.optopt(
        "",
        "transfer-size",
        "one-client STOR/RETR file size (default 512M)",
        "SIZE",
    );
    o.optopt(
        "",
        "duration",
        "seconds per rate measurement (default 2)",
        "SECS",
    );
    o.optopt(
        "",
        "buffer",
        "transfer read/write size (default 256K)",
        "SIZE",
    );
    o.optopt(
        "",
        "list-dir",
        "directory for LIST/MLSD (default ftpbench-list)",
        "DIR",
    );
    o.optopt(
        "",
        "list-files",
        "files expected in it (default 10000)",
        "N",
    );
    o.optopt(
        "",
        "list-reps",
        "LIST/MLSD repetitions, median kept (default 3)",
        "N",
    );
    o.optopt(
        "",
        "conn-threads",
        "clients connecting at once (default 16)",
        "N",
    );
    o.optopt(
        "",
        "phase-limit",
        "seconds any one phase may take (default 120)",
        "SECS",
    );
    o.optopt(
        "",
        "sendfile-chunk",
        "bytes per sendfile(2) call in --loopback-limit (default 1G)",
        "SIZE",
    );
    o.optopt(
        "",
        "soak",
        "no benchmark: -n sessions of mixed operations for SECS, with -k PID's fds, threads and memory",
        "SECS",
    );
    o.optflag(
        "",
        "tls",
        "explicit FTPS for every workload (AUTH TLS, PBSZ 0, PROT P)",
    );
    o.optopt(
        "",
        "tls-clients",
        "clients of the concurrent FTPS logins of -b ftps (default 100)",
        "N",
    );
    o.optopt(
        "",
        "sessions",
        "steps of -b sessions, sessions held at once (default 1000,5000,10000)",
        "N,N,...",
    );
    o.optopt(
        "",
        "list-batch",
        "sessions listing at once in -b sessions (default 1000)",
        "N",
    );
    o.optopt(
        "",
        "key-suffix",
        "appended to every result key (e.g. _ecdsa), so runs can share a CSV",
        "SUFFIX",
    );
    o.optflag("", "pasv", "use PASV instead of EPSV");
    o.optflag(
        "",
        "csv",
        "human lines on stderr, key,value,unit,label CSV on stdout",
    );
    o.optflag("", "json", "human lines on stderr, a JSON array on stdout");
    o.optflag(
        "",
        "loopback-limit",
        "no server: measure loopback sendfile, write and connect rates",
    );
    o.optflag("h", "help", "this help");
    o
}

/// The usage text.
pub fn usage(o: &getopts::Options) -> String {
    o.usage(
        "Usage: ftpbench -u USER -p PASS [-H HOST] [-P PORT] [-b transfer|concurrence|all] \
         [-n CLIENTS] [-s SIZE] [-k PID] [--csv|--json]\n       ftpbench --loopback-limit",
    )
}

/// "4M", "256K", "1G", "1000" → bytes (binary multiples, like pyftpdlib's human2bytes).
///
/// # Errors
/// Not a number with an optional K/M/G/B suffix.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M') => (&s[..s.len() - 1], 1 << 20),
        Some('G') => (&s[..s.len() - 1], 1 << 30),
        Some('B') => (&s[..s.len() - 1], 1),
        _ => (s, 1),
    };
    let n: f64 = num.parse().map_err(|_| format!("bad size {s:?}"))?;
    if !(n.is_finite() && n >= 0.0) {
        return Err(format!("bad size {s:?}"));
    }
    Ok((n * mult as f64) as u64)
}

/// "1000,5000,10000" → the numbers.
///
/// # Errors
/// A part that is not a number.
pub fn parse_list(s: &str) -> Result<Vec<usize>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().map_err(|_| format!("bad number {p:?} in {s:?}")))
        .collect()
}

/// A numeric flag, or `default`.
///
/// # Errors
/// The value does not parse.
pub fn opt_num<T: std::str::FromStr>(
    m: &getopts::Matches,
    name: &str,
    default: T,
) -> Result<T, String> {
    match m.opt_str(name) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| format!("bad value for --{name}: {v:?}")),
    }
}

/// A size flag (`4M`), or `default`.
///
/// # Errors
/// The value does not parse.
pub fn opt_size(m: &getopts::Matches, name: &str, default: u64) -> Result<u64, String> {
    m.opt_str(name).map_or(Ok(default), |v| parse_size(&v))
}

/// Bytes as `4M`, `256K`, `1G` when exact, else `123B`.
pub fn human_size(n: u64) -> String {
    if n >= 1 << 30 && n % (1 << 30) == 0 {
        format!("{}G", n >> 30)
    } else if n >= 1 << 20 && n % (1 << 20) == 0 {
        format!("{}M", n >> 20)
    } else if n >= 1 << 10 && n % (1 << 10) == 0 {
        format!("{}K", n >> 10)
    } else {
        format!("{n}B")
    }
}

/// Which workloads `-b` asked for: `transfer` (stor, retr, list, logins), `concurrence`, `all`
/// (both), `ftps` (the FTPS phases), `sessions` (the many-sessions curve), or a
/// comma-separated mix of those and the single names.
pub struct Selection {
    pub stor: bool,
    pub retr: bool,
    pub list: bool,
    pub logins: bool,
    pub concurrence: bool,
    /// Only the concurrent RETR of the concurrence phase (with its connect and QUIT).
    pub many_retr: bool,
    /// Only the concurrent STOR of the concurrence phase (with its connect and QUIT).
    pub many_stor: bool,
    pub ftps: bool,
    pub sessions: bool,
}

impl Selection {
    /// True when a workload other than `ftps` was asked for.
    pub fn any_plain(&self) -> bool {
        self.stor
            || self.retr
            || self.list
            || self.logins
            || self.concurrence
            || self.many_retr
            || self.many_stor
            || self.sessions
    }
}

impl Selection {
    /// Parses the `-b` value.
    ///
    /// # Errors
    /// An unknown workload name.
    pub fn parse(s: &str) -> Result<Selection, String> {
        let mut sel = Selection {
            stor: false,
            retr: false,
            list: false,
            logins: false,
            concurrence: false,
            many_retr: false,
            many_stor: false,
            ftps: false,
            sessions: false,
        };
        for part in s.split(',').map(str::trim) {
            match part {
                "transfer" | "all" => {
                    (sel.stor, sel.retr, sel.list, sel.logins) = (true, true, true, true);
                    sel.concurrence |= part == "all";
                }
                "concurrence" => sel.concurrence = true,
                "many-retr" => sel.many_retr = true,
                "many-stor" => sel.many_stor = true,
                "ftps" => sel.ftps = true,
                "sessions" => sel.sessions = true,
                // pyftpdlib's ftpbench calls them upload and download.
                "stor" | "upload" => sel.stor = true,
                "retr" | "download" => sel.retr = true,
                "list" => sel.list = true,
                "logins" => sel.logins = true,
                other => return Err(format!("unknown benchmark {other:?}")),
            }
        }
        Ok(sel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4M").unwrap(), 4 << 20);
        assert_eq!(parse_size("256k").unwrap(), 256 << 10);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("x").is_err());
        assert_eq!(human_size(4 << 20), "4M");
    }

    #[test]
    fn selections() {
        let s = Selection::parse("all").unwrap();
        assert!(s.stor && s.retr && s.list && s.logins && s.concurrence);
        let s = Selection::parse("transfer").unwrap();
        assert!(s.stor && s.retr && s.list && s.logins && !s.concurrence);
        let s = Selection::parse("retr, logins").unwrap();
        assert!(!s.stor && s.retr && !s.list && s.logins && !s.concurrence);
        assert!(Selection::parse("download").unwrap().retr);
        let s = Selection::parse("ftps").unwrap();
        assert!(s.ftps && !s.any_plain());
        assert!(Selection::parse("sessions").unwrap().sessions);
        let s = Selection::parse("many-stor").unwrap();
        assert!(s.many_stor && !s.many_retr && !s.concurrence && s.any_plain());
        assert_eq!(
            parse_list("1000, 5000,10000").unwrap(),
            vec![1000, 5000, 10000]
        );
        assert!(parse_list("1k").is_err());
        assert!(Selection::parse("nope").is_err());
    }
}
