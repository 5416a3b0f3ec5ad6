//! The log format of the `ftpdlib` and `tftpd` programs: `[L TIMESTAMP] message` on stderr,
//! pyftpdlib's shape (`[I 2024-05-01 12:00:00] ...`). Only the binaries set up a logger;
//! library users bring their own.

use std::io::Write;

/// Starts logging at `verbosity` (0 info, 1 debug, 2 trace) unless `RUST_LOG` says
/// otherwise. Only ftpdlib's own lines get more verbose: the libraries under it stay at
/// info, so `-D` shows each command, reply and data connection rather than the TLS
/// library's handshake internals. rustls is silent unless `RUST_LOG` names it: its lines
/// lack the session's prefix (and a build that compiles its logging in, as the test
/// builds do, would warn about clients sending an IP address as SNI).
pub(crate) fn init(verbosity: u8) {
    let filter = match verbosity {
        0 => "info",
        1 => "info,ftpdlib=debug",
        _ => "info,ftpdlib=trace",
    };
    let env = env_logger::Env::default().default_filter_or(filter);
    let _ = env_logger::Builder::new()
        .filter_module("rustls", log::LevelFilter::Off)
        .parse_env(env)
        .format(|buf, rec| {
            let l = rec.level().as_str().chars().next().unwrap_or('?');
            writeln!(buf, "[{l} {}] {}", buf.timestamp_seconds(), rec.args())
        })
        .target(env_logger::Target::Stderr)
        .try_init();
}
