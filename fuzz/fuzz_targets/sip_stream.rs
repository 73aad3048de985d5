//! A SIP TCP stream: split into messages and keep-alives the way the edge does,
//! checking that framing never claims more bytes than there are.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sip::message::{frame_stream, parse, Frame};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    loop {
        match frame_stream(rest) {
            Ok(Frame::Incomplete) | Err(_) => break,
            Ok(Frame::KeepAlive { len, .. }) => {
                assert!(len > 0 && len <= rest.len());
                rest = &rest[len..];
            }
            Ok(Frame::Message(n)) => {
                assert!(n > 0 && n <= rest.len());
                let _ = parse(&rest[..n]);
                rest = &rest[n..];
            }
        }
    }
});
