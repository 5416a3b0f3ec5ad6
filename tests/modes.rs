//! File modes: SITE CHMOD sets permission bits only (never setuid, setgid or sticky, never
//! on the root, never an execute bit on an anonymous user's file), and uploads and new
//! directories get the configured umask (vsftpd's `local_umask`).

mod common;
use common::*;
use ftpdlib::servers::Executor;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

fn mode_of(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .expect("stat")
        .permissions()
        .mode()
        & 0o7777
}

fn site_chmod_sets_permission_bits_only(ex: Executor) {
    let s = start(ex);
    s.write("f", b"x");
    std::fs::create_dir(s.path("d")).expect("mkdir");
    std::fs::set_permissions(s.path("f"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let outside = tempfile::tempdir().expect("tempdir");
    let secret = outside.path().join("secret");
    std::fs::write(&secret, b"s").expect("write");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    symlink(&secret, s.path("out")).expect("symlink");
    symlink(".", s.path("self")).expect("symlink");
    let root_mode = mode_of(&s.root);
    let mut r = s.raw_login();
    for bad in ["6755 f", "4755 f", "2755 f", "1777 d", "7777 f"] {
        let (code, text) = r.cmd(&format!("SITE CHMOD {bad}"));
        assert_eq!(code, 550, "{bad}: {text}");
        assert!(text.contains("only permission bits"), "{text}");
    }
    assert_eq!(mode_of(&s.path("f")), 0o644);
    for root in ["/", ".", "d/..", "self"] {
        let (code, text) = r.cmd(&format!("SITE CHMOD 777 {root}"));
        assert_eq!(code, 550, "{root}: {text}");
    }
    assert_eq!(mode_of(&s.root), root_mode, "the root keeps its mode");
    let (code, text) = r.cmd("SITE CHMOD 777 out");
    assert_eq!(code, 550);
    assert!(text.contains("outside the user's root directory"), "{text}");
    assert_eq!(mode_of(&secret), 0o600);
    assert_eq!(r.cmd("SITE CHMOD 755 f").0, 200);
    assert_eq!(mode_of(&s.path("f")), 0o755);
    assert_eq!(r.cmd("SITE CHMOD 0700 d").0, 200);
    assert_eq!(mode_of(&s.path("d")), 0o700);
    assert_eq!(r.cmd("SITE CHMOD 99 f").0, 501);
}

fn anonymous_files_are_never_executable(ex: Executor) {
    let s = builder()
        .executor(ex)
        .auth(|a, root| {
            a.add_anonymous(root, "elradfmwMT").expect("anonymous");
        })
        .start();
    let mut c = s.anon();
    c.put_file("up", &mut &b"#!/bin/sh\n"[..]).expect("STOR");
    c.mkdir("dir").expect("MKD");
    drop(c);
    assert_eq!(
        mode_of(&s.path("up")) & 0o111,
        0,
        "uploads are not executable"
    );
    let mut r = s.raw();
    r.cmd("USER anonymous");
    assert_eq!(r.cmd("PASS x").0, 230);
    for m in ["755", "700", "711", "0100"] {
        let (code, text) = r.cmd(&format!("SITE CHMOD {m} up"));
        assert_eq!(code, 550, "{m}: {text}");
    }
    assert_eq!(mode_of(&s.path("up")) & 0o111, 0);
    assert_eq!(r.cmd("SITE CHMOD 600 up").0, 200);
    assert_eq!(mode_of(&s.path("up")), 0o600);
    assert_eq!(r.cmd("SITE CHMOD 700 dir").0, 200, "directories need x");
    assert_eq!(mode_of(&s.path("dir")), 0o700);
}

fn umask_applies_to_uploads_and_directories(ex: Executor) {
    let s = builder().executor(ex).handler(|h| h.umask = 0o077).start();
    let mut c = s.login();
    c.put_file("f", &mut &b"x"[..]).expect("STOR");
    c.append_file("g", &mut &b"y"[..]).expect("APPE");
    c.mkdir("d").expect("MKD");
    drop(c);
    assert_eq!(mode_of(&s.path("f")), 0o600);
    assert_eq!(mode_of(&s.path("g")), 0o600);
    assert_eq!(mode_of(&s.path("d")), 0o700);
    // STOU: mkstemp's 0600, less the umask.
    let mut r = s.raw_login();
    let _d = r.pasv();
    let (code, text) = r.cmd("STOU");
    assert!(code == 150 || code == 125, "{text}");
    drop(_d);
    r.reply();
    let name = text.trim_end().rsplit(' ').next().expect("FILE: name");
    assert_eq!(mode_of(&s.path(name)), 0o600);
    // An existing file keeps its mode when it is overwritten.
    std::fs::set_permissions(s.path("f"), std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let mut c = s.login();
    c.put_file("f", &mut &b"again"[..]).expect("STOR");
    assert_eq!(mode_of(&s.path("f")), 0o640);
}

/// The binary run as root with `-w` and no `--user`: the anonymous user writes as root, so a
/// setuid bit would make a setuid-root file. `--umask` gives exact modes (the binary's own
/// process umask is 0).
#[test]
fn as_root_anonymous_cannot_make_setuid_files() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: the binary must run as root for this test");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().canonicalize().expect("canonicalize");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ftpdlib"));
    cmd.args(["-i", "127.0.0.1", "-p", "0", "-w", "--umask", "002", "-d"])
        .arg(&root);
    let srv = BinServer::spawn(cmd, dir, root.clone());
    let mut r = raw_at(srv.addr);
    r.cmd("USER anonymous");
    assert_eq!(r.cmd("PASS x").0, 230);
    let mut d = r.pasv();
    assert!(matches!(r.cmd("STOR f").0, 125 | 150));
    std::io::Write::write_all(&mut d, b"#!/bin/sh\nid\n").expect("upload");
    drop(d);
    assert_eq!(r.reply().0, 226);
    assert_eq!(r.cmd("MKD d").0, 257);
    let (code, text) = r.cmd("SITE CHMOD 6755 f");
    assert_eq!(code, 550, "{text}");
    assert_eq!(r.cmd("SITE CHMOD 1777 /").0, 550);
    assert_eq!(r.cmd("SITE CHMOD 777 /").0, 550);
    assert_eq!(
        r.cmd("SITE CHMOD 755 f").0,
        550,
        "anonymous: no execute bit"
    );
    assert_eq!(mode_of(&root.join("f")), 0o664, "--umask 002, exactly");
    assert_eq!(mode_of(&root.join("d")), 0o775);
    assert_eq!(
        std::fs::metadata(&root).expect("stat").permissions().mode() & 0o7000,
        0
    );
    assert!(
        srv.wait_log("SITE CHMOD"),
        "refusals are logged: {}",
        srv.log()
    );
}

models!(
    site_chmod_sets_permission_bits_only,
    anonymous_files_are_never_executable,
    umask_applies_to_uploads_and_directories,
);
