//! Unit tests of `dtmf.rs`.

use super::*;

#[test]
fn digit_reported_once_across_end_retransmissions() {
    let mut r = Receiver::default();
    assert_eq!(r.on_payload(160, &payload(5, false, 10, 160)), None);
    assert_eq!(r.on_payload(160, &payload(5, true, 10, 800)), Some('5'));
    assert_eq!(r.on_payload(160, &payload(5, true, 10, 800)), None);
    assert_eq!(r.on_payload(2000, &payload(11, true, 10, 800)), Some('#'));
    assert_eq!(event_code('#'), Some(11));
    assert_eq!(event_code('x'), None);
}
