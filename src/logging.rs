//! The log format of the `ftpdlib` and `tftpd` programs: `[L TIMESTAMP] message` on stderr,
//! pyftpdlib's shape (`[I 2024-05-01 12:00:00] ...`). Only the binaries set up a logger;
//! library users bring their own.

use std::io::Write;

/// Starts logging at `verbosity` (0 info, 1 debug, 2 trace) unless `RUST_LOG` says
/// otherwise. Only ftpdlib's own lines get more verbose: the libraries under it stay at
/// info, so `-D` shows each command, reply and data connection rather than the TLS
/// library's handshake internals.
pub(crate) fn init(verbosity: u8) {
    let filter = match verbosity {
        0 => "info",
        1 => "info,ftpdlib=debug",
        _ => "info,ftpdlib=trace",
    };
    let env = env_logger::Env::default().default_filter_or(filter);
    let _ = env_logger::Builder::from_env(env)
        .format(|buf, rec| {
            let l = rec.level().as_str().chars().next().unwrap_or('?');
            writeln!(buf, "[{l} {}] {}", buf.timestamp_seconds(), rec.args())
        })
        .target(env_logger::Target::Stderr)
        .try_init();
}
