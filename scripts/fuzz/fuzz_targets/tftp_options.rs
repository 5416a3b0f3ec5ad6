//! TFTP option negotiation (RFC 2347–2349, RFC 7440) on any request's options: the values
//! granted stay within the RFCs and the server's limits, and the OACK names only options the
//! client sent, once each, with decimal values.
#![no_main]

use ftpdlib::fuzzing::tftp::{negotiate, packet, OptionLimits, Packet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Input: two bytes of limits and direction, then a datagram.
    let [a, b, rest @ ..] = data else { return };
    let Ok(Packet::Request(req)) = packet::parse(rest) else {
        return;
    };
    let limits = OptionLimits {
        max_blksize: 8 + usize::from(*a) * 256,
        max_windowsize: u16::from(*b & 0x7f),
        max_window_bytes: 1 + usize::from(*a) * 1024,
        max_upload: (b & 0x80 != 0).then_some(u64::from(*a) * 100),
    };
    let size = (a & 1 == 1).then_some(u64::from(*b) * 1000);
    let Ok(n) = negotiate(&req.options, req.write, size, &limits) else {
        assert!(
            req.write && limits.max_upload.is_some(),
            "only a too big WRQ is refused"
        );
        return;
    };
    if n.oack.iter().any(|(k, _)| k == "blksize") {
        assert!(
            (8..=limits.max_blksize.max(8)).contains(&n.blksize),
            "blksize {}",
            n.blksize
        );
    } else {
        assert_eq!(n.blksize, 512, "RFC 1350's block size without the option");
    }
    assert!(n.windowsize >= 1 && n.windowsize <= limits.max_windowsize.max(1));
    assert!(
        n.windowsize == 1 || usize::from(n.windowsize) * n.blksize <= limits.max_window_bytes,
        "bytes in flight bounded"
    );
    if let Some(t) = n.timeout {
        assert!((1..=255).contains(&t.as_secs()));
    }
    for (i, (name, value)) in n.oack.iter().enumerate() {
        assert!(req.options.iter().any(|(k, _)| k == name), "asked for");
        assert!(n.oack[..i].iter().all(|(k, _)| k != name), "once");
        assert!(value.parse::<u64>().is_ok(), "decimal value {value:?}");
    }
});
