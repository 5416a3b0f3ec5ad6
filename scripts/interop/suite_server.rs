//! The server pyftpdlib's functional test suite runs against (`tests/__init__.py`
//! `setup_server`): user `user`/`12345` with `elradfmwMT` plus read-only anonymous, both at the
//! directory given, a 1 ms `auth_failed_timeout` and 4 KiB buffers. The handler attributes the
//! suite patches come as `name=value` arguments. Not a demo: `scripts/interop/pyftpdlib_suite.sh`
//! starts it. Prints `PORT <n>` on stdout once listening.
//!
//! Usage: `pyftpdlib_suite_server DIR ADDR [name=value ...]`

use std::io::Write;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use ftpdlib::authorizers::DummyAuthorizer;
use ftpdlib::handlers::{Encoding, FtpHandler};
use ftpdlib::servers::{Executor, FtpServer};

fn secs(v: &str) -> Result<Option<Duration>, String> {
    let f: f64 = v.parse().map_err(|_| format!("bad seconds {v:?}"))?;
    Ok((f > 0.0).then(|| Duration::from_secs_f64(f)))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: DIR ADDR [name=value ...]")?;
    let addr = args.next().ok_or("usage: DIR ADDR [name=value ...]")?;

    let mut auth = DummyAuthorizer::new();
    auth.add_user("user", "12345", &dir, "elradfmwMT")?;
    auth.add_anonymous(&dir, "elr")?;
    let mut h = FtpHandler::new(Arc::new(auth));
    h.banner = "pyftpdlib ready.".into();
    h.auth_failed_timeout = Duration::from_millis(1);
    h.ac_in_buffer_size = 4096;
    h.ac_out_buffer_size = 4096;
    let (mut max_cons, mut max_cons_per_ip) = (0usize, 0usize);
    let mut executor = Executor::Pool;
    for a in args {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| format!("bad argument {a:?}"))?;
        match k {
            "timeout" => h.timeout = secs(v)?,
            "data_timeout" => h.data_timeout = secs(v)?,
            "passive_accept_timeout" => {
                h.passive_accept_timeout = secs(v)?.unwrap_or(Duration::ZERO)
            }
            "banner" => h.banner = v.to_owned(),
            "max_login_attempts" => h.max_login_attempts = v.parse()?,
            "auth_failed_timeout" => h.auth_failed_timeout = secs(v)?.unwrap_or(Duration::ZERO),
            "masquerade_address" => h.masquerade_address = Some(v.parse::<Ipv4Addr>()?),
            "masquerade_address_map" => {
                for pair in v.split(',') {
                    let (l, m) = pair.split_once('>').ok_or("map: LOCAL>MASQ,...")?;
                    h.masquerade_address_map.push((l.parse()?, m.parse()?));
                }
            }
            "passive_ports" => {
                let (a, b) = v.split_once('-').unwrap_or((v, v));
                h.passive_ports = Some(a.parse()?..=b.parse()?);
            }
            "permit_foreign_addresses" => h.permit_foreign_addresses = v == "1",
            "permit_privileged_ports" => h.permit_privileged_ports = v == "1",
            "use_gmt_times" => h.use_gmt_times = v == "1",
            "use_sendfile" => h.use_sendfile = v == "1",
            "encoding" => h.encoding = Encoding::parse(v).ok_or("bad encoding")?,
            "read_limit" => h.read_limit = v.parse()?,
            "write_limit" => h.write_limit = v.parse()?,
            "max_cons" => max_cons = v.parse()?,
            "max_cons_per_ip" => max_cons_per_ip = v.parse()?,
            "concurrency" => {
                executor = match v {
                    "pool" => Executor::Pool,
                    "multi-thread" => Executor::Thread,
                    _ => return Err(format!("unknown concurrency {v:?}").into()),
                }
            }
            _ => return Err(format!("unknown setting {k:?}").into()),
        }
    }
    let mut server = FtpServer::new(addr.as_str(), h)?.with_executor(executor);
    // pyftpdlib: 0 means unlimited.
    server.max_cons = max_cons; // 0: unlimited, as in pyftpdlib
    server.max_cons_per_ip = max_cons_per_ip;
    server.stop_on_signals()?;
    let port = server.local_addrs().first().map_or(0, |a| a.port());
    let mut out = std::io::stdout();
    writeln!(out, "PORT {port}")?;
    out.flush()?;
    server.serve_forever()?;
    Ok(())
}
