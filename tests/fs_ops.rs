//! Filesystem commands: CWD/XCWD, CDUP/XCUP, PWD/XPWD, MKD/XMKD, RMD/XRMD, DELE, RNFR/RNTO,
//! SIZE, MDTM, MFMT, SITE CHMOD.

mod common;
use common::*;
use ftpdlib::servers::Executor;
use std::os::unix::fs::PermissionsExt;

fn navigation(ex: Executor) {
    let s = start(ex);
    std::fs::create_dir_all(s.path("a/b")).unwrap();
    let mut c = s.login();
    c.cwd("a").unwrap();
    assert_eq!(c.pwd().unwrap(), "/a");
    c.cwd("b").unwrap();
    assert_eq!(c.pwd().unwrap(), "/a/b");
    c.cdup().unwrap();
    assert_eq!(c.pwd().unwrap(), "/a");
    c.cwd("/").unwrap();
    c.cdup().unwrap();
    assert_eq!(c.pwd().unwrap(), "/", "CDUP at the root stays at the root");
    assert!(c.cwd("nope").is_err());
    let mut r = s.raw_login();
    assert_eq!(r.cmd("XCWD a").0, 250);
    let (code, text) = r.cmd("XPWD");
    assert_eq!(
        (code, text.trim_end()),
        (257, "257 \"/a\" is the current directory.")
    );
    assert_eq!(r.cmd("XCUP").0, 250);
    assert_eq!(
        r.cmd("CWD").1.trim_end(),
        "250 \"/\" is the current directory."
    );
    let (code, text) = r.cmd("CWD nope");
    assert_eq!(
        (code, text.trim_end()),
        (550, "550 No such file or directory.")
    );
    s.write("file", b"x");
    assert_eq!(r.cmd("CWD file").0, 550, "CWD to a file");
    assert_eq!(r.cmd("PWD x").0, 501, "PWD takes no argument");
}

fn directories(ex: Executor) {
    let s = start(ex);
    let mut c = s.login();
    c.mkdir("d1").unwrap();
    assert!(s.path("d1").is_dir());
    let mut r = s.raw_login();
    let (code, text) = r.cmd("MKD d\"q");
    assert_eq!(
        (code, text.trim_end()),
        (257, "257 \"/d\"\"q\" directory created.")
    );
    assert_eq!(r.cmd("XMKD d2").0, 257);
    assert_eq!(r.cmd("MKD d2").0, 550, "exists");
    assert_eq!(r.cmd("XRMD d2").0, 250);
    c.rmdir("d1").unwrap();
    assert!(!s.path("d1").exists());
    s.write("full/f", b"x");
    assert_eq!(r.cmd("RMD full").0, 550, "not empty");
    let (code, text) = r.cmd("RMD /");
    assert_eq!(
        (code, text.trim_end()),
        (550, "550 Can't remove root directory.")
    );
    assert_eq!(r.cmd("MKD").0, 501);
}

fn delete_and_rename(ex: Executor) {
    let s = start(ex);
    s.write("f.txt", b"data");
    let mut c = s.login();
    c.rename("f.txt", "g.txt").unwrap();
    assert!(!s.path("f.txt").exists());
    assert_eq!(s.read("g.txt"), b"data");
    c.rm("g.txt").unwrap();
    assert!(!s.path("g.txt").exists());
    let mut r = s.raw_login();
    let (code, text) = r.cmd("RNTO x");
    assert_eq!(
        (code, text.trim_end()),
        (503, "503 Bad sequence of commands: use RNFR first.")
    );
    assert_eq!(r.cmd("RNFR missing").0, 550);
    s.write("h", b"");
    assert_eq!(r.cmd("RNFR h").0, 350);
    assert_eq!(r.cmd("RNTO sub/none/h").0, 550, "target dir missing");
    assert_eq!(r.cmd("RNTO h2").0, 503, "RNFR is used up by a failed RNTO");
    assert_eq!(
        r.cmd("RNFR /").1.trim_end(),
        "550 Can't rename home directory."
    );
    assert_eq!(r.cmd("DELE missing").0, 550);
    std::fs::create_dir(s.path("dir")).unwrap();
    assert_eq!(r.cmd("DELE dir").0, 550, "DELE of a directory");
    let (code, text) = r.cmd("DELE h");
    assert_eq!((code, text.trim_end()), (250, "250 File removed."));
}

