//! The TFTP packet parser (RFC 1350 §5, RFC 2347 §2): never a panic on a datagram, and
//! every packet it accepts encodes back, with ftpdlib's own encoders, to one that parses
//! the same.
#![no_main]

use ftpdlib::fuzzing::tftp::{packet, Packet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = packet::parse(data) else { return };
    let bytes = match &p {
        Packet::Request(r) => {
            let opts: Vec<(&str, &str)> = r
                .options
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let mode = r.mode.to_string();
            let out = packet::request(r.write, &r.filename, &mode, &opts);
            assert!(out.len() <= data.len(), "re-encoding never grows a request");
            out
        }
        Packet::Data(block, payload) => {
            let mut out = vec![0; 4];
            packet::data_header(&mut out, *block);
            out.extend_from_slice(payload);
            out
        }
        Packet::Ack(block) => packet::ack(*block).to_vec(),
        Packet::Error(code, msg) => {
            let e = packet::ErrorCode::from_code(*code);
            if e.code() != *code || msg.len() > 255 {
                return; // not representable: unknown codes and long texts are not sent
            }
            packet::error(e, msg)
        }
        Packet::Oack(opts) => packet::oack(opts),
    };
    assert_eq!(packet::parse(&bytes).as_ref(), Ok(&p), "parse ∘ encode");
});
