//! A dynamic TFTP server (fbtftp's grub2 example): `grub/grub.cfg-<MAC or IP>` is generated
//! per machine on the fly, everything else is served from a directory, and both stats
//! callbacks print what happened. RFC 1350/2347/2348/2349/7440 via `ftpdlib::tftp`.
//!
//! Run: `cargo run --example tftp_dynamic -- [ROOT] [PORT]` then
//! `curl tftp://127.0.0.1:6969/grub/grub.cfg-01-aa-bb-cc-dd-ee-ff`.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ftpdlib::tftp::{
    BytesResponseData, FileResponseData, RequestInfo, ResponseData, ServerStats, SessionStats,
    TftpHandler, TftpServer,
};

/// Generates grub2 configurations and serves the rest from `root`.
struct BootHandler {
    root: PathBuf,
}

/// The boot entry of one machine; a real deployment would look the machine up in an
/// inventory service here.
fn grub_config(machine: &str, req: &RequestInfo) -> String {
    format!(
        "# generated for {machine} (request from {})\n\
         set timeout=3\n\
         menuentry \"install {machine}\" {{\n\
         \tlinux /images/vmlinuz hostname={machine} console=ttyS0\n\
         \tinitrd /images/initrd.img\n\
         }}\n",
        req.peer
    )
}

impl TftpHandler for BootHandler {
    fn get_response_data(&mut self, req: &RequestInfo) -> io::Result<Box<dyn ResponseData>> {
        let path = req.path.trim_start_matches('/');
        if let Some(machine) = path.strip_prefix("grub/grub.cfg-") {
            // Only what a MAC or an IP looks like: this text ends up in a boot config.
            if machine.is_empty()
                || !machine
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || "-:.".contains(c))
            {
                return Err(io::Error::new(io::ErrorKind::NotFound, "unknown machine"));
            }
            return Ok(Box::new(BytesResponseData::new(grub_config(machine, req))));
        }
        Ok(Box::new(FileResponseData::open(&self.root, path)?))
    }

    fn session_stats_callback(&mut self, s: &SessionStats) {
        println!(
            "session: {} {} {} bytes in {:?}, {} packets, {} retransmits, options {:?}{}",
            s.peer,
            s.file_path,
            s.bytes_sent,
            s.duration,
            s.packets_sent,
            s.retransmits,
            s.negotiated,
            s.error
                .as_deref()
                .map(|e| format!(", error: {e}"))
                .unwrap_or_default()
        );
    }
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let root = PathBuf::from(args.next().unwrap_or_else(|| ".".into()));
    let port = match args.next().map(|p| p.parse::<u16>()) {
        None => 6969,
        Some(Ok(p)) => p,
        Some(Err(e)) => return Err(io::Error::new(io::ErrorKind::InvalidInput, e)),
    };
    let factory_root = root.clone();
    let mut server = TftpServer::new(Arc::new(
        move |_req: &RequestInfo| -> Box<dyn TftpHandler> {
            Box::new(BootHandler {
                root: factory_root.clone(),
            })
        },
    ));
    server.address = "127.0.0.1"
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    server.port = port;
    server.stats_interval = Duration::from_secs(10);
    server.server_stats_callback = Some(Arc::new(|stats: &ServerStats| {
        println!(
            "server stats (last {:?}): {:?}",
            stats.interval,
            stats.get_and_reset_all_counters()
        );
    }));
    let bound = server.bind()?;
    println!(
        "serving {} and generated grub configs on {}",
        root.display(),
        bound.local_addr()
    );
    bound.serve_forever()
}
