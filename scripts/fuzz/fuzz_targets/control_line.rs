//! The control connection's input path, as a session reads it: split the byte stream into
//! lines (CR LF or LF), strip Telnet IAC sequences and RFC 2640 CR NUL, split verb and
//! argument, and check for an HTTP request (RFC 959 §4.1, RFC 854, RFC 2640 §3.1).
#![no_main]

use ftpdlib::fuzzing::proto::{clean_line, find_line, is_http_line, split_command};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    while let Some((len, consumed)) = find_line(buf) {
        assert!(len < consumed && consumed <= buf.len(), "line bounds");
        assert_eq!(buf[consumed - 1], b'\n', "a line ends at LF");
        let raw = &buf[..len];
        assert!(!raw.contains(&b'\n'), "one line holds no LF");
        check_line(raw);
        buf = &buf[consumed..];
    }
    assert!(!buf.contains(&b'\n'), "what is left is an incomplete line");
    check_line(buf);
});

fn check_line(raw: &[u8]) {
    let line = clean_line(raw);
    assert!(line.len() <= raw.len(), "cleaning never grows a line");
    let iac_in = raw.iter().filter(|&&b| b == 0xFF).count();
    let iac_out = line.iter().filter(|&&b| b == 0xFF).count();
    assert!(iac_out * 2 <= iac_in, "a 0xFF survives only as IAC IAC");
    if iac_in == 0 && !raw.windows(2).any(|w| w == b"\r\0") {
        assert_eq!(line, raw, "a line without IAC or CR NUL is left alone");
    }
    let (verb, arg) = split_command(&line);
    assert!(!verb.contains(' '), "the verb is one word");
    assert_eq!(verb, verb.to_ascii_uppercase(), "verbs are upper-cased");
    assert!(line.ends_with(&arg), "the argument is the line's tail");
    if is_http_line(&verb) {
        assert!(
            verb.contains(':') || verb.bytes().all(|b| b.is_ascii_uppercase()),
            "HTTP is a method name or a header: {verb:?}"
        );
    }
}
