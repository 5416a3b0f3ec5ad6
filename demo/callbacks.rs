//! Event callbacks and a custom command (pyftpdlib's `on_*` hooks and a `proto_cmds`
//! extension): logs logins and finished transfers, and adds `SITE USAGE`, which reports how
//! many bytes the user's home holds.
//!
//! Run: `cargo run --example callbacks -- [DIR] [ADDRESS]` (default `.` on 127.0.0.1:2121),
//! then
//! `curl -Q 'SITE USAGE' ftp://user:12345@127.0.0.1:2121/`.

use std::path::Path;
use std::sync::Arc;

use ftpdlib::authorizers::DummyAuthorizer;
use ftpdlib::handlers::{Arg, Callbacks, Command, FtpHandler};
use ftpdlib::servers::FtpServer;

/// One value per connection: state here needs no lock.
#[derive(Default)]
struct Audit {
    user: String,
    files: u32,
}

impl Callbacks for Audit {
    fn on_login(&mut self, username: &str) {
        // A callback may block (a database insert, say): only this session waits.
        self.user = username.to_string();
        println!("{username} logged in");
    }
    fn on_file_received(&mut self, path: &Path) {
        self.files += 1;
        println!(
            "{} uploaded {} ({} so far)",
            self.user,
            path.display(),
            self.files
        );
    }
    fn on_incomplete_file_received(&mut self, path: &Path) {
        // The partial file stays; remove it, as pyftpdlib's demo does.
        let _ = std::fs::remove_file(path);
        println!(
            "{} aborted an upload; removed {}",
            self.user,
            path.display()
        );
    }
    fn on_file_sent(&mut self, path: &Path) {
        println!("{} downloaded {}", self.user, path.display());
    }
    fn on_logout(&mut self, username: &str) {
        println!("{username} logged out after {} uploads", self.files);
    }
}

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => dir_size(&e.path()),
                    Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
                    _ => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    // `[DIR] [ADDRESS]`: loopback unless told otherwise (`0.0.0.0:2121` serves the network).
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| ".".into());
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:2121".into());
    let mut auth = DummyAuthorizer::new();
    auth.add_user("user", "12345", &dir, "elradfmwMT")?;
    let mut handler = FtpHandler::new(Arc::new(auth));
    handler.set_callbacks(Audit::default);
    // A custom command: needs login, takes no argument, shows in HELP and SITE HELP.
    handler.add_command(
        Command::new(
            "SITE USAGE",
            "Syntax: SITE USAGE (bytes used in your home).",
            |s, _req| {
                let root = s.fs().map(|f| f.root().to_path_buf());
                match root {
                    Some(root) => {
                        let n = dir_size(&root);
                        s.reply(200, &format!("{n} bytes used."))
                    }
                    None => s.reply(550, "No filesystem."),
                }
            },
        )
        .arg(Arg::Forbidden),
    );
    let mut server = FtpServer::new(addr.as_str(), handler)?;
    server.stop_on_signals()?;
    server.serve_forever()?;
    Ok(())
}
