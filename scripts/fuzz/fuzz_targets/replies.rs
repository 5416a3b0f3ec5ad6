//! What goes back to the client and the log: reply escaping never lets a line break through
//! (RFC 959 §4.2, RFC 2640 §3.1), logs carry no control character, only plain words are
//! echoed, and ASCII-mode conversion gives the same bytes whatever the chunking.
#![no_main]

use ftpdlib::fuzzing::proto::{
    bad_new_name, echoable, escape_line, from_crlf, log_escape, quote_path, to_crlf,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let esc = escape_line(data);
    one_line(&esc);
    assert_eq!(
        escape_line(&esc).as_ref(),
        esc.as_ref(),
        "escaping twice changes nothing"
    );
    one_line(&quote_path(data));
    assert!(
        !log_escape(data).chars().any(char::is_control),
        "log lines stay whole"
    );
    let text = String::from_utf8_lossy(data);
    if let Some(t) = echoable(&text) {
        assert!(t.len() <= 16 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' '));
    }
    let last = data.rsplit(|&b| b == b'/').find(|s| !s.is_empty());
    if last.is_some_and(|n| n.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0))) {
        assert!(bad_new_name(data), "a name with a line break is refused");
    }
    chunked(data);
});

/// No LF, and every CR followed by a NUL: no client can see the end of a line.
fn one_line(out: &[u8]) {
    assert!(!out.contains(&b'\n'), "no LF in {out:?}");
    for (i, &b) in out.iter().enumerate() {
        if b == b'\r' {
            assert_eq!(out.get(i + 1), Some(&0), "a CR only as CR NUL in {out:?}");
        }
    }
}

/// ASCII conversion split at any point gives what it gives in one piece.
fn chunked(data: &[u8]) {
    let cut = usize::from(data.first().copied().unwrap_or(0)) % (data.len() + 1);
    let (mut whole, mut parts, mut buf) = (Vec::new(), Vec::new(), Vec::new());
    let mut state = false;
    to_crlf(data, &mut whole, &mut state);
    let mut state = false;
    for piece in [&data[..cut], &data[cut..]] {
        to_crlf(piece, &mut buf, &mut state);
        parts.extend_from_slice(&buf);
    }
    assert_eq!(parts, whole, "to_crlf chunking");
    for (i, &b) in whole.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && whole[i - 1] == b'\r', "every LF sent as CR LF");
        }
    }
    let (mut back, mut pending) = (Vec::new(), false);
    from_crlf(&whole, &mut back, &mut pending);
    let (mut parts, mut pending2) = (Vec::new(), false);
    for piece in [
        &whole[..cut.min(whole.len())],
        &whole[cut.min(whole.len())..],
    ] {
        from_crlf(piece, &mut buf, &mut pending2);
        parts.extend_from_slice(&buf);
    }
    assert_eq!((parts, pending2), (back, pending), "from_crlf chunking");
}
