//! A throw-away PostgreSQL server for tests: Debian's binaries (`/usr/lib/postgresql/*/bin`),
//! a cluster made by `initdb` in a temp dir, listening on 127.0.0.1 on a free port and on a
//! Unix socket in the same dir, trust authentication, fsync off. As root the server runs as
//! `nobody` (PostgreSQL refuses root). Stopped and removed on drop.
//!
//! [`PgCluster::start`] returns `None` after printing why when PostgreSQL is not installed,
//! and panics instead when `CI=true` (CI installs it: .ci/run).

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running (or stopped, see [`PgCluster::stop`]) PostgreSQL server.
pub struct PgCluster {
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// uid/gid to run as (root runs it as nobody).
    ids: Option<(u32, u32)>,
    child: Option<Child>,
}

/// The newest `/usr/lib/postgresql/N/bin` with `initdb` and `postgres`.
fn bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").exists() && bin.join("postgres").exists()).then_some((v, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, b)| b)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl PgCluster {
    /// A new cluster, started; `None` (after saying why) without PostgreSQL, unless CI.
    pub fn start() -> Option<PgCluster> {
        let Some(bin) = bin_dir() else {
            let why = "PostgreSQL binaries not found in /usr/lib/postgresql/*/bin \
                       (apt-get install postgresql)";
            super::missing(why);
            return None;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let ids = nix::unistd::Uid::effective()
            .is_root()
            .then_some((65534, 65534));
        if let Some((uid, gid)) = ids {
            nix::unistd::chown(
                dir.path(),
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            )
            .expect("chown the cluster dir to nobody");
        }
        let mut pg = PgCluster {
            port: 0,
            bin,
            dir,
            ids,
            child: None,
        };
        let st = pg
            .command("initdb")
            .args(["-U", "postgres", "-A", "trust", "--no-locale", "-E", "UTF8"])
            .args(["--no-sync", "-D"])
            .arg(pg.data())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("run initdb");
        assert!(
            st.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&st.stderr)
        );
        // A port taken between the probe and the bind: try another.
        for _ in 0..5 {
            pg.port = free_port();
            if pg.try_start() {
                return Some(pg);
            }
        }
        panic!("PostgreSQL did not start:\n{}", pg.log());
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, prog: &str) -> Command {
        let mut c = Command::new(self.bin.join(prog));
        if let Some((uid, gid)) = self.ids {
            c.uid(uid).gid(gid);
        }
        c.current_dir(self.dir.path()).env_remove("PGDATA");
        c
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    fn try_start(&mut self) -> bool {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("postgres.log"))
            .expect("log file");
        if let Some((uid, gid)) = self.ids {
            let _ = nix::unistd::chown(
                &self.dir.path().join("postgres.log"),
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            );
        }
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path())
            .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
            .args(["-c", "max_connections=150"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start postgres");
        self.child = Some(child);
        self.wait_ready()
    }

    /// Waits (at most 60 s) until the server accepts queries; false if it exited.
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(_)) = c.try_wait() {
                    self.child = None;
                    return false;
                }
            }
            let ok = self
                .command("pg_isready")
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// Runs SQL with psql (as the superuser `postgres`); panics on an error.
    pub fn psql(&self, sql: &str) -> String {
        let out = self
            .command("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-c", sql])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Stops the server (fast shutdown: sessions are ended), keeping its data.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the stopped server again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        for _ in 0..50 {
            if self.try_start() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("PostgreSQL did not restart:\n{}", self.log());
    }

    /// The directory of the Unix socket (`host=` in a URL).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
    }
}
