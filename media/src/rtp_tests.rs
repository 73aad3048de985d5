//! Unit tests of `rtp.rs`.

use super::*;

#[test]
fn write_then_parse_with_and_without_send_time() {
    let h = RtpHeader {
        marker: true,
        payload_type: 0,
        sequence: 65535,
        timestamp: 160,
        ssrc: 0xdeadbeef,
    };
    let mut buf = [0u8; 200];
    let n = write_header(&mut buf, &h, Some(1_700_000_000_123_456));
    buf[n..n + 160].fill(0xFF);
    let p = parse(&buf[..n + 160]).unwrap();
    assert_eq!(p.header, h);
    assert_eq!(p.send_time_us, Some(1_700_000_000_123_456));
    assert_eq!((p.payload_offset, p.payload_len), (28, 160));
    let n = write_header(&mut buf, &h, None);
    let p = parse(&buf[..n + 160]).unwrap();
    assert_eq!((p.payload_offset, p.send_time_us), (12, None));
}

#[test]
fn rejects_non_rtp() {
    assert!(parse(&[0u8; 12]).is_none());
    assert!(parse(&[0x80, 200, 0, 1]).is_none());
    let mut rtcp = [0u8; 28];
    rtcp[0] = 0x80;
    rtcp[1] = 200; // SR
    assert!(parse(&rtcp).is_none());
    let mut bad_ext = [0u8; 16];
    bad_ext[0] = 0x90;
    bad_ext[14] = 0xFF;
    assert!(parse(&bad_ext).is_none());
}
