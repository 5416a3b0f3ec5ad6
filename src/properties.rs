//! Property tests (proptest) for the invariants the fuzz targets in scripts/fuzz check:
//! ftpnorm, resolution beneath a root on random trees with symlinks, the PORT/EPRT grammar,
//! control-line framing, TFTP packets, reply escaping and PROXY protocol headers. Case
//! counts are kept small so the whole file runs in a few seconds; scripts/fuzz.sh searches
//! for longer.
//!
//! The whole module is a test module: it may reach every part of the crate.

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    use std::path::{Path, PathBuf};

    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    use proptest::prelude::*;
    use proptest::test_runner::Config;

    use crate::beneath::{Resolver, RootDir};
    use crate::filesystems::path::ftpnorm;
    use crate::proto;

    /// `cases` cases, no failure files written into the source tree.
    fn config(cases: u32) -> Config {
        Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        }
    }

    /// Path segments that matter to normalisation and resolution, plus arbitrary bytes.
    fn segment() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => prop::sample::select(vec![
                "", ".", "..", "a", "b", "link", "out", "f", "...", " ", "a b", "\u{e9}"
            ])
            .prop_map(|s| s.as_bytes().to_vec()),
            1 => prop::collection::vec(any::<u8>().prop_filter("no slash", |b| *b != b'/'), 0..4),
        ]
    }

    fn vpath() -> impl Strategy<Value = Vec<u8>> {
        (any::<bool>(), prop::collection::vec(segment(), 0..8)).prop_map(|(abs, segs)| {
            let mut p = if abs { b"/".to_vec() } else { Vec::new() };
            p.extend(segs.join(&b'/'));
            p
        })
    }

    proptest! {
        #![proptest_config(config(512))]

        #[test]
        fn ftpnorm_is_absolute_normal_and_idempotent(cwd in vpath(), path in vpath()) {
            let n = ftpnorm(&cwd, &path);
            prop_assert!(n.starts_with(b"/"));
            if n != b"/" {
                for seg in n[1..].split(|&b| b == b'/') {
                    prop_assert!(!matches!(seg, b"" | b"." | b".."), "{:?}", n);
                }
            }
            prop_assert_eq!(ftpnorm(b"/", &n), n.clone());
            prop_assert_eq!(ftpnorm(&path, &n), n);
        }
    }

    /// One entry of a random tree beneath `root` (names from a small set, so paths meet them).
    #[derive(Debug, Clone)]
    enum Entry {
        Dir(Vec<u8>),
        File(Vec<u8>),
        /// A symlink and its target (relative, climbing, or absolute in or out of the root).
        Link(Vec<u8>, Vec<u8>),
    }

    fn entry() -> impl Strategy<Value = Entry> {
        let name = prop::collection::vec(prop::sample::select(vec!["a", "b", "link", "f"]), 1..3)
            .prop_map(|s| s.join("/").into_bytes());
        let target = prop_oneof![
            vpath().prop_filter("relative", |p| !p.starts_with(b"/")),
            Just(b"@OUT".to_vec()),
            Just(b"@ROOT/a".to_vec()),
            Just(b"/".to_vec()),
            Just(b"/proc/self/root".to_vec()),
        ];
        prop_oneof![
            name.clone().prop_map(Entry::Dir),
            name.clone().prop_map(Entry::File),
            (name, target).prop_map(|(n, t)| Entry::Link(n, t)),
        ]
    }

    /// Builds `base/root` from `entries` next to `base/out/secret`; entries that cannot be made
    /// (a parent that is a file) are skipped, as they would be on a real server.
    fn build(entries: &[Entry]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().canonicalize().expect("canonicalize");
        let root = base.join("root");
        std::fs::create_dir_all(base.join("out")).expect("mkdir out");
        std::fs::create_dir_all(&root).expect("mkdir root");
        std::fs::write(base.join("out/secret"), b"secret").expect("secret");
        let on_disk = |p: &[u8]| root.join(OsStr::from_bytes(p));
        for e in entries {
            let _ = match e {
                Entry::Dir(p) => std::fs::create_dir_all(on_disk(p)),
                Entry::File(p) => std::fs::write(on_disk(p), b"f"),
                Entry::Link(p, t) => {
                    let t = match t.as_slice() {
                        b"@OUT" => base.join("out"),
                        b"@ROOT/a" => root.join("a"),
                        t => PathBuf::from(OsStr::from_bytes(t)),
                    };
                    std::os::unix::fs::symlink(t, on_disk(p))
                }
            };
        }
        (dir, root)
    }

    /// Where `path` resolves beneath `r` (O_PATH), asserting it is inside `root`.
    fn landed(r: &RootDir, root: &Path, path: &[u8]) -> Option<PathBuf> {
        let fd = r
            .open_at(
                Path::new(OsStr::from_bytes(path)),
                OFlag::O_PATH,
                Mode::empty(),
            )
            .ok()?;
        let at = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("fd link");
        assert!(
            at.starts_with(root),
            "{path:?} resolved to {at:?}, outside {root:?}"
        );
        Some(at)
    }

    proptest! {
        #![proptest_config(config(48))]

        #[test]
        fn resolution_stays_beneath_the_root_or_is_refused(
            entries in prop::collection::vec(entry(), 0..12),
            paths in prop::collection::vec(vpath(), 1..16),
        ) {
            let (_dir, root) = build(&entries);
            let walk = RootDir::open(&root).expect("root").with_resolver(Resolver::Walk);
            let native = RootDir::open(&root).expect("root");
            for p in paths.iter().filter(|p| !p.contains(&0)) {
                for p in [p.clone(), ftpnorm(b"/", p)] {
                    let a = landed(&walk, &root, &p);
                    if native.resolver() == Resolver::Openat2 {
                        prop_assert_eq!(a, landed(&native, &root, &p), "{:?}", p);
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(config(512))]

        #[test]
        fn port_and_eprt_never_panic(arg in ".{0,40}", sep in "[|!,]", body in "[0-9a-fA-F:.,|]{0,30}") {
            let _ = proto::parse_port(&arg);
            let _ = proto::parse_eprt(&arg);
            let _ = proto::split_eprt(&arg);
            let near = format!("{sep}{body}{sep}");
            let _ = proto::parse_port(&body);
            let _ = proto::parse_eprt(&near);
            let _ = proto::split_eprt(&near);
        }

        #[test]
        fn port_round_trips(ip in any::<u32>(), port in any::<u16>()) {
            let addr = SocketAddrV4::new(Ipv4Addr::from(ip), port);
            let o = addr.ip().octets();
            let text = format!("{},{},{},{},{},{}", o[0], o[1], o[2], o[3], port >> 8, port & 0xff);
            prop_assert_eq!(proto::parse_port(&text), Some(SocketAddr::V4(addr)));
            // The 227 reply's numbers are a PORT argument for the same address.
            let pasv = proto::format_pasv(*addr.ip(), port);
            let inner = &pasv[pasv.find('(').expect("(") + 1..pasv.find(')').expect(")")];
            prop_assert_eq!(proto::parse_port(inner), Some(SocketAddr::V4(addr)));
        }

        #[test]
        fn eprt_round_trips(v4 in any::<u32>(), v6 in any::<u128>(), port in any::<u16>()) {
            for (af, ip) in [(1, Ipv4Addr::from(v4).into()), (2, Ipv6Addr::from(v6).into())] {
                let addr = SocketAddr::new(ip, port);
                let text = format!("|{af}|{ip}|{port}|");
                prop_assert_eq!(proto::parse_eprt(&text), Ok(addr));
                let (a, i, p) = proto::split_eprt(&text).expect("split");
                let (af, ip) = (af.to_string(), ip.to_string());
                prop_assert_eq!((a, i, p), (af.as_str(), ip.as_str(), port));
            }
        }

        #[test]
        fn lines_split_back_as_sent(
            lines in prop::collection::vec(
                prop::collection::vec(any::<u8>().prop_filter("no LF", |b| *b != b'\n'), 0..40)
                    .prop_filter("no trailing CR", |l| l.last() != Some(&b'\r')),
                0..8,
            ),
            crlf in any::<bool>(),
        ) {
            let end: &[u8] = if crlf { b"\r\n" } else { b"\n" };
            let stream: Vec<u8> = lines.iter().flat_map(|l| l.iter().chain(end)).copied().collect();
            let mut buf = &stream[..];
            let mut got = Vec::new();
            while let Some((len, consumed)) = proto::find_line(buf) {
                got.push(buf[..len].to_vec());
                buf = &buf[consumed..];
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(got, lines);
        }

        #[test]
        fn telnet_escaping_is_undone(raw in prop::collection::vec(any::<u8>(), 0..64)) {
            // What a client sends for `raw`: IAC doubled (RFC 854), CR as CR NUL (RFC 2640 §3.1).
            let mut wire = Vec::new();
            for &b in &raw {
                match b {
                    0xFF => wire.extend_from_slice(&[0xFF, 0xFF]),
                    b'\r' => wire.extend_from_slice(b"\r\0"),
                    b => wire.push(b),
                }
            }
            prop_assert_eq!(proto::clean_line(&wire), raw);
        }

        #[test]
        fn replies_hold_no_line_break(text in prop::collection::vec(any::<u8>(), 0..64)) {
            for out in [proto::escape_line(&text).into_owned(), proto::quote_path(&text)] {
                prop_assert!(!out.contains(&b'\n'));
                for (i, &b) in out.iter().enumerate() {
                    if b == b'\r' {
                        prop_assert_eq!(out.get(i + 1), Some(&0));
                    }
                }
            }
            let once = proto::escape_line(&text).into_owned();
            prop_assert_eq!(proto::escape_line(&once).into_owned(), once);
        }
    }

    // The TFTP packet round trips (cargo feature `tftp`).
    #[cfg(feature = "tftp")]
    mod tftp_packets {
        use super::*;
        use crate::tftp::packet::{self, Mode as TftpMode, Packet, Request};

        /// TFTP text fields: no NUL (the terminator), any other character.
        fn field() -> impl Strategy<Value = String> {
            "[^\u{0}]{0,12}".prop_map(String::from)
        }

        fn tftp_packet() -> impl Strategy<Value = (Vec<u8>, Vec<(String, String)>)> {
            let opts =
                || prop::collection::vec(("[a-z]{1,9}".prop_map(String::from), field()), 0..5);
            prop_oneof![
                (any::<bool>(), "[^\u{0}]{1,40}", 0..3usize, opts()).prop_map(|(w, f, m, o)| {
                    let mode = ["octet", "netascii", "mail"][m];
                    let refs: Vec<(&str, &str)> =
                        o.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    (packet::request(w, &f, mode, &refs), o)
                }),
                opts().prop_map(|o| (packet::oack(&o), o)),
                (any::<u16>(), prop::collection::vec(any::<u8>(), 0..64)).prop_map(|(b, d)| {
                    let mut out = vec![0; 4];
                    packet::data_header(&mut out, b);
                    out.extend(d);
                    (out, Vec::new())
                }),
                any::<u16>().prop_map(|b| (packet::ack(b).to_vec(), Vec::new())),
                (0..9u16, field()).prop_map(|(c, m)| {
                    (
                        packet::error(packet::ErrorCode::from_code(c), &m),
                        Vec::new(),
                    )
                }),
            ]
        }

        proptest! {
            #![proptest_config(config(512))]

            #[test]
            fn tftp_parse_then_encode_round_trips((bytes, opts) in tftp_packet()) {
                let p = packet::parse(&bytes).expect("our own encoding parses");
                let again = match &p {
                    Packet::Request(Request { write, filename, mode, options }) => {
                        prop_assert_eq!(options, &opts);
                        prop_assert!(matches!(mode, TftpMode::Octet | TftpMode::Netascii | TftpMode::Mail));
                        let refs: Vec<(&str, &str)> =
                            options.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                        packet::request(*write, filename, &mode.to_string(), &refs)
                    }
                    Packet::Oack(o) => {
                        prop_assert_eq!(o, &opts);
                        packet::oack(o)
                    }
                    Packet::Data(b, d) => {
                        let mut out = vec![0; 4];
                        packet::data_header(&mut out, *b);
                        out.extend_from_slice(d);
                        out
                    }
                    Packet::Ack(b) => packet::ack(*b).to_vec(),
                    Packet::Error(c, m) => packet::error(packet::ErrorCode::from_code(*c), m),
                };
                prop_assert_eq!(&again, &bytes);
            }

            #[test]
            fn tftp_parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
                let _ = packet::parse(&bytes);
            }
        }
    }

    /// A socket address of either family.
    fn socket_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<u32>(), any::<u16>())
                .prop_map(|(ip, p)| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), p))),
            (any::<u128>(), any::<u16>())
                .prop_map(|(ip, p)| SocketAddr::new(Ipv6Addr::from(ip).into(), p)),
        ]
    }

    /// A PROXY header (v1 or v2, from random addresses), with a byte maybe changed, and the
    /// connection's own bytes behind it.
    fn proxy_bytes() -> impl Strategy<Value = Vec<u8>> {
        use crate::proxy_protocol::parse::{encode_v1, encode_v2};
        (
            socket_addr(),
            socket_addr(),
            0..3u8,
            prop::option::of((any::<prop::sample::Index>(), any::<u8>())),
            prop::collection::vec(any::<u8>(), 0..16),
        )
            .prop_map(|(s, d, kind, flip, tail)| {
                let mut b = match kind {
                    0 => encode_v1(s, d),
                    1 => encode_v2(Some((s, d))),
                    _ => encode_v2(None),
                };
                if let Some((i, v)) = flip {
                    let i = i.index(b.len());
                    b[i] = v;
                }
                b.extend(tail);
                b
            })
    }

    proptest! {
        #![proptest_config(config(512))]

        /// The fuzz target's invariants (scripts/fuzz/fuzz_targets/proxy_header.rs): a header
        /// within the bytes and limits, the same answer for every prefix, and what it names
        /// encodes back to the same header.
        #[test]
        fn proxy_headers_parse_the_same_at_every_prefix(bytes in proxy_bytes()) {
            use crate::proxy_protocol::parse::{self as pp, Header, Progress};
            let whole = pp::parse(&bytes);
            if let Ok(Progress::Done(p)) = whole {
                prop_assert!(p.len <= bytes.len());
                prop_assert_eq!(pp::parse(&bytes[..p.len]), whole);
                if let Header::Proxied { source, destination } = p.header {
                    let again = match p.version {
                        1 => pp::encode_v1(source, destination),
                        _ => pp::encode_v2(Some((source, destination))),
                    };
                    prop_assert!(
                        matches!(pp::parse(&again), Ok(Progress::Done(q)) if q.header == p.header)
                    );
                }
            }
            for k in 0..bytes.len() {
                match (pp::parse(&bytes[..k]), whole) {
                    (Ok(Progress::Need(n)), _) => prop_assert!(n > 0),
                    (a, b) => prop_assert_eq!(a, b, "prefix {}", k),
                }
            }
        }

        #[test]
        fn proxy_parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = crate::proxy_protocol::parse::parse(&bytes);
        }
    }
}
