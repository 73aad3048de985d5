//! Unit tests of `recorder.rs`.

use super::*;

fn meta(id: &str) -> RecordingMeta {
    RecordingMeta {
        call_id: id.into(),
        caller: "alice".into(),
        callee: "rec".into(),
        queue: Some("sales".into()),
        route: None,
        agent: Some("1001".into()),
        reserved: vec![("verified_customer".into(), "yes".into())],
        voicemail: false,
    }
}

#[test]
fn a_recording_left_by_a_crash_is_repaired_and_handed_over() {
    let dir = std::env::temp_dir().join(format!("edge-recover-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut r = Recorder::create(&dir, meta("c-crash")).unwrap();
    let frame = [1000i16; 160];
    for _ in 0..50 {
        r.write(&frame, &frame);
    }
    // The process dies with the header's sizes still zero (dropping the writer
    // flushes its buffer but patches nothing).
    drop(r.wav.take());
    // And an unreadable leftover that must stay in place.
    std::fs::write(dir.join("recording/bad.wav"), b"RIFF").unwrap();
    assert_eq!(recover(&dir), 1);
    let inbox = crate::recordings::inbox_dir(&dir);
    let bytes = std::fs::read(inbox.join("c-crash.wav")).unwrap();
    assert_eq!(bytes.len(), 44 + 50 * 160 * 4);
    assert_eq!(
        u32::from_le_bytes(bytes[40..44].try_into().unwrap()),
        50 * 160 * 4
    );
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(inbox.join("c-crash.json")).unwrap()).unwrap();
    assert_eq!(m["recovered"], true);
    assert_eq!(m["caller"], "alice");
    assert_eq!(m["queue"], "sales");
    assert_eq!(m["duration_secs"], 1.0);
    assert_eq!(
        m["sha256"],
        storage::sha256_file(&inbox.join("c-crash.wav")).unwrap()
    );
    assert!(
        !dir.join("recording/c-crash.meta.json").exists(),
        "sidecar gone"
    );
    assert!(
        dir.join("recording/bad.wav").exists(),
        "left for an operator"
    );
    // A normal finish removes the sidecar too.
    let mut r = Recorder::create(&dir, meta("c-ok")).unwrap();
    r.write(&frame, &frame);
    r.finish().unwrap();
    assert!(!dir.join("recording/c-ok.meta.json").exists());
    assert_eq!(recover(&dir), 0);
    let _ = std::fs::remove_dir_all(&dir);
}
