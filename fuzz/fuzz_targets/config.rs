//! A configuration file (validation with file:line errors).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = control::parse("fuzz.toml", text) {
            let _ = e.to_string();
        }
    }
});
