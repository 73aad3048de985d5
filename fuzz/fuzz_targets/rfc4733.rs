//! RFC 4733 telephone-event payloads into the digit receiver.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut r = media::dtmf::Receiver::default();
    for (i, chunk) in data.chunks(4).enumerate() {
        let ts = (i as u32 / 3).wrapping_mul(160);
        if let Some(d) = r.on_payload(ts, chunk) {
            assert!("0123456789*#ABCD".contains(d), "{d:?}");
        }
    }
});
