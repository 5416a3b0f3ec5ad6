//! The table of command-line flags, in the groups `--help` shows them in. It feeds both the
//! getopts parser and the help text, so a new flag is one row here (plus the line in
//! `args.rs` that reads its value into [`Options`](super::Options)).

/// One command-line flag.
pub(super) struct Flag {
    /// One-letter name, or "".
    short: &'static str,
    /// Long name; values are looked up by it.
    long: &'static str,
    /// The value's placeholder (`PORT`), or "" for a switch without a value.
    value: &'static str,
    /// What it does.
    help: &'static str,
    /// The default `--help` shows, or "".
    default: &'static str,
}

/// A row of the table.
const fn flag(
    short: &'static str,
    long: &'static str,
    value: &'static str,
    help: &'static str,
    default: &'static str,
) -> Flag {
    Flag {
        short,
        long,
        value,
        help,
        default,
    }
}

/// `python3 -m pyftpdlib`'s own flags: same names, meanings and defaults, in its order.
const MAIN: &[Flag] = &[
    flag("h", "help", "", "show this help message and exit", ""),
    flag(
        "i",
        "interface",
        "ADDRESS",
        "specify the interface to run on: an address or a host name",
        "all interfaces, IPv4 and IPv6",
    ),
    flag("p", "port", "PORT", "specify port number to run on", "2121"),
    flag(
        "w",
        "write",
        "",
        "grants write access for logged in user",
        "read-only",
    ),
    flag(
        "d",
        "directory",
        "FOLDER",
        "specify the directory to share",
        "current directory",
    ),
    flag(
        "n",
        "nat-address",
        "ADDRESS",
        "the NAT address (or host name) to use for passive connections",
        "",
    ),
    flag(
        "r",
        "range",
        "FROM-TO",
        "the range of TCP ports to use for passive connections (e.g. -r 8000-9000)",
        "any free port",
    ),
    flag(
        "D",
        "debug",
        "",
        "enable DEBUG logging level: -V plus data-channel setup",
        "",
    ),
    flag("v", "version", "", "print ftpdlib version and exit", ""),
    flag(
        "V",
        "verbose",
        "",
        "activate a more verbose logging: each command and reply",
        "",
    ),
    flag(
        "u",
        "username",
        "USERNAME",
        "specify username to login with (anonymous login will be disabled and password \
         required if supplied)",
        "",
    ),
    flag(
        "P",
        "password",
        "PASSWORD",
        "specify a password to login with (needs -u)",
        "",
    ),
    flag(
        "",
        "banner",
        "TEXT",
        "the message sent when client connects",
        "",
    ),
    flag(
        "",
        "permit-foreign-addresses",
        "",
        "allow data connections from/to foreign IP addresses (FXP)",
        "",
    ),
    flag(
        "",
        "permit-privileged-ports",
        "",
        "allow data connections (PORT) to privileged ports",
        "",
    ),
    flag(
        "",
        "encoding",
        "ENCODING",
        "the encoding used for client / server communication",
        "utf8",
    ),
    flag(
        "",
        "use-localtime",
        "",
        "display directory listings with the time in your local time zone",
        "GMT",
    ),
    flag(
        "",
        "disable-sendfile",
        "",
        "copy downloads through a buffer instead of sendfile(2) (zero-copy)",
        "",
    ),
    flag(
        "",
        "no-batch-scheduling",
        "",
        "keep logged-in sessions' threads under SCHED_OTHER instead of SCHED_BATCH",
        "",
    ),
];

/// FTPS: pyftpdlib's `TLS_FTPHandler` settings.
const TLS: &[Flag] = &[
    flag(
        "",
        "tls",
        "",
        "enable FTPS (AUTH TLS, PROT P); needs --certfile",
        "",
    ),
    flag(
        "",
        "certfile",
        "FILE",
        "the PEM certificate chain for FTPS (may contain the key too)",
        "",
    ),
    flag(
        "",
        "keyfile",
        "FILE",
        "the PEM private key for FTPS",
        "read from --certfile",
    ),
    flag(
        "",
        "tls-control-required",
        "",
        "impose TLS for the control connection (USER/PASS before AUTH refused)",
        "",
    ),
    flag(
        "",
        "tls-data-required",
        "",
        "impose TLS for the data connection (transfers without PROT P refused)",
        "",
    ),
    flag(
        "",
        "implicit-tls",
        "",
        "implicit FTPS: TLS from the first byte (usually port 990); implies --tls",
        "",
    ),
    flag(
        "",
        "disable-tls-reuse-check",
        "",
        "accept PROT P data connections that do not resume the control TLS session",
        "",
    ),
    flag(
        "",
        "data-handshake-timeout",
        "SECS",
        "time a client has to complete the TLS handshake of a data connection (425 after)",
        "10",
    ),
];

