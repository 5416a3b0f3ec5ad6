//! The PROXY protocol header parser (HAProxy's proxy-protocol.txt §2.1 and §2.2), which
//! reads bytes from anyone a balancer's address can be spoofed from: never a panic, never a
//! header longer than the bytes given or the spec's limits, the same answer for every
//! prefix (a header is self-delimiting, so what follows it never matters and a short read
//! only ever asks for more), and every client it names encodes back to the same header.
#![no_main]

use ftpdlib::fuzzing::proxy::{
    encode_v1, encode_v2, parse, Header, Progress, V1_MAX, V2_MAX_PAYLOAD,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let data = &data[..data.len().min(2 * (16 + V2_MAX_PAYLOAD))];
    let whole = parse(data);
    match whole {
        Ok(Progress::Done(p)) => {
            assert!(p.len <= data.len(), "a header within what was given");
            match p.version {
                1 => assert!(p.len <= V1_MAX, "a version 1 line within 107 bytes"),
                2 => assert!(p.len <= 16 + V2_MAX_PAYLOAD, "a version 2 header within the cap"),
                v => panic!("version {v}"),
            }
            assert_eq!(parse(&data[..p.len]), whole, "what follows never matters");
            round_trip(p.version, p.header);
        }
        Ok(Progress::Need(n)) => {
            assert!(n > 0);
            assert!(data.len() + n <= 16 + V2_MAX_PAYLOAD, "never more than the cap");
        }
        Err(_) => {}
    }
    // Every prefix is a beginning of the same answer.
    for k in 0..data.len() {
        match (parse(&data[..k]), whole) {
            (Ok(Progress::Done(a)), Ok(Progress::Done(b))) => assert_eq!(a, b, "prefix {k}"),
            (Ok(Progress::Need(_)), _) => {}
            (Err(e), Err(f)) => assert_eq!(e, f, "prefix {k}"),
            (a, b) => panic!("prefix {k}: {a:?} but the whole gives {b:?}"),
        }
    }
});

fn round_trip(version: u8, header: Header) {
    let Header::Proxied { source, destination } = header else {
        return;
    };
    let bytes = match version {
        1 => encode_v1(source, destination),
        _ => encode_v2(Some((source, destination))),
    };
    let Ok(Progress::Done(again)) = parse(&bytes) else {
        panic!("the encoding of {header:?} does not parse")
    };
    assert_eq!(again.header, header, "parse ∘ encode");
    assert_eq!(again.len, bytes.len());
}
