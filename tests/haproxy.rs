//! Two ftpdlib servers behind a real HAProxy (TCP mode, PROXY protocol v2, round robin,
//! health checks that read the 220 and send QUIT), sharing one user table (PostgreSQL with
//! the `postgres` feature, else one SQLite file) and one directory: Python's ftplib and
//! curl, connecting from 127.0.0.9, log in through the balancer, upload through one server
//! and download through the other with PASV and EPSV (each server's passive range relayed
//! by a frontend of its own, with a PROXY header too), and both servers see 127.0.0.9 as the
//! client. Skipped with a message without haproxy (or python3, curl, PostgreSQL); failing
//! instead when CI=true (.ci/run installs them). scripts/cluster.sh is the same by hand,
//! with three servers and the `ftpdlib users` CLI.
#![cfg(any(feature = "sqlite", feature = "postgres"))]

mod common;
use common::logs::logged;
use common::*;
use ftpdlib::authorizers::sql::{UserDb, UserRecord};
use ftpdlib::authorizers::{PermSet, SqlAuthorizer};
use ftpdlib::handlers::Callbacks;
use ftpdlib::proxy_protocol::ProxyProtocol;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CLIENT: &str = "127.0.0.9";
/// Passive ports per server.
const RANGE: u16 = 8;

/// The user table both servers read.
struct Users {
    url: String,
    #[cfg(feature = "postgres")]
    _pg: common::pg::PgCluster,
    _dir: Option<tempfile::TempDir>,
}

#[cfg(feature = "postgres")]
fn users() -> Option<Users> {
    let pg = common::pg::PgCluster::start()?;
    Some(Users {
        url: pg.url(),
        _pg: pg,
        _dir: None,
    })
}

#[cfg(not(feature = "postgres"))]
fn users() -> Option<Users> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("users.db").display());
    Some(Users {
        url,
        _dir: Some(dir),
    })
}

/// Who logged in on one server, and from where.
#[derive(Clone, Default)]
struct Logins(Arc<Mutex<Vec<(SocketAddr, String)>>>);

struct Recorder {
    peer: Option<SocketAddr>,
    logins: Logins,
}

impl Callbacks for Recorder {
    fn on_connect(&mut self, peer: SocketAddr) {
        self.peer = Some(peer);
    }
    fn on_login(&mut self, user: &str) {
        if let Some(p) = self.peer {
            self.logins.0.lock().unwrap().push((p, user.to_string()));
        }
    }
}

/// One ftpdlib server on `ip`, behind the balancer at 127.0.0.1, passive ports from `pasv`.
fn server(ip: &str, pasv: u16, url: &str, logins: &Logins) -> Server {
    let auth = SqlAuthorizer::open(url).expect("SqlAuthorizer");
    let logins = logins.clone();
    builder()
        .bind(&format!("{ip}:0"))
        .handler(move |h| {
            h.authorizer = Arc::new(auth);
            h.proxy_protocol = Some(ProxyProtocol::new(vec!["127.0.0.1".parse().unwrap()]));
            h.masquerade_address = Some(Ipv4Addr::LOCALHOST);
            h.passive_ports = Some(pasv..=pasv + RANGE - 1);
            h.set_callbacks(move || Recorder {
                peer: None,
                logins: logins.clone(),
            });
        })
        .start()
}

/// A running HAProxy, killed on drop; its log is kept for failure messages.
struct Haproxy {
    child: Child,
    dir: tempfile::TempDir,
}

impl Haproxy {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The balancer's configuration: the control port round robin over both servers with
/// PROXY v2 and FTP-aware health checks, and one frontend per server's passive range
/// (a server without a port is reached on the port the client asked for).
fn config(ctrl: u16, servers: &[(SocketAddr, u16)]) -> String {
    let mut c = String::from(
        "global\n  log stderr format raw local0 info\n\
         defaults\n  mode tcp\n  log global\n  option tcplog\n  timeout connect 5s\n  \
         timeout client 60s\n  timeout server 60s\n  timeout check 5s\n",
    );
    c.push_str(&format!(
        "frontend ftp\n  bind 127.0.0.1:{ctrl}\n  default_backend ftp\n\
         backend ftp\n  balance roundrobin\n  option tcp-check\n  \
         tcp-check expect string 220\n  tcp-check send-binary 515549540d0a\n  \
         tcp-check expect string 221\n  default-server send-proxy-v2 check inter 2s\n"
    ));
    for (i, (addr, _)) in servers.iter().enumerate() {
        c.push_str(&format!("  server ftp{i} {addr}\n"));
    }
    for (i, (addr, pasv)) in servers.iter().enumerate() {
        let end = pasv + RANGE - 1;
        c.push_str(&format!(
            "frontend pasv{i}\n  bind 127.0.0.1:{pasv}-{end}\n  default_backend pasv{i}\n\
             backend pasv{i}\n  server ftp{i} {} send-proxy-v2\n",
            addr.ip()
        ));
    }
    c
}

/// A base port whose next `n` ports are free on 127.0.0.1 now, below the ephemeral range
/// (so no port-0 bind elsewhere takes one meanwhile).
fn free_run(n: u16, salt: u32) -> u16 {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id()
        ^ salt.wrapping_mul(2_654_435_761);
    let mut base = 20_000 + (seed % 10_000) as u16;
    loop {
        if (base..base + n).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return base;
        }
        base = 20_000 + (base + n - 20_000) % 10_000;
    }
}