/// How the server runs: concurrency model, service managers, identity, shutdown.
const DEPLOYMENT: &[Flag] = &[
    flag(
        "",
        "concurrency",
        "MODEL",
        "concurrency model: pool ('async' is a synonym), multi-thread, multi-proc, pre-fork",
        "pool",
    ),
    flag(
        "",
        "workers",
        "N",
        "worker processes of --concurrency pre-fork",
        "number of CPUs",
    ),
    flag(
        "I",
        "inetd",
        "",
        "inetd \"nowait\" service: serve the connection on stdin, then exit",
        "",
    ),
    flag(
        "W",
        "inetd-wait",
        "",
        "inetd \"wait\" service: serve the listening socket on stdin",
        "",
    ),
    flag(
        "t",
        "idle-timeout",
        "SECS",
        "with -W (or systemd socket activation): exit after SECS with no client",
        "0 = never",
    ),
    flag(
        "",
        "user",
        "NAME",
        "switch to this account once the port is bound (when started as root)",
        "",
    ),
    flag(
        "",
        "unix-users",
        "",
        "log in system accounts with their passwords, in their homes, as themselves \
         (needs root)",
        "",
    ),
    flag(
        "",
        "users-db",
        "URL",
        "serve the users of a database: sqlite:PATH or postgres://USER@HOST/DB (@FILE: \
         read it from FILE); manage them with `ftpdlib users`",
        "",
    ),
    flag(
        "",
        "chroot-local-user",
        "",
        "with --unix-users: jail each account in its home directory",
        "off",
    ),
    flag(
        "",
        "umask",
        "MASK",
        "octal umask of uploaded files and new directories",
        "022",
    ),
    flag(
        "",
        "atomic-uploads",
        "",
        "upload to a hidden temporary file renamed over the name when complete (readers \
         never see a partial file)",
        "off",
    ),
    flag(
        "",
        "proxy-protocol",
        "",
        "behind a TCP load balancer: every connection must come from a --trusted-proxy and \
         start with a PROXY protocol v1 or v2 header naming the client",
        "off",
    ),
    flag(
        "",
        "trusted-proxy",
        "CIDR",
        "a balancer allowed to send PROXY headers: an address or ADDRESS/PREFIX; repeatable",
        "",
    ),
    flag(
        "",
        "shutdown-grace",
        "SECS",
        "seconds running transfers may go on after SIGTERM/SIGINT",
        "10",
    ),
];

/// Timeouts, connection counts and transfer rates. A RATE is bytes per second, or a number
/// with `K`, `M` or `G` (K = 1024).
const LIMITS: &[Flag] = &[
    flag(
        "",
        "timeout",
        "SECS",
        "control and data connection timeout in seconds (control: from the last \
         complete command line)",
        "300; 0 = none",
    ),
    flag(
        "",
        "login-timeout",
        "SECS",
        "seconds a connection may take to log in",
        "60; 0 = none",
    ),
    flag(
        "",
        "max-cons",
        "N",
        "max number of simultaneous connections",
        "512; 0 = unlimited",
    ),
    flag(
        "",
        "max-cons-per-ip",
        "N",
        "maximum number connections from the same IP address",
        "0 = unlimited",
    ),
    flag(
        "",
        "max-login-attempts",
        "N",
        "max number of failed authentications before disconnect",
        "3",
    ),
    flag(
        "",
        "ban-failures",
        "N",
        "failed logins from one address, across its sessions, that ban it",
        "5; 0 = no bans",
    ),
    flag(
        "",
        "ban-find-time",
        "SECS",
        "seconds in which --ban-failures failed logins ban an address",
        "600",
    ),
    flag(
        "",
        "ban-time",
        "SECS",
        "seconds a banned address gets 421 at connect",
        "600",
    ),
    flag(
        "",
        "read-limit",
        "RATE",
        "max upload speed per session, bytes/s (e.g. 500K, 10M)",
        "0 = unlimited",
    ),
    flag(
        "",
        "write-limit",
        "RATE",
        "max download speed per session, bytes/s (e.g. 500K, 10M)",
        "0 = unlimited",
    ),
    flag(
        "",
        "user-read-limit",
        "RATE",
        "max upload speed shared by all sessions of a user, bytes/s",
        "0",
    ),
    flag(
        "",
        "user-write-limit",
        "RATE",
        "max download speed shared by all sessions of a user, bytes/s",
        "0",
    ),
    flag(
        "",
        "max-read-rate",
        "RATE",
        "max upload speed shared by all sessions of the server, bytes/s",
        "0",
    ),
    flag(
        "",
        "max-write-rate",
        "RATE",
        "max download speed shared by all sessions of the server, bytes/s",
        "0",
    ),
];