fn size_mdtm_mfmt(ex: Executor) {
    let s = start(ex);
    s.write("f", &[7u8; 1234]);
    let mut c = s.login();
    assert_eq!(c.size("f").unwrap(), 1234);
    let mut r = s.raw_login();
    let (code, text) = r.cmd("SIZE f");
    assert_eq!(code, 550, "ASCII is the default type: {text}");
    assert!(text.contains("SIZE not allowed in ASCII mode"));
    r.cmd("TYPE I");
    assert_eq!(r.cmd("SIZE f").1.trim_end(), "213 1234");
    std::fs::create_dir(s.path("d")).unwrap();
    assert_eq!(r.cmd("SIZE d").1.trim_end(), "550 /d is not retrievable");
    let (code, text) = r.cmd("MFMT 20200102030405 f");
    assert_eq!(
        (code, text.trim_end()),
        (213, "213 Modify=20200102030405; /f.")
    );
    assert_eq!(r.cmd("MDTM f").1.trim_end(), "213 20200102030405");
    let mtime = std::fs::metadata(s.path("f")).unwrap().modified().unwrap();
    let secs = mtime
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(secs, 1_577_934_245);
    assert_eq!(r.cmd("MFMT 2020 f").0, 550);
    assert_eq!(r.cmd("MFMT 20201340030405 f").0, 550);
    assert_eq!(r.cmd("MFMT 20200102030405").0, 501, "needs two arguments");
    assert_eq!(r.cmd("MDTM missing").0, 550);
}

fn site_chmod(ex: Executor) {
    let s = start(ex);
    s.write("f", b"");
    let mut r = s.raw_login();
    let (code, text) = r.cmd("SITE CHMOD 640 f");
    assert_eq!((code, text.trim_end()), (200, "200 SITE CHMOD successful."));
    let mode = std::fs::metadata(s.path("f")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o640);
    assert_eq!(r.cmd("SITE CHMOD 999 f").0, 501);
    assert_eq!(r.cmd("SITE CHMOD 640").0, 501);
    assert_eq!(r.cmd("SITE CHMOD 640 missing").0, 550);
    assert_eq!(
        r.cmd("site chmod 600 f").0,
        200,
        "SITE verbs are case-insensitive"
    );
}

fn permissions_are_enforced(ex: Executor) {
    let s = builder()
        .executor(ex)
        .auth(|a, root| {
            a.add_user("ro", "pw", root, "elr").unwrap();
            std::fs::create_dir(root.join("up")).unwrap();
            a.override_perm("ro", root.join("up"), "elrw", false)
                .unwrap();
        })
        .start();
    s.write("f", b"x");
    let mut r = s.raw();
    r.cmd("USER ro");
    r.cmd("PASS pw");
    for cmd in [
        "DELE f",
        "MKD d",
        "RMD up",
        "RNFR f",
        "SITE CHMOD 600 f",
        "MFMT 20200101000000 f",
    ] {
        let (code, text) = r.cmd(cmd);
        assert_eq!(
            (code, text.trim_end()),
            (550, "550 Not enough privileges."),
            "{cmd}"
        );
    }
    assert!(s.path("f").exists());
    let mut c = s.connect();
    c.login("ro", "pw").unwrap();
    c.transfer_type(FileType::Binary).unwrap();
    assert!(c.put_file("nope.txt", &mut &b"x"[..]).is_err());
    c.put_file("up/yes.txt", &mut &b"ok"[..]).unwrap();
    assert_eq!(s.read("up/yes.txt"), b"ok");
}

models!(
    permissions_are_enforced;
    bin: navigation, directories, delete_and_rename, size_mdtm_mfmt, site_chmod,
);
