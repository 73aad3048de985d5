//! Digest authentication header values: challenges (WWW-Authenticate, read by
//! loadtest) and credentials (Authorization, read by the edge's registrar).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = sip::digest::Challenge::parse(text);
        if let Some(c) = sip::digest::Credentials::parse(text) {
            let _ = c.nonce_count();
            let _ = c.algorithm();
        }
    }
});