/// What an operator reads: log files, the transfer log, stats and metrics.
const OPERATING: &[Flag] = &[
    flag(
        "",
        "log-file",
        "FILE",
        "append the log to FILE instead of stderr; SIGHUP reopens it (logrotate)",
        "stderr",
    ),
    flag(
        "",
        "xferlog",
        "FILE",
        "log each file transfer to FILE in the wu-ftpd/vsftpd xferlog format; SIGHUP \
         reopens it",
        "",
    ),
    flag(
        "",
        "metrics",
        "ADDR:PORT",
        "serve Prometheus metrics at http://ADDR:PORT/metrics (its own port, never the FTP \
         port)",
        "off",
    ),
    flag(
        "",
        "stats-interval",
        "SECS",
        "log the server's counters every SECS seconds",
        "0 = never",
    ),
];

/// The groups of `--help`, in order (pyftpdlib shows its main flags, then its TLS flags).
const GROUPS: &[(&str, &[Flag])] = &[
    ("Main options", MAIN),
    ("TLS (FTPS) options", TLS),
    ("Deployment options", DEPLOYMENT),
    ("Limits", LIMITS),
    ("Logs and metrics", OPERATING),
];

const USAGE: &str = "Usage: ftpdlib [options]\n       ftpdlib users COMMAND ... (users in a database: ftpdlib users --help)\n\nStart a stand alone anonymous FTP server.\n";

/// The getopts parser for the table.
pub(super) fn parser() -> getopts::Options {
    let mut o = getopts::Options::new();
    for f in GROUPS.iter().flat_map(|(_, flags)| flags.iter()) {
        let help = match f.default {
            "" => f.help.to_string(),
            d => format!("{} (default: {d})", f.help),
        };
        if f.value.is_empty() {
            o.optflagmulti(f.short, f.long, &help);
        } else {
            // Repeatable: the last value wins (args.rs), as with pyftpdlib's argparse.
            o.optmulti(f.short, f.long, &help, f.value);
        }
    }
    o
}

/// The `--help` text: getopts' aligned rows (in table order) under the group titles.
pub(super) fn usage() -> String {
    parser().usage_with_format(|rows| {
        let mut out = String::from(USAGE);
        for (title, flags) in GROUPS {
            out.push_str(&format!("\n{title}:\n"));
            for row in (0..flags.len()).filter_map(|_| rows.next()) {
                for line in row.lines() {
                    out.push_str(line.trim_end());
                    out.push('\n');
                }
            }
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_once() {
        let mut seen = std::collections::HashSet::new();
        for f in GROUPS.iter().flat_map(|(_, flags)| flags.iter()) {
            assert!(seen.insert(f.long), "--{} twice", f.long);
            assert!(f.short.len() <= 1, "-{}", f.short);
            if !f.short.is_empty() {
                assert!(seen.insert(f.short), "-{} twice", f.short);
            }
        }
    }

    #[test]
    fn help_lists_every_flag_under_its_group() {
        let help = usage();
        for (title, flags) in GROUPS {
            let at = help.find(&format!("\n{title}:\n")).expect(title);
            for f in *flags {
                let row = help
                    .find(&format!("--{} ", f.long))
                    .or_else(|| help.find(&format!("--{}\n", f.long)));
                assert!(row.is_some_and(|r| r > at), "--{} under {title}", f.long);
            }
        }
    }
}
