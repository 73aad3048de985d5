//! Unit tests of `attachments.rs`.

use super::*;

#[test]
fn links_are_checked_for_tampering_and_expiry() {
    let dir = std::env::temp_dir().join(format!("att-test-{}", std::process::id()));
    let a = Attachments::open(&dir, 4).unwrap();
    let later = now_secs() + 60;
    let link = a.link("ch-1", "f.png", later);
    let q: HashMap<&str, &str> = link
        .split_once('?')
        .unwrap()
        .1
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    assert_eq!(a.check("ch-1", "f.png", q["exp"], q["sig"]), Ok(()));
    let later2 = (later + 3600).to_string();
    assert_eq!(
        a.check("ch-1", "f.png", &later2, q["sig"]),
        Err(StatusCode::FORBIDDEN),
        "expiry moved"
    );
    assert_eq!(
        a.check("ch-2", "f.png", q["exp"], q["sig"]),
        Err(StatusCode::FORBIDDEN)
    );
    assert_eq!(
        a.check("ch-1", "f.png", q["exp"], "zz"),
        Err(StatusCode::FORBIDDEN)
    );
    let past = a.link("ch-1", "f.png", 1000);
    let sig = past.rsplit_once("sig=").unwrap().1;
    assert_eq!(a.check("ch-1", "f.png", "1000", sig), Err(StatusCode::GONE));
    // The same key after a restart: old links still work.
    let b = Attachments::open(&dir, 4).unwrap();
    assert_eq!(b.check("ch-1", "f.png", q["exp"], q["sig"]), Ok(()));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn content_must_match_the_extension() {
    assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest"), Some("png"));
    assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("jpg"));
    assert_eq!(sniff(b"%PDF-1.7"), Some("pdf"));
    assert_eq!(sniff(b"\0\0\0\x20ftypisom\0\0"), Some("mp4"));
    assert_eq!(sniff(b"MZ\x90\0"), None);
    assert_eq!(extension("Photo.JPEG").as_deref(), Some("jpg"));
    assert!(!safe("../x") && !safe(".key") && safe("ch-12ab") && safe("a1.png"));
}
