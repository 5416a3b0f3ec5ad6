//! The argument grammars of PORT, EPRT, EPSV, REST, TYPE, OPTS MLST and MFMT/MDTM times
//! (RFC 959 §4.1.2, RFC 2428 §2–4, RFC 3659 §3, §5, §7.9): never a panic, and what parses
//! formats back to the same value.
#![no_main]

use std::net::SocketAddr;

use ftpdlib::handlers::fuzzing::paths::{parse_timeval, AVAILABLE_FACTS};
use ftpdlib::fuzzing::proto::{
    parse_eprt, parse_epsv, parse_mlst_facts, parse_port, parse_rest, parse_type, split_eprt,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Handlers see the argument as lossy UTF-8 (Request::arg_str).
    let arg = String::from_utf8_lossy(data);
    port(&arg);
    eprt(&arg);
    if parse_epsv(&arg).is_some() {
        assert!(arg.trim().len() <= 3, "EPSV takes 1, 2 or ALL");
    }
    if let Some(n) = parse_rest(&arg) {
        assert_eq!(parse_rest(&n.to_string()), Some(n), "REST round trip");
    }
    let _ = parse_type(&arg);
    facts(&arg);
    let _ = parse_timeval(&arg);
});

fn port(arg: &str) {
    let Some(addr) = parse_port(arg) else { return };
    let SocketAddr::V4(v4) = addr else {
        panic!("PORT gives IPv4 only")
    };
    let o = v4.ip().octets();
    let (p1, p2) = (v4.port() >> 8, v4.port() & 0xff);
    let text = format!("{},{},{},{},{p1},{p2}", o[0], o[1], o[2], o[3]);
    assert_eq!(parse_port(&text), Some(addr), "PORT round trip");
}

fn eprt(arg: &str) {
    let split = split_eprt(arg);
    if let Some((af, ip, _)) = split {
        let d = arg.chars().next().unwrap_or('|');
        assert!(
            !af.contains(d) && !ip.contains(d),
            "fields hold no delimiter"
        );
    }
    let Ok(addr) = parse_eprt(arg) else { return };
    let (af, _, port) = split.expect("what parse_eprt takes, split_eprt splits");
    assert_eq!(port, addr.port(), "the two EPRT readings agree on the port");
    let proto = if addr.is_ipv4() { "1" } else { "2" };
    assert_eq!(af, proto, "the two EPRT readings agree on the protocol");
    let text = format!("|{proto}|{}|{}|", addr.ip(), addr.port());
    assert_eq!(parse_eprt(&text), Ok(addr), "EPRT round trip");
}

fn facts(arg: &str) {
    let Some(got) = parse_mlst_facts(arg, &AVAILABLE_FACTS) else {
        return;
    };
    let mut last = None;
    for f in &got {
        let i = AVAILABLE_FACTS.iter().position(|a| a == f);
        assert!(i.is_some(), "only available facts: {f:?}");
        assert!(i > last, "in FEAT order, once each");
        last = i;
    }
    let again: String = got.iter().map(|f| format!("{f};")).collect();
    assert_eq!(
        parse_mlst_facts(&again, &AVAILABLE_FACTS),
        Some(got),
        "the 200 reply's list reads back"
    );
}
