//! A recording left by a crash: WAV repair of whatever bytes the file holds.
//! (Announcement decoding goes through symphonia at configuration time, on files
//! the operator provides; it is not fuzzed here.)
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut f = std::io::Cursor::new(data.to_vec());
    let len = data.len() as u64;
    if let Ok(frames) = media::wav::repair(&mut f, 8000, 2, len) {
        // The caller truncates to 44 + 4 * frames: never past the end of the file,
        // and the header now says exactly that much audio.
        assert!(44 + 4 * frames <= len);
        let h = f.into_inner();
        let data_len = u32::from_le_bytes([h[40], h[41], h[42], h[43]]) as u64;
        assert_eq!(data_len, 4 * frames);
        assert_eq!(&h[0..4], b"RIFF");
    }
});