/// Starts HAProxy; `None` when it exited (a port was taken meanwhile).
fn haproxy(cfg: &str) -> Option<Haproxy> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let log = std::fs::File::create(dir.path().join("haproxy.log")).unwrap();
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start haproxy");
    let mut h = Haproxy { child, dir };
    let ctrl = cfg
        .split("bind 127.0.0.1:")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|p| p.parse::<u16>().ok())
        .expect("control port");
    let deadline = Instant::now() + IO_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = h.child.try_wait() {
            eprintln!("haproxy exited:\n{}", h.log());
            return None;
        }
        if let Ok(c) = TcpStream::connect(("127.0.0.1", ctrl)) {
            c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            if first_line(&c).starts_with("220") {
                return Some(h);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("haproxy did not start:\n{}", h.log());
}

/// Adds `name` at `home` with every permission (a cheap crypt hash: the test is about the
/// balancer).
fn add_user(url: &str, name: &str, password: &str, home: &Path) {
    let mut u = UserRecord::new(name, home);
    u.perm = PermSet::parse("elradfmwMT").unwrap();
    let hash = ftpdlib::authorizers::crypt(password, b"$5$rounds=1000$saltsalt$").unwrap();
    u.password_hash = String::from_utf8(hash).unwrap();
    UserDb::open(url).unwrap().add(&u).unwrap();
}

/// Python's ftplib from 127.0.0.9 (control and data): uploads through one session, reads
/// back through the next one (PASV: ftplib's default on IPv4).
const FTPLIB: &str = r#"
import ftplib, io, sys
port, src = int(sys.argv[1]), sys.argv[2]
data = bytes(range(256)) * 4000
def session():
    f = ftplib.FTP(source_address=(src, 0), timeout=20)
    f.connect("127.0.0.1", port)
    f.login("alice", "s3cret")
    return f
f = session()
f.storbinary("STOR shared.bin", io.BytesIO(data))
f.quit()
g = session()
buf = io.BytesIO()
g.retrbinary("RETR shared.bin", buf.write)
assert buf.getvalue() == data, "downloaded bytes differ"
print(" ".join(g.nlst()))
g.quit()
"#;

#[test]
fn two_servers_behind_haproxy_see_the_real_client() {
    if !tool("haproxy") || !tool("python3") || !tool("curl") {
        return;
    }
    let _ = logged("");
    let Some(db) = users() else { return };
    let homes = tempfile::tempdir().unwrap();
    let home = homes.path().canonicalize().unwrap();
    add_user(&db.url, "alice", "s3cret", &home);
    let (la, lb) = (Logins::default(), Logins::default());
    let mut started = None;
    for attempt in 0..5 {
        let pasv = free_run(2 * RANGE, attempt);
        let ctrl = free_run(1, attempt + 100);
        let a = server("127.0.0.2", pasv, &db.url, &la);
        let b = server("127.0.0.3", pasv + RANGE, &db.url, &lb);
        let cfg = config(ctrl, &[(a.addr, pasv), (b.addr, pasv + RANGE)]);
        if let Some(h) = haproxy(&cfg) {
            started = Some((h, ctrl, a, b));
            break;
        }
    }
    let (h, ctrl, _a, _b) = started.expect("haproxy never started");

    let out = Command::new("python3")
        .args(["-c", FTPLIB, &ctrl.to_string(), CLIENT])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ftplib: {}\nhaproxy: {}",
        String::from_utf8_lossy(&out.stderr),
        h.log()
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("shared.bin"));
    // EPSV (curl's default) and PASV, each through the balancer.
    for epsv in [true, false] {
        let mut curl = Command::new("curl");
        curl.args([
            "-sS",
            "--max-time",
            "30",
            "--interface",
            CLIENT,
            "-u",
            "alice:s3cret",
        ]);
        if !epsv {
            curl.arg("--disable-epsv");
        }
        let got = curl
            .arg(format!("ftp://127.0.0.1:{ctrl}/shared.bin"))
            .output()
            .unwrap();
        assert!(
            got.status.success(),
            "curl: {}",
            String::from_utf8_lossy(&got.stderr)
        );
        assert_eq!(got.stdout.len(), 256 * 4000, "epsv={epsv}");
    }

    let (a, b) = (la.0.lock().unwrap().clone(), lb.0.lock().unwrap().clone());
    assert!(
        !a.is_empty() && !b.is_empty(),
        "round robin reaches both servers: {a:?} {b:?}"
    );
    assert_eq!(a.len() + b.len(), 4);
    for (peer, user) in a.iter().chain(&b) {
        assert_eq!(
            peer.ip().to_string(),
            CLIENT,
            "the client, not the balancer"
        );
        assert_eq!(user, "alice");
    }
    assert_eq!(
        std::fs::read(home.join("shared.bin")).unwrap().len(),
        256 * 4000
    );
    // Health checks (LOCAL headers) and relayed data connections: nothing refused.
    let refused = logged("refused");
    let rejected = logged("rejected");
    assert!(
        refused.is_empty() && rejected.is_empty(),
        "{refused:?} {rejected:?}"
    );
}
