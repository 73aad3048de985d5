//! A chat client's WebSocket text frame.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(f) = chat::ClientFrame::parse(text) {
            let _ = f.kind();
            let _ = f.chat();
        }
    }
});
