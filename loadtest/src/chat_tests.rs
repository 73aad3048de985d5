//! Unit tests of `chat.rs`.

use super::*;

#[test]
fn receiver_counts_gaps_duplicates_and_latency() {
    epoch();
    let mut r = Recv::new();
    for seq in [1, 2, 3] {
        r.see(payload(0, 0, seq, 32).as_bytes());
    }
    r.see(payload(0, 1, 1, 32).as_bytes());
    assert_eq!((r.unique, r.bad), (4, 0));
    r.see(payload(0, 0, 3, 32).as_bytes()); // duplicate
    r.see(payload(0, 0, 5, 32).as_bytes()); // gap (4 missing)
    assert_eq!((r.unique, r.bad), (5, 2));
    // Inside a JSON frame as the edge sends it.
    let f =
        serde_json::json!({"type":"message","text":payload(0, 1, 2, 40),"offset":9}).to_string();
    r.see(f.as_bytes());
    assert_eq!(r.unique, 6);
    assert_eq!(r.hist.len(), 7);
    r.see(b"no marker here");
    assert_eq!(r.hist.len(), 7);
}
