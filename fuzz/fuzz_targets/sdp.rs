//! An SDP body: parse, and rewrite it the way the B2BUA anchors media.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sip::sdp::Sdp;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = Sdp::parse(data) {
        let _ = s.audio_target();
        let _ = s.telephone_event_pt();
        let out = s.rewrite("127.0.0.1".parse().unwrap(), 20000);
        // The rewritten offer must still be SDP the edge reads.
        Sdp::parse(out.as_bytes()).expect("the rewritten SDP parses");
    }
});
